package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
)

// A timeline is one `pulumi up` from an empty stack, as the engine's event
// stream and the nodes' own logs tell it, in times from the up's start.
type timeline struct {
	spans      []span
	milestones []milestone
	// up is when Up returned; ready when the bench's readiness check passed.
	up, ready time.Duration
}

// span is one resource's create: from the engine's pre event to its
// outputs event.
type span struct {
	urn, name, typ string
	start, end     time.Duration
	// deps are the URNs it depends on, from the stack's deployment.
	deps []string
}

// milestone is a point in a node's boot, from its log.
type milestone struct {
	node, what string
	at         time.Duration
}

// recorder collects the engine's events of one up. Its goroutine alone
// writes spans, until the engine closes events; timeline reads them after.
type recorder struct {
	t0     time.Time
	events chan events.EngineEvent
	done   chan struct{}
	spans  map[string]*span
}

func newRecorder(t0 time.Time) *recorder {
	r := &recorder{t0: t0, events: make(chan events.EngineEvent), done: make(chan struct{}), spans: map[string]*span{}}
	go func() {
		defer close(r.done)
		for e := range r.events {
			at := time.Since(r.t0)
			switch {
			case e.ResourcePreEvent != nil && !e.ResourcePreEvent.Planning:
				m := e.ResourcePreEvent.Metadata
				r.spans[m.URN] = &span{urn: m.URN, name: urnName(m.URN), typ: m.Type, start: at, end: -1}
			case e.ResOutputsEvent != nil && !e.ResOutputsEvent.Planning:
				if s, ok := r.spans[e.ResOutputsEvent.Metadata.URN]; ok {
					s.end = at
				}
			}
		}
	}()
	return r
}

func urnName(urn string) string { return urn[strings.LastIndex(urn, "::")+2:] }

// timeline returns what was recorded, with each span's dependencies from the
// stack's deployment and the nodes' boot milestones from their logs. The
// engine closes the event channel when Up returns.
func (r *recorder) timeline(ctx context.Context, s auto.Stack, up, ready time.Duration, nodes []string) (timeline, error) {
	<-r.done
	dep, err := s.Export(ctx)
	if err != nil {
		return timeline{}, err
	}
	var d struct {
		Resources []struct {
			URN          string   `json:"urn"`
			Custom       bool     `json:"custom"`
			Dependencies []string `json:"dependencies"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(dep.Deployment, &d); err != nil {
		return timeline{}, err
	}
	t := timeline{up: up, ready: ready}
	for _, res := range d.Resources {
		sp, ok := r.spans[res.URN]
		// Custom resources only: components and providers wait for nothing.
		if !ok || !res.Custom || sp.end < 0 || strings.HasPrefix(sp.typ, "pulumi:providers:") {
			continue
		}
		sp.deps = res.Dependencies
		t.spans = append(t.spans, *sp)
	}
	sort.Slice(t.spans, func(i, j int) bool { return t.spans[i].start < t.spans[j].start })
	for _, n := range nodes {
		t.milestones = append(t.milestones, nodeMilestones(ctx, n, r.t0)...)
	}
	return t, nil
}

// bootMarks are the log lines that mark a node's boot, by what they mean.
var bootMarks = []struct{ match, what string }{
	{"rabbitmq-ha: starting RabbitMQ", "RabbitMQ starts"},
	{"Server startup complete", "RabbitMQ booted"},
	{"rabbitmq-ha: joined the cluster", "joined"},
	{"rabbitmq-ha: seed", "seed up"},
	{"rabbitmq-ha: already a member", "clustered by peer discovery"},
	{"rabbitmq-ha: ready", "ready file"},
}

// nodeMilestones reads a node's boot milestones from `docker logs -t`.
func nodeMilestones(ctx context.Context, node string, t0 time.Time) []milestone {
	out, err := harness.Docker(ctx, nil, "logs", "-t", node)
	if err != nil {
		return nil
	}
	var ms []milestone
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		stamp, text, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			continue
		}
		for _, m := range bootMarks {
			if strings.Contains(text, m.match) {
				ms = append(ms, milestone{node: node, what: m.what, at: at.Sub(t0)})
				break
			}
		}
	}
	return ms
}

// criticalPath is the chain of waits that decides when the last resource
// is done: from the last to finish, back through the dependency that
// finished last, to one that waited for nothing.
func (t timeline) criticalPath() []span {
	byURN := map[string]span{}
	var last span
	for _, s := range t.spans {
		byURN[s.urn] = s
		if s.end > last.end {
			last = s
		}
	}
	if last.urn == "" {
		return nil
	}
	path := []span{last}
	for cur := last; ; {
		var pred span
		for _, d := range cur.deps {
			if s, ok := byURN[d]; ok && s.end > pred.end {
				pred = s
			}
		}
		if pred.urn == "" {
			break
		}
		path = append([]span{pred}, path...)
		cur = pred
	}
	return path
}

// markdown is the critical path as a table, then the nodes' milestones.
func (t timeline) markdown(b *strings.Builder) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	path := t.criticalPath()
	w("| step | resource | starts | done | takes | waited before it starts |\n|---|---|---|---|---|---|\n")
	prev := time.Duration(0)
	for i, s := range path {
		w("| %d | `%s` (%s) | %.1f s | %.1f s | %.1f s | %.1f s |\n", i+1, s.name, s.typ, s.start.Seconds(), s.end.Seconds(),
			(s.end - s.start).Seconds(), (s.start - prev).Seconds())
		prev = s.end
	}
	w("| | `pulumi up` returns | | %.1f s | | %.1f s after the last resource |\n", t.up.Seconds(), (t.up - prev).Seconds())
	w("| | ready (every node clustered, the policy, a message through HAProxy) | | %.1f s | | |\n\n", t.ready.Seconds())
	if len(t.milestones) > 0 {
		w("Node boot milestones, from the nodes' logs (s from the start of `up`):\n\n| node | milestones |\n|---|---|\n")
		byNode := map[string][]string{}
		var order []string
		for _, m := range t.milestones {
			if _, ok := byNode[m.node]; !ok {
				order = append(order, m.node)
			}
			byNode[m.node] = append(byNode[m.node], fmt.Sprintf("%s %.1f", m.what, m.at.Seconds()))
		}
		for _, n := range order {
			w("| %s | %s |\n", n, strings.Join(byNode[n], ", "))
		}
		w("\n")
	}
}

// svg draws the timeline: a bar per resource (the critical path dark), the
// node milestones as ticks on their node's bar, and the end of up and ready.
func (t timeline) svg(title string) string {
	const left, rowH, scaleW = 260, 18, 640
	end := max(t.ready, t.up)
	for _, s := range t.spans {
		end = max(end, s.end)
	}
	if end <= 0 {
		end = time.Second
	}
	x := func(d time.Duration) float64 { return left + scaleW*d.Seconds()/end.Seconds() }
	critical := map[string]bool{}
	for _, s := range t.criticalPath() {
		critical[s.urn] = true
	}
	height := 60 + rowH*len(t.spans)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", left+scaleW+40, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="16" font-weight="bold">%s</text>`+"\n", title)
	for sec := 0; float64(sec) <= end.Seconds(); sec += 5 {
		gx := x(time.Duration(sec) * time.Second)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="26" x2="%.0f" y2="%d" stroke="#e2e8f0"/><text x="%.0f" y="%d" fill="#718096">%d s</text>`+"\n", gx, gx, height-20, gx-6, height-6, sec)
	}
	for i, s := range t.spans {
		y := 30 + i*rowH
		color := "#a0aec0"
		if critical[s.urn] {
			color = "#2b6cb0"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y+12, s.name)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x(s.start), y+2, max(1, x(s.end)-x(s.start)), rowH-6, color)
		for _, m := range t.milestones {
			if strings.HasSuffix(s.name, "-node"+nodeSuffix(m.node)) && strings.Contains(s.typ, "Container") {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c05621" stroke-width="2"><title>%s %.1f s</title></line>`+"\n",
					x(m.at), y, x(m.at), y+rowH-2, m.what, m.at.Seconds())
			}
		}
	}
	for _, mark := range []struct {
		at   time.Duration
		what string
	}{{t.up, "up returns"}, {t.ready, "ready"}} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="26" x2="%.1f" y2="%d" stroke="#2f855a" stroke-dasharray="4 3"/><text x="%.1f" y="38" fill="#2f855a">%s %.1f s</text>`+"\n",
			x(mark.at), x(mark.at), height-20, x(mark.at)+3, mark.what, mark.at.Seconds())
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// traceFile is the chart of a line's timeline, beside BENCHMARKS.md.
func traceFile(l harness.Line) string { return "bench-trace-" + l.Name + ".svg" }

// nodeSuffix is the part of a node container's resource name that names
// its node: "-node-2" of rmqha-bench-node-2 is "-2".
func nodeSuffix(container string) string { return container[strings.LastIndex(container, "-"):] }
