// Package tests holds the tests that run real containers: the plugin-free
// integration tests (plain docker CLI, the stack's own plan and rendered
// files, run by internal/harness) and the end-to-end tests (the real Pulumi
// program through the Automation API).
package tests

import "testing"

// parallelLine runs a line's subtest beside the other lines' (t.Parallel),
// for the tests whose checks are counts and states, not timings: each line
// has its own prefix, subnet and ports, so the lines never meet, and CI's
// run fits its time limit. The tests that check a failover budget or a
// stall (end to end, rolling, HAProxy) run one line at a time.
func parallelLine(t *testing.T) { t.Parallel() }
