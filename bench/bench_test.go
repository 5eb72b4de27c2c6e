package main

import (
	"os"
	"path/filepath"
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

// TestCriticalPath: the chain goes back from the last resource to finish
// through the dependency that finished last, not the one that started last.
func TestCriticalPath(t *testing.T) {
	t.Parallel()
	s := func(urn string, start, end float64, deps ...string) span {
		return span{urn: "u::" + urn, name: urn, start: time.Duration(start * float64(time.Second)), end: time.Duration(end * float64(time.Second)), deps: deps}
	}
	tl := timeline{spans: []span{
		s("network", 0, 1),
		s("image", 0, 0.5),
		s("node-0", 1, 9, "u::network", "u::image"),
		s("node-1", 1.2, 12, "u::network", "u::image"),
		s("pki", 0, 2),
		s("haproxy", 12.5, 14, "u::node-0", "u::node-1", "u::pki"),
		s("policy", 14.2, 15, "u::haproxy", "u::node-0"),
		s("unrelated", 0, 3),
	}, up: 16 * time.Second, ready: 17 * time.Second}
	var names []string
	for _, p := range tl.criticalPath() {
		names = append(names, p.name)
	}
	if got := strings.Join(names, " > "); got != "network > node-1 > haproxy > policy" {
		t.Errorf("critical path %s", got)
	}
	var b strings.Builder
	tl.markdown(&b)
	for _, want := range []string{"| 2 | `node-1` () | 1.2 s | 12.0 s | 10.8 s | 0.2 s |", "1.0 s after the last resource"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
	if svg := tl.svg("t"); !strings.Contains(svg, "policy") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Errorf("svg: %s", svg)
	}
}

// The move's section has markers of its own: make bench keeps it, and a
// second bench-migration replaces it, keeping everything else.
func TestMigrationSection(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "BENCHMARKS.md")
	r := &report{runs: 3, duration: time.Second}
	if err := os.WriteFile(doc, []byte(r.document("", "TABLE\n")+"\nnotes by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"first move\n", "second move\n"} {
		if err := writeMigration(dir, table); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(doc)
	s := string(b)
	if strings.Contains(s, "first move") || strings.Count(s, "second move") != 1 || !strings.Contains(s, "notes by hand") || !strings.Contains(s, "TABLE") {
		t.Errorf("after two moves:\n%s", s)
	}
	if again := r.document(s, "NEW TABLE\n"); !strings.Contains(again, "second move") || strings.Contains(again, "\nTABLE\n") {
		t.Errorf("make bench lost the move's section:\n%s", again)
	}
	m := migrationResult{old: harness.Lines[0], ours: harness.Lines[2], up: 50 * time.Second, firstMoved: 40 * time.Second, empty: 50 * time.Second, consumed: movedMessages}
	if md := m.markdown(); !strings.Contains(md, "| throughput of the move (first message to empty old side) | 1000 msg/s |") {
		t.Errorf("markdown:\n%s", md)
	}
}
