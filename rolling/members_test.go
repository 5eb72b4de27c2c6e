package rolling

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPlanLeave(t *testing.T) {
	t.Parallel()
	staying := []string{"rabbit@n0", "rabbit@n1", "rabbit@n2"}
	q := func(name string, members ...string) Queue {
		return Queue{VHost: "/", Name: name, Members: members}
	}
	cases := []struct {
		name   string
		queues []Queue
		target int
		want   []Grow
	}{
		{"a queue at its target size gains a member first, on the staying node with the fewest",
			[]Queue{q("a", "rabbit@n0", "rabbit@n1", "rabbit@n3"), q("b", "rabbit@n0", "rabbit@n1", "rabbit@n2")}, 3,
			[]Grow{{"rabbit@n2", "/", []string{"a"}}}},
		{"a queue above its target size loses the member only",
			[]Queue{q("a", "rabbit@n0", "rabbit@n1", "rabbit@n2", "rabbit@n3", "rabbit@n4")}, 3, nil},
		{"a queue whose only member leaves gets one",
			[]Queue{q("a", "rabbit@n3")}, 1, []Grow{{"rabbit@n0", "/", []string{"a"}}}},
		{"a queue without a member on the leaving node is left alone",
			[]Queue{q("a", "rabbit@n0", "rabbit@n1")}, 3, nil},
		{"two short queues are spread over the staying nodes",
			[]Queue{q("a", "rabbit@n3"), q("b", "rabbit@n3")}, 2,
			[]Grow{{"rabbit@n0", "/", []string{"a", "b"}}, {"rabbit@n1", "/", []string{"a"}}, {"rabbit@n2", "/", []string{"b"}}}},
		{"never more members than staying nodes",
			[]Queue{q("a", "rabbit@n0", "rabbit@n3")}, 5, []Grow{{"rabbit@n1", "/", []string{"a"}}, {"rabbit@n2", "/", []string{"a"}}}},
	}
	for _, tc := range cases {
		got := PlanLeave(tc.queues, "rabbit@n3", staying, tc.target)
		if !slices.EqualFunc(got, tc.want, func(a, b Grow) bool {
			return a.Node == b.Node && a.VHost == b.VHost && slices.Equal(a.Queues, b.Queues)
		}) {
			t.Errorf("%s:\n got %v\nwant %v", tc.name, got, tc.want)
		}
	}
}

func TestParseQueues(t *testing.T) {
	t.Parallel()
	raw := "warning: something on stderr\n[\n{\"name\":\"orders\",\"type\":\"quorum\",\"members\":[\"rabbit@a\",\"rabbit@b\"]}\n," +
		"{\"name\":\"scratch\",\"type\":\"classic\",\"members\":\"\"}\n]\n"
	got, err := parseQueues("/", raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "orders" || got[0].VHost != "/" || !slices.Equal(got[0].Members, []string{"rabbit@a", "rabbit@b"}) {
		t.Errorf("got %+v", got)
	}
	if _, err := parseQueues("/", "Error: unable to perform an operation on node"); err == nil {
		t.Error("no error for output without JSON")
	}
}

func TestExactly(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(exactly("orders.v1", "a|b"))
	for s, want := range map[string]bool{"orders.v1": true, "a|b": true, "ordersXv1": false, "orders.v1x": false, "a": false} {
		if re.MatchString(s) != want {
			t.Errorf("%q: match %v, want %v", s, !want, want)
		}
	}
}

// broker is a fake cluster behind the CLI: quorum queues and their
// members, the commands run in order, and the fewest members any queue had.
type broker struct {
	*world
	mu         sync.Mutex
	queues     []Queue
	log        []string
	fewest     int
	syncChecks int
}

func (b *broker) Exec(ctx context.Context, name string, cmd []string) (int, string, error) {
	if cmd[0] != "rabbitmqctl" && cmd[0] != "rabbitmq-queues" {
		b.mu.Lock()
		b.log = append(b.log, "drain "+name)
		b.mu.Unlock()
		return b.world.Exec(ctx, name, cmd)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	args := slices.DeleteFunc(slices.Clone(cmd[1:]), func(a string) bool { return a == "-q" })
	switch {
	case args[0] == "list_queues":
		var rows []map[string]any
		for _, q := range b.queues {
			if q.VHost == args[2] {
				rows = append(rows, map[string]any{"name": q.Name, "type": "quorum", "members": q.Members})
			}
		}
		out, _ := json.Marshal(rows)
		return 0, string(out), nil
	case args[0] == "grow":
		node := args[1]
		vhost := regexp.MustCompile(args[4])
		queue := regexp.MustCompile(args[6])
		for i, q := range b.queues {
			if vhost.MatchString(q.VHost) && queue.MatchString(q.Name) && !slices.Contains(q.Members, node) {
				b.queues[i].Members = append(q.Members, node)
			}
		}
		b.log = append(b.log, "grow "+node)
	case args[0] == "-n" && args[2] == "check_if_new_quorum_queue_replicas_have_finished_initial_sync":
		b.syncChecks++
		if b.syncChecks == 1 {
			return 69, "queues with promotable replicas on " + args[1], nil
		}
		b.log = append(b.log, "synced "+args[1])
	case args[0] == "shrink":
		for i, q := range b.queues {
			b.queues[i].Members = slices.DeleteFunc(slices.Clone(q.Members), func(m string) bool { return m == args[1] })
			b.fewest = min(b.fewest, len(b.queues[i].Members))
		}
		b.log = append(b.log, "shrink "+args[1])
	case args[0] == "rebalance":
		b.log = append(b.log, "rebalance")
	default:
		return 64, "unexpected " + strings.Join(cmd, " "), nil
	}
	return 0, "", nil
}

// TestScaleDownHandsOverMembers: a node of a scale-down gives up its quorum
// members before it is drained, and no queue falls below its target size.
func TestScaleDownHandsOverMembers(t *testing.T) {
	t.Parallel()
	w := newWorld("n0", "n1", "n2", "n3", "n4")
	w.nodes = []string{"n0", "n1", "n2"}
	b := &broker{world: w, fewest: 99, queues: []Queue{
		{"/", "orders", []string{"rabbit@n2", "rabbit@n3", "rabbit@n4"}},
		{"/", "wide", []string{"rabbit@n0", "rabbit@n1", "rabbit@n2", "rabbit@n3", "rabbit@n4"}},
		{"other", "billing", []string{"rabbit@n0", "rabbit@n1", "rabbit@n3"}},
	}}
	g := New(b, Settings{
		Nodes: []string{"n0", "n1", "n2"}, Drain: []string{"cluster.sh", "drain", "1"}, Timeout: 10 * time.Second,
		Grace: time.Millisecond, Poll: time.Millisecond, QuorumGroupSize: 3, VHosts: []string{"/", "other"},
	})
	for _, leaving := range []string{"n4", "n3"} {
		if err := g.BeforeDelete(context.Background(), leaving); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		delete(w.containers, leaving)
		w.mu.Unlock()
		g.AfterDelete(leaving)
	}
	for _, q := range b.queues {
		if len(q.Members) != 3 || slices.Contains(q.Members, "rabbit@n3") || slices.Contains(q.Members, "rabbit@n4") {
			t.Errorf("%s: members %v, want 3 on n0-n2", q.Name, q.Members)
		}
	}
	if b.fewest < 3 {
		t.Errorf("a queue fell to %d members on the way", b.fewest)
	}
	// orders loses n4's member to n0 or n1 first, then n3's; each leaving
	// node's grows are synced before its shrink, and it is drained last.
	want := []string{"grow rabbit@n0", "synced rabbit@n0", "shrink rabbit@n4", "drain n4"}
	if !slices.Equal(b.log[:4], want) {
		t.Errorf("commands %v, want them to start %v", b.log, want)
	}
	if i, j := slices.Index(b.log, "shrink rabbit@n3"), slices.Index(b.log, "drain n3"); i < 0 || j != i+1 {
		t.Errorf("commands %v: n3 not shrunk right before its drain", b.log)
	}
}

// TestSettleRebalances: after a replacement, the leaders are rebalanced once
// every queue has its size; a queue short of it is waited for, then logged.
func TestSettleRebalances(t *testing.T) {
	t.Parallel()
	w := newWorld("n0", "n1", "n2")
	b := &broker{world: w, queues: []Queue{{"/", "orders", []string{"rabbit@n0", "rabbit@n1"}}}}
	var logs []string
	var mu sync.Mutex
	g := New(b, Settings{Nodes: []string{"n0", "n1", "n2"}, Timeout: time.Second, QuorumGroupSize: 3, VHosts: []string{"/"},
		Log: func(s string) { mu.Lock(); logs = append(logs, s); mu.Unlock() }})
	g.Settle(context.Background(), time.Millisecond)
	if !slices.Equal(b.log, []string{"rebalance"}) {
		t.Errorf("commands %v, want one rebalance", b.log)
	}
	if !slices.ContainsFunc(logs, func(s string) bool {
		return strings.Contains(s, "1 of 1 quorum queues still have fewer than 3 members")
	}) {
		t.Errorf("the short queue was not reported: %v", logs)
	}
	b.queues = nil
	b.log = nil
	g.Settle(context.Background(), time.Millisecond)
	if len(b.log) != 0 {
		t.Errorf("no queues, yet %v", b.log)
	}
}
