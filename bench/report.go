package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
)

// report holds every measurement, line by line.
type report struct {
	machine  string
	runs     int
	duration time.Duration
	lines    []*lineReport
}

// lineReport holds one line's measurements.
type lineReport struct {
	line    harness.Line
	skipped string
	// readyOnly: only the time to ready and the trace were measured.
	readyOnly                      bool
	floorReady                     []time.Duration
	oursReady, baselineReady       []time.Duration
	preview                        time.Duration
	previewChanges                 int
	oursFailover, baselineFailover failoverResult
	throughput                     []throughput
	rolling                        rollingResult
	idleMemory, loadMemory         map[string]uint64
	// trace is one up's timeline (the last of the time-to-ready runs).
	trace timeline
}

// Targets of the benchmark issue, for the table's last column.
const (
	targetReadyRatio   = 0.5
	targetFloorRatio   = 2.0 // time to ready against the floor
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
	w("#### The lines side by side\n\n| measure |")
	for _, l := range r.lines {
		w(" %s |", l.line.Name)
	}
	w("\n|---|")
	for range r.lines {
		w("---|")
	}
	w("\n")
	row := func(what string, cell func(l *lineReport) string) {
		w("| %s |", what)
		for _, l := range r.lines {
			w(" %s |", cell(l))
		}
		w("\n")
	}
	ours := func(f func(l *lineReport) string) func(l *lineReport) string {
		return func(l *lineReport) string {
			if l.skipped != "" {
				return "skipped"
			}
			return f(l)
		}
	}
	row("images", func(l *lineReport) string {
		return fmt.Sprintf("`%s`, `%s`, %s", l.line.Image, l.line.HAProxy, l.line.HAMode)
	})
	row(fmt.Sprintf("time to ready, rabbitmq-ha (median of %d)", r.runs), ours(func(l *lineReport) string { return secs(median(l.oursReady)) }))
	row("time to ready, docker-compose recipe", func(l *lineReport) string { return secs(median(l.baselineReady)) })
	row("time to ready, floor (3 × `docker run`, unclustered)", func(l *lineReport) string { return secs(median(l.floorReady)) })
	row("rabbitmq-ha / floor", ours(func(l *lineReport) string { return ratioOf(l.oursReady, l.floorReady) }))
	row("rabbitmq-ha / compose recipe", ours(func(l *lineReport) string { return ratioOf(l.oursReady, l.baselineReady) }))
	if slices.ContainsFunc(r.lines, func(l *lineReport) bool { return l.readyOnly }) {
		w("\n(-ready-only: nothing else measured)\n\n")
		for _, l := range r.lines {
			if len(l.trace.spans) > 0 {
				w("#### %s: where one `pulumi up` spends its time\n\n", l.line.Name)
				l.trace.markdown(&b)
			}
		}
		return b.String()
	}
	row("failover, rabbitmq-ha", ours(func(l *lineReport) string { return fo(l.oursFailover) }))
	row("failover, compose recipe", func(l *lineReport) string { return fo(l.baselineFailover) })
	row("throughput through HAProxy, AMQP (confirms)", ours(func(l *lineReport) string { return rate(l.throughput, "HAProxy AMQP") }))
	row("throughput through HAProxy, AMQPS (confirms)", ours(func(l *lineReport) string { return rate(l.throughput, "HAProxy AMQPS") }))
	row("memory, idle (all containers)", ours(func(l *lineReport) string { return totalMiB(l.idleMemory) }))
	row("memory, peak under load", ours(func(l *lineReport) string { return totalMiB(l.loadMemory) }))
	w("\n")
	for _, l := range r.lines {
		w("#### %s\n\n", l.line.Name)
		l.markdown(&b, r.runs, r.duration)
		w("\n")
		if len(l.trace.spans) > 0 {
			w("##### Where one `pulumi up` spends its time (%s, the last run)\n\n", l.line.Name)
			w("The critical path: from the resource that finished last, back through the dependency each step waited for. " +
				"Times are from the start of `up`, as the engine's event stream delivered them.\n\n")
			l.trace.markdown(&b)
			w("![timeline of one up, %s](%s)\n\n", l.line.Name, traceFile(l.line))
		}
	}
	return b.String()
}

func ratioOf(a, b []time.Duration) string {
	if median(b) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", median(a).Seconds()/median(b).Seconds())
}

func rate(ts []throughput, path string) string {
	for _, t := range ts {
		if t.Path == path {
			if t.Err != "" {
				return "error"
			}
			return fmt.Sprintf("%.0f msg/s", t.Rate)
		}
	}
	return "n/a"
}

func totalMiB(m map[string]uint64) string {
	var total uint64
	for _, b := range m {
		total += b
	}
	return fmt.Sprintf("%.0f MiB", float64(total)/(1<<20))
}

func fo(f failoverResult) string {
	if f.Err != "" {
		return "error: " + f.Err
	}
	return fmt.Sprintf("%s, %d of %d confirmed lost", secs(f.Gap), f.Lost, f.Confirmed)
}

func (r *lineReport) markdown(b *strings.Builder, runs int, duration time.Duration) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("| measure | rabbitmq-ha | docker-compose recipe | target |\n|---|---|---|---|\n")
	bm, fm := median(r.baselineReady), median(r.floorReady)
	w("| floor: 3 plain `docker run`, until each accepts AMQP (median of %d) | %s (%s) | | |\n", runs, secs(fm), list(r.floorReady))
	if r.skipped != "" {
		w("| time to ready (median of %d) | skipped: %s | %s (%s) | |\n", runs, r.skipped, secs(bm), list(r.baselineReady))
		w("| failover (kill the node behind the publisher) | skipped | %s | |\n", fo(r.baselineFailover))
		return
	}
	om := median(r.oursReady)
	ratio := om.Seconds() / bm.Seconds()
	w("| time to ready (median of %d) | %s (%s) | %s (%s) | ours/baseline %.2f ≤ %.1f: %s; ours/floor %.2f ≤ %.0f: %s |\n",
		runs, secs(om), list(r.oursReady), secs(bm), list(r.baselineReady), ratio, targetReadyRatio,
		verdict(ratio <= targetReadyRatio), om.Seconds()/fm.Seconds(), targetFloorRatio, verdict(om.Seconds() <= targetFloorRatio*fm.Seconds()))
	w("| no-change preview | %s, %d changes | n/a | ≤ %s, 0 changes: %s |\n", secs(r.preview), r.previewChanges,
		secs(targetPreview), verdict(r.preview <= targetPreview && r.previewChanges == 0))
	w("| failover (kill the node behind the publisher) | %s | %s | ≤ %s, 0 lost: %s |\n", fo(r.oursFailover), fo(r.baselineFailover),
		secs(targetFailover), verdict(r.oursFailover.Err == "" && r.oursFailover.Gap <= targetFailover && r.oursFailover.Lost == 0))
	for _, t := range r.throughput {
		switch {
		case t.Err != "":
			w("| throughput, %s | error: %s | | |\n", t.Path, t.Err)
		case t.Ratio == 1:
			w("| throughput, %s (1 KiB, persistent, confirms, median of %d × %s) | %.0f msg/s | | |\n", t.Path, throughputRounds, duration, t.Rate)
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
	docker, _ := harness.Docker(context.Background(), nil, "version", "--format", "{{.Server.Version}}")
	return fmt.Sprintf("%d cores (%s), %s memory, Docker %s, %s/%s, %s", runtime.NumCPU(), cpu, memTotal, docker, runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02"))
}

// svg draws, line by line, time to ready (ours, the compose recipe, the
// floor) and throughput through HAProxy, as bars.
func (r *report) svg() string {
	type bar struct {
		label string
		value float64
		unit  string
	}
	type group struct {
		title string
		bars  []bar
	}
	var ready, tp group
	ready.title = "time to ready (s, lower is better)"
	tp.title = "throughput via HAProxy, AMQP (msg/s)"
	for _, l := range r.lines {
		short := strings.SplitN(l.line.Name, "-", 2)[0]
		ready.bars = append(ready.bars,
			bar{short + " ours", median(l.oursReady).Seconds(), "s"},
			bar{short + " compose", median(l.baselineReady).Seconds(), "s"},
			bar{short + " floor", median(l.floorReady).Seconds(), "s"})
		for _, t := range l.throughput {
			if t.Path == "HAProxy AMQP" {
				tp.bars = append(tp.bars, bar{short, t.Rate, "msg/s"})
			}
		}
	}
	groups := []group{ready, tp}
	const barW, gap = 70, 12
	width := 40
	for _, g := range groups {
		width += len(g.bars)*(barW+gap) + 40
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="260" font-family="sans-serif" font-size="11">`+"\n", width)
	fmt.Fprintf(&b, `<rect width="%d" height="260" fill="white"/>`+"\n", width)
	colors := []string{"#2b6cb0", "#c05621", "#718096"}
	x0 := 20
	for gi, g := range groups {
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
			x := x0 + i*(barW+gap)
			color := colors[i%len(colors)]
			if gi == 1 {
				color = colors[0]
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%d" height="%.0f" fill="%s"/>`+"\n", x, 220-h, barW, h, color)
			fmt.Fprintf(&b, `<text x="%d" y="%.0f">%.1f %s</text>`+"\n", x, 215-h, br.value, br.unit)
			fmt.Fprintf(&b, `<text x="%d" y="240">%s</text>`+"\n", x, br.label)
		}
		x0 += len(g.bars)*(barW+gap) + 40
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
		"The baseline is the classic docker-compose recipe in `bench/baseline`, on the same local images (on 4.3, which has no RAM nodes, it joins disc nodes). " +
		"Ready means: every node a running member in the management API's `/api/nodes`, the line's HA policy present (ha-all, or quorum-defaults), and a message published through HAProxy consumed. " +
		"Ours is `pulumi up` from an empty stack, the program compiled in (Automation API, inline). " +
		"The floor is 3 nodes of the same image started in parallel with plain `docker run`, unclustered, until each accepts AMQP: measured in the same run.\n\n" +
		table + "\n![time to ready and throughput](bench.svg)\n" + endMarker
	i, j := strings.Index(old, beginMarker), strings.Index(old, endMarker)
	if i < 0 || j < i {
		return "# Benchmarks\n\n" + gen + "\n"
	}
	return old[:i] + gen + old[j+len(endMarker):]
}
