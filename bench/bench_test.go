package main

import (
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
)

func TestParseBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{"12.5MiB": 13107200, "1GiB": 1 << 30, "800KiB": 819200, "10B": 10, "3kB": 3000, "junk": 0} {
		if got := parseBytes(in); got != want {
			t.Errorf("parseBytes(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	if got := median([]time.Duration{3 * time.Second, time.Second, 2 * time.Second}); got != 2*time.Second {
		t.Errorf("median = %s", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median of nothing = %s", got)
	}
}

// TestDocumentKeepsNotes: the bench rewrites only its generated block.
func TestDocumentKeepsNotes(t *testing.T) {
	t.Parallel()
	r := &report{runs: 3, duration: 10 * time.Second}
	old := "# Benchmarks\n\nintro\n\n" + beginMarker + "\nold table\n" + endMarker + "\n\n## Notes\nhand-written\n"
	doc := r.document(old, "| new table |\n")
	for _, want := range []string{"intro", "| new table |", "## Notes\nhand-written", "make bench"} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "old table") {
		t.Error("the old table is still there")
	}
	if fresh := r.document("", "| t |\n"); !strings.HasPrefix(fresh, "# Benchmarks\n") || !strings.Contains(fresh, endMarker) {
		t.Errorf("a new document is malformed:\n%s", fresh)
	}
}

func TestSVGHasBothCharts(t *testing.T) {
	t.Parallel()
	r := &report{lines: []*lineReport{{
		line:      harness.Lines[2],
		oursReady: []time.Duration{20 * time.Second}, baselineReady: []time.Duration{40 * time.Second}, floorReady: []time.Duration{8 * time.Second},
		throughput: []throughput{{Path: "direct to the same node", Rate: 1000}, {Path: "HAProxy AMQP", Rate: 900}},
	}}}
	svg := r.svg()
	for _, want := range []string{"<svg", "time to ready", "throughput", "20.0 s", "40.0 s", "8.0 s", "4.3 floor", "900.0 msg/s", "</svg>"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
}

// TestLinesSideBySide: one column per line, with the ratios to the floor
// and to the compose recipe computed from the medians.
func TestLinesSideBySide(t *testing.T) {
	t.Parallel()
	s := time.Second
	r := &report{runs: 3, lines: []*lineReport{
		{line: harness.Lines[0], oursReady: []time.Duration{30 * s, 36 * s, 33 * s}, baselineReady: []time.Duration{50 * s}, floorReady: []time.Duration{11 * s}},
		{line: harness.Lines[2], oursReady: []time.Duration{26 * s}, baselineReady: []time.Duration{40 * s}, floorReady: []time.Duration{8 * s}},
	}}
	md := r.markdown()
	for _, want := range []string{"| measure | 3.10-mirrored | 4.3-quorum |", "| rabbitmq-ha / floor | 3.00× | 3.25× |",
		"| rabbitmq-ha / compose recipe | 0.66× | 0.65× |", "#### 4.3-quorum", "floor: 3 plain `docker run`"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
