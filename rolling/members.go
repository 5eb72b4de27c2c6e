package rolling

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Quorum queue membership on a scale change, with RabbitMQ's own CLI
// (https://www.rabbitmq.com/docs/quorum-queues#replica-management).
//
// Continuous membership reconciliation (enabled in rabbitmq.conf) grows a
// queue after a node joins, and removes a member only once its node has been
// forgotten: too late for a scale-down, whose leaving node would take its
// members down with it while the cluster still counts them. So before a
// leaving node is drained, every queue it holds a member of first gains a
// member on a staying node where it would otherwise fall below its target
// size, that member catches up, and only then are the leaving node's members
// removed. No queue is ever below its target size on the way, and the drain's
// quorum check then finds nothing on the node.

// Queue is one quorum queue's membership.
type Queue struct {
	VHost, Name string
	// Members are the Erlang node names of its replicas.
	Members []string
}

// Grow is one `rabbitmq-queues grow`: members on Node for Queues of VHost.
type Grow struct {
	Node, VHost string
	Queues      []string
}

// PlanLeave plans a leaving node's hand-over: for every queue with a member
// on leaving whose other members number fewer than target, members on
// staying nodes without one, the least loaded first (by members held), so
// it keeps target members once leaving's is removed. staying are Erlang
// node names. The plan is sorted by node, then vhost.
func PlanLeave(queues []Queue, leaving string, staying []string, target int) []Grow {
	load := map[string]int{}
	for _, q := range queues {
		for _, m := range q.Members {
			load[m]++
		}
	}
	grows := map[[2]string][]string{}
	for _, q := range queues {
		if !slices.Contains(q.Members, leaving) {
			continue
		}
		need := target - (len(q.Members) - 1)
		candidates := slices.DeleteFunc(slices.Clone(staying), func(n string) bool { return slices.Contains(q.Members, n) })
		// Stable: ties keep the configured order.
		slices.SortStableFunc(candidates, func(a, b string) int { return load[a] - load[b] })
		for _, n := range candidates[:max(0, min(need, len(candidates)))] {
			load[n]++
			k := [2]string{n, q.VHost}
			grows[k] = append(grows[k], q.Name)
		}
	}
	var out []Grow
	for k, qs := range grows {
		out = append(out, Grow{Node: k[0], VHost: k[1], Queues: qs})
	}
	slices.SortFunc(out, func(a, b Grow) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.VHost, b.VHost)
	})
	return out
}

// Short reports the queues whose member count is below want: the ones
// reconciliation has yet to grow.
func Short(queues []Queue, want int) []Queue {
	var out []Queue
	for _, q := range queues {
		if len(q.Members) < want {
			out = append(out, q)
		}
	}
	return out
}

// exactly is a regular expression matching exactly the given names, as the
// CLI's --queue-pattern and --vhost-pattern take it.
func exactly(names ...string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return "^(" + strings.Join(quoted, "|") + ")$"
}

// growBatch bounds the queue names one grow's pattern holds.
const growBatch = 100

// cli runs a RabbitMQ CLI command in a node container and fails on a
// non-zero exit, with the output.
func (g *Gate) cli(ctx context.Context, in string, cmd ...string) (string, error) {
	code, out, err := g.engine.Exec(ctx, in, cmd)
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w", strings.Join(cmd, " "), in, err)
	}
	if code != 0 {
		return out, fmt.Errorf("%s in %s exited with %d:\n%s", strings.Join(cmd, " "), in, code, strings.TrimSpace(out))
	}
	return out, nil
}

// quorumQueues lists the quorum queues of the configured vhosts, through
// the node container in.
func (g *Gate) quorumQueues(ctx context.Context, in string) ([]Queue, error) {
	var out []Queue
	for _, vhost := range g.s.VHosts {
		raw, err := g.cli(ctx, in, "rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "members", "--formatter", "json")
		if err != nil {
			return nil, err
		}
		qs, err := parseQueues(vhost, raw)
		if err != nil {
			return nil, fmt.Errorf("list_queues -p %s in %s: %w", vhost, in, err)
		}
		out = append(out, qs...)
	}
	return out, nil
}

// parseQueues reads `rabbitmqctl list_queues name type members --formatter
// json`, skipping any line of the interleaved output before the JSON.
func parseQueues(vhost, raw string) ([]Queue, error) {
	start := strings.Index(raw, "[")
	if start < 0 {
		return nil, fmt.Errorf("no JSON in %q", raw)
	}
	var rows []struct {
		Name    string          `json:"name"`
		Type    string          `json:"type"`
		Members json.RawMessage `json:"members"`
	}
	if err := json.NewDecoder(strings.NewReader(raw[start:])).Decode(&rows); err != nil {
		return nil, fmt.Errorf("%w in %q", err, raw)
	}
	var out []Queue
	for _, r := range rows {
		if r.Type != "quorum" {
			continue
		}
		q := Queue{VHost: vhost, Name: r.Name}
		if err := json.Unmarshal(r.Members, &q.Members); err != nil {
			return nil, fmt.Errorf("members of %s: %w", r.Name, err)
		}
		out = append(out, q)
	}
	return out, nil
}

// handOverMembers moves the quorum members of leaving (a node of a
// scale-down) onto the staying nodes, through the staying node in. It
// returns once leaving holds no member.
func (g *Gate) handOverMembers(ctx context.Context, leaving, in string) error {
	erl := func(n string) string { return "rabbit@" + n }
	queues, err := g.quorumQueues(ctx, in)
	if err != nil {
		return err
	}
	var staying []string
	for _, n := range g.s.Nodes {
		staying = append(staying, erl(n))
	}
	plan := PlanLeave(queues, erl(leaving), staying, g.s.QuorumGroupSize)
	grown := map[string]bool{}
	for _, gr := range plan {
		for b := 0; b < len(gr.Queues); b += growBatch {
			batch := gr.Queues[b:min(b+growBatch, len(gr.Queues))]
			if _, err := g.cli(ctx, in, "rabbitmq-queues", "-q", "grow", gr.Node, "all",
				"--vhost-pattern", exactly(gr.VHost), "--queue-pattern", exactly(batch...)); err != nil {
				return err
			}
		}
		grown[gr.Node] = true
		g.s.Log(fmt.Sprintf("%s: leaving; %d queue(s) of %s gained a member on %s first, so none falls below %d members",
			leaving, len(gr.Queues), gr.VHost, gr.Node, g.s.QuorumGroupSize))
	}
	// New members join as non-voters and are promoted once they have
	// caught up: wait for that before a voter goes.
	for n := range grown {
		for {
			code, out, err := g.engine.Exec(ctx, in, []string{"rabbitmq-queues", "-q", "-n", n, "check_if_new_quorum_queue_replicas_have_finished_initial_sync"})
			if err != nil {
				return fmt.Errorf("initial sync check of %s: %w", n, err)
			}
			if code == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("the new members on %s have not caught up within %s, so %s keeps its members and runs on:\n%s",
					n, g.s.Timeout, leaving, strings.TrimSpace(out))
			case <-time.After(time.Second):
			}
		}
	}
	held := 0
	for _, q := range queues {
		if slices.Contains(q.Members, erl(leaving)) {
			held++
		}
	}
	if held == 0 {
		return nil
	}
	if _, err := g.cli(ctx, in, "rabbitmq-queues", "-q", "shrink", erl(leaving)); err != nil {
		return err
	}
	g.s.Log(fmt.Sprintf("%s: leaving; its members of %d quorum queue(s) were removed", leaving, held))
	return nil
}

// Settle waits until every quorum queue of the configured vhosts has its
// target size (reconciliation grows them once a node joins or the policy
// changes), then rebalances the queue leaders over the nodes. It runs after
// a node was replaced, removed or added: a replaced node comes back leading
// nothing, and a new one holds no member until reconciliation adds it.
// Nothing in it fails an update: a queue still short at the deadline, or a
// failed rebalance, is logged.
func (g *Gate) Settle(ctx context.Context, wait time.Duration) {
	if g.s.QuorumGroupSize == 0 {
		return
	}
	g.turn.Lock()
	defer g.turn.Unlock()
	in := ""
	for _, n := range g.s.Nodes {
		if c, err := g.engine.Inspect(ctx, n); err == nil && c.Healthy() {
			in = n
			break
		}
	}
	if in == "" {
		g.s.Log("settle: no node is healthy; queue leaders were not rebalanced")
		return
	}
	want := min(g.s.QuorumGroupSize, len(g.s.Nodes))
	start := time.Now()
	deadline := start.Add(wait)
	for {
		queues, err := g.quorumQueues(ctx, in)
		if err != nil {
			g.s.Log("settle: " + err.Error())
			return
		}
		if len(queues) == 0 {
			return
		}
		short := Short(queues, want)
		if len(short) == 0 {
			g.s.Log(fmt.Sprintf("settle: every quorum queue (%d) has %d or more members (waited %s)", len(queues), want, time.Since(start).Round(time.Second)))
			break
		}
		if time.Now().After(deadline) {
			g.s.Log(fmt.Sprintf("settle: %d of %d quorum queues still have fewer than %d members after %s (e.g. %s in %s: %v); "+
				"reconciliation keeps growing them", len(short), len(queues), want, wait, short[0].Name, short[0].VHost, short[0].Members))
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	if _, err := g.cli(ctx, in, "rabbitmq-queues", "-q", "rebalance", "quorum"); err != nil {
		g.s.Log("settle: rebalance failed: " + err.Error())
		return
	}
	g.s.Log("settle: quorum queue leaders rebalanced over the nodes")
}
