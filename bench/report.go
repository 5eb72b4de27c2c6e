package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/tests"
)

// report holds every measurement.
type report struct {
	machine                        string
	runs                           int
	duration                       time.Duration
	skipped                        string
	oursReady, baselineReady       []time.Duration
	preview                        time.Duration
	previewChanges                 int
	oursFailover, baselineFailover failoverResult
	throughput                     []throughput
	rolling                        rollingResult
	idleMemory, loadMemory         map[string]uint64
}

// Targets of the benchmark issue, for the table's last column.
const (
	targetReadyRatio   = 0.5
	floorSeconds       = 10.0 // a single node boots in ~5 s: two boot phases
	targetPreview      = 10 * time.Second
	targetFailover     = 5 * time.Second
	targetHAProxyRatio = 0.9
	targetAMQPSRatio   = 0.7
)

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func list(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.1f", d.Seconds()))
	}
	return strings.Join(s, ", ")
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("Machine: %s\n\n", r.machine)
	w("| measure | rabbitmq-ha | docker-compose recipe | target |\n|---|---|---|---|\n")
	bm := median(r.baselineReady)
	if r.skipped != "" {
		w("| time to ready (median of %d) | skipped: %s | %s (%s) | |\n", r.runs, r.skipped, secs(bm), list(r.baselineReady))
	} else {
		om := median(r.oursReady)
		ratio := om.Seconds() / bm.Seconds()
		w("| time to ready (median of %d) | %s (%s) | %s (%s) | ours/baseline %.2f ≤ %.1f: %s; ≤ 2× floor (%.0f s): %s |\n",
			r.runs, secs(om), list(r.oursReady), secs(bm), list(r.baselineReady), ratio, targetReadyRatio,
			verdict(ratio <= targetReadyRatio), 2*floorSeconds, verdict(om.Seconds() <= 2*floorSeconds))
		w("| no-change preview | %s, %d changes | n/a | ≤ %s, 0 changes: %s |\n", secs(r.preview), r.previewChanges,
			secs(targetPreview), verdict(r.preview <= targetPreview && r.previewChanges == 0))
	}
	fo := func(f failoverResult) string {
		if f.Err != "" {
			return "error: " + f.Err
		}
		return fmt.Sprintf("%s, %d of %d confirmed lost", secs(f.Gap), f.Lost, f.Confirmed)
	}
	if r.skipped == "" {
		w("| failover (kill the node behind the publisher) | %s | %s | ≤ %s, 0 lost: %s |\n", fo(r.oursFailover), fo(r.baselineFailover),
			secs(targetFailover), verdict(r.oursFailover.Err == "" && r.oursFailover.Gap <= targetFailover && r.oursFailover.Lost == 0))
		for _, t := range r.throughput {
			switch {
			case t.Err != "":
				w("| throughput, %s | error: %s | | |\n", t.Path, t.Err)
			case t.Ratio == 1:
				w("| throughput, %s (1 KiB, persistent, confirms, median of %d × %s) | %.0f msg/s | | |\n", t.Path, throughputRounds, r.duration, t.Rate)
			default:
				target := targetHAProxyRatio
				if strings.Contains(t.Path, "AMQPS") {
					target = targetAMQPSRatio
				}
				w("| throughput, %s | %.0f msg/s (%.2f× direct to the same node) | | ≥ %.1f×: %s |\n", t.Path, t.Rate, t.Ratio, target, verdict(t.Ratio >= target))
			}
		}
		w("| rolling replacement of every node under load (a new image) | %s | n/a | ≥ N-1 running, ≤ %s gap, 0 lost: %s |\n",
			r.rolling.String(), secs(targetFailover), verdict(r.rolling.Err == "" && r.rolling.MinRunning >= len(r.rolling.Spans)-1 &&
				r.rolling.Gap <= targetFailover && r.rolling.Lost == 0))
		w("| memory, idle | %s | | |\n", mem(r.idleMemory))
		w("| memory, peak under the throughput runs | %s | | |\n", mem(r.loadMemory))
	} else {
		w("| failover (kill the node behind the publisher) | skipped | %s | |\n", fo(r.baselineFailover))
	}
	return b.String()
}

func (r rollingResult) String() string {
	if r.Err != "" {
		return "error: " + r.Err
	}
	var down []string
	for _, s := range r.Spans {
		down = append(down, fmt.Sprintf("%.0f", s.Down.Seconds()))
	}
	return fmt.Sprintf("%s in all; each node out of service %s s; at least %d of %d running; longest gap between confirms %s; %d of %d confirmed lost",
		secs(r.Total), strings.Join(down, " / "), r.MinRunning, len(r.Spans), secs(r.Gap), r.Lost, r.Confirmed)
}

// mem prints per-container memory and the total, in MiB.
func mem(m map[string]uint64) string {
	var names []string
	var total uint64
	for n, b := range m {
		names = append(names, n)
		total += b
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f", strings.TrimPrefix(n, oursPrefix+"-"), float64(m[n])/(1<<20)))
	}
	return fmt.Sprintf("%s; total %.0f MiB", strings.Join(parts, ", "), float64(total)/(1<<20))
}

// machine describes where the bench ran.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, cpu, _ = strings.Cut(l, ": ")
				break
			}
		}
	}
	memTotal := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		memTotal = strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1] + " kB"
	}
	docker, _ := tests.Docker(context.Background(), nil, "version", "--format", "{{.Server.Version}}")
	return fmt.Sprintf("%d cores (%s), %s memory, Docker %s, %s/%s, %s", runtime.NumCPU(), cpu, memTotal, docker, runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02"))
}

// svg draws time to ready and throughput side by side as bars.
func (r *report) svg() string {
	type bar struct {
		label string
		value float64
		unit  string
	}
	groups := []struct {
		title string
		bars  []bar
	}{
		{"time to ready (s, lower is better)", []bar{{"rabbitmq-ha", median(r.oursReady).Seconds(), "s"}, {"compose recipe", median(r.baselineReady).Seconds(), "s"}}},
	}
	var tp []bar
	for _, t := range r.throughput {
		tp = append(tp, bar{t.Path, t.Rate, "msg/s"})
	}
	groups = append(groups, struct {
		title string
		bars  []bar
	}{"throughput (msg/s, higher is better)", tp})
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" width="760" height="260" font-family="sans-serif" font-size="12">` + "\n")
	b.WriteString(`<rect width="760" height="260" fill="white"/>` + "\n")
	colors := []string{"#2b6cb0", "#c05621", "#2f855a"}
	for gi, g := range groups {
		x0 := 20 + gi*380
		fmt.Fprintf(&b, `<text x="%d" y="20" font-weight="bold">%s</text>`+"\n", x0, g.title)
		maxV := 0.0
		for _, br := range g.bars {
			maxV = max(maxV, br.value)
		}
		for i, br := range g.bars {
			h := 0.0
			if maxV > 0 {
				h = 180 * br.value / maxV
			}
			x := x0 + i*110
			fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="80" height="%.0f" fill="%s"/>`+"\n", x, 220-h, h, colors[i%len(colors)])
			fmt.Fprintf(&b, `<text x="%d" y="%.0f">%.1f %s</text>`+"\n", x, 215-h, br.value, br.unit)
			fmt.Fprintf(&b, `<text x="%d" y="240">%s</text>`+"\n", x, br.label)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// Markers of the generated part of docs/BENCHMARKS.md; the notes outside
// them are written by hand and kept.
const (
	beginMarker = "<!-- generated by make bench: begin -->"
	endMarker   = "<!-- generated by make bench: end -->"
)

// document returns docs/BENCHMARKS.md with its generated part replaced.
func (r *report) document(old, table string) string {
	gen := beginMarker + "\n" +
		"Command: `make bench` (`go run ./bench -runs " + fmt.Sprint(r.runs) + " -duration " + r.duration.String() + "`).\n\n" +
		"The baseline is the classic docker-compose recipe in `bench/baseline`, on the same local images. " +
		"Ready means: every node in `cluster_status`, the ha-all policy present, and a message published through HAProxy consumed. " +
		"Ours is `pulumi up` from an empty stack, the program compiled in (Automation API, inline).\n\n" +
		table + "\n![time to ready and throughput](bench.svg)\n" + endMarker
	i, j := strings.Index(old, beginMarker), strings.Index(old, endMarker)
	if i < 0 || j < i {
		return "# Benchmarks\n\n" + gen + "\n"
	}
	return old[:i] + gen + old[j+len(endMarker):]
}
