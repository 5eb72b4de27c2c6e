// Package tests holds the tests that run real containers: the plugin-free
// integration tests (plain docker CLI, the stack's own plan and rendered
// files, run by internal/harness) and the end-to-end tests (the real Pulumi
// program through the Automation API).
package tests

import (
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
)

// e2eLines are the lines the end-to-end tests that go one line at a time
// (TestIntegrationE2E, TestIntegrationE2ERolling) run on. Every line by
// default; CI, whose 2 cores take about 7 minutes per line for each, runs
// them on the default line (make test E2E_LINES=4.3-quorum).
var e2eLines = flag.String("e2e.lines", "all", "lines the end-to-end tests run on: comma-separated line names, or all")

// parallelLine runs a line's subtest beside the other lines' (t.Parallel),
// for the tests whose checks are counts and states, not timings: each line
// has its own prefix, subnet and ports, so the lines never meet, and CI's
// run fits its time limit. The tests that check a failover budget or a
// stall (end to end, rolling, HAProxy) run one line at a time.
func parallelLine(t *testing.T) { t.Parallel() }

// parallelTest marks such a test itself parallel: it runs after the
// sequential tests (the timings, and the Docker-host tests that point
// DOCKER_HOST elsewhere, which nothing may run beside), together with the
// others like it. -parallel still bounds how many lines run at once; the
// slots a test's quicker lines free go to the next test's lines instead of
// waiting for its slowest one.
func parallelTest(t *testing.T) { t.Parallel() }

// selectLines reads a flag's list of line names ("all": every line).
func selectLines(t *testing.T, flagName, names string) []harness.Line {
	if names == "all" {
		return harness.Lines
	}
	var out []harness.Line
	for _, n := range strings.Split(names, ",") {
		i := lineIndex(n)
		if i < 0 {
			t.Fatalf("-%s: %q is not a line (%s)", flagName, n, lineNames())
		}
		out = append(out, harness.Lines[i])
	}
	return out
}

// lineIndex is the index of the line named name in harness.Lines, or -1.
func lineIndex(name string) int {
	return slices.IndexFunc(harness.Lines, func(l harness.Line) bool { return l.Name == name })
}

func lineNames() string {
	var n []string
	for _, l := range harness.Lines {
		n = append(n, l.Name)
	}
	return strings.Join(n, ", ")
}
