package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
	"github.com/rabbitmq-ha/rabbitmq-ha/rolling"
)

// TestIntegrationQuorumMembership: quorum queue membership follows the
// cluster, on every quorum line, with the stack's own specs, policy and
// rolling gate (no Pulumi). The steps are what `pulumi up` does:
//   - scale 3 -> 5: the new nodes join, the policy's target size becomes 5;
//     reconciliation grows every queue onto them, and the gate's settle step
//     rebalances the leaders (all declared on node 0) over the nodes;
//   - scale 5 -> 3: the policy's target size becomes 3, then each leaving
//     node passes the gate (its members handed over, drained), stops and is
//     forgotten; a queue whose 3 members include both leaving nodes keeps 3;
//   - node 2 back on a fresh volume: its members come back.
//
// Every confirmed message is consumed at the end, by ID.
func TestIntegrationQuorumMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ containers; skipped under -short")
	}
	parallelTest(t)
	for _, line := range harness.Lines {
		if line.HAMode != config.HAModeQuorum {
			continue
		}
		t.Run(line.Name, func(t *testing.T) { parallelLine(t); quorumMembership(t, line) })
	}
}

func quorumMembership(t *testing.T, line harness.Line) {
	harness.RequireImages(t, line.Image)
	cfg3 := line.Config(t, "rmqha-it-members", 233, 48000, nil)
	cfg5 := line.Config(t, "rmqha-it-members", 233, 48000, map[string]string{config.KeyNodes: "5"})
	harness.RemoveStack(t, cfg3.Prefix)
	t.Cleanup(func() { harness.RemoveStack(t, cfg3.Prefix) })
	node := func(i int) string { return plan.NodeNames(cfg5.Prefix, i).Container }
	erl := func(i int) string { return plan.NodeNames(cfg5.Prefix, i).Erlang }
	direct := func(i int) string {
		return plan.WithUser(plan.EndpointsOf(cfg5).Nodes[i], cfg5.AdminUser, harness.TestAdminPassword)
	}
	docker, err := dockerapi.NewDocker(os.Getenv("DOCKER_HOST"))
	if err != nil {
		t.Fatal(err)
	}
	gate := func(cfg *config.Config) *rolling.Gate {
		var nodes []string
		for i := range cfg.Nodes {
			nodes = append(nodes, plan.NodeNames(cfg.Prefix, i).Container)
		}
		return rolling.New(docker, rolling.Settings{
			Nodes: nodes, Drain: render.DrainCommand(60), Timeout: 3 * time.Minute, Grace: 5 * time.Second,
			QuorumGroupSize: cfg.QuorumGroupSize, VHosts: []string{"/"}, Log: func(s string) { t.Log("gate: " + s) },
		})
	}
	setPolicy := func(cfg *config.Config) {
		p := plan.PolicyFor(cfg)
		harness.MustDocker(t, "exec", node(0), "rabbitmqctl", "-q", "set_policy", "--apply-to", p.ApplyTo, p.Name, p.Pattern, p.DefinitionJSON())
	}

	startCluster(t, cfg3, line.Image)
	harness.WaitRunning(t, node(0), 3, time.Minute)
	// Six queues declared on node 0 before any policy: all led by node 0.
	var queues []string
	confirmed := map[string][]string{}
	conn := harness.Dial(t, direct(0), nil, time.Minute)
	for i := range 6 {
		q := fmt.Sprintf("members-%d", i)
		queues = append(queues, q)
		confirmed[q] = harness.PublishIDs(t, conn, q, q, 100, amqp.Table{"x-queue-type": "quorum"})
	}
	conn.Close()
	if leaders := queueLeaders(t, node(0), queues); len(distinct(leaders)) != 1 {
		t.Fatalf("leaders before any rebalance: %v, want all on node 0", leaders)
	}
	setPolicy(cfg3)

	// Scale 3 -> 5.
	for i := 3; i < 5; i++ {
		runNode(t, cfg5, i, line.Image)
	}
	harness.WaitRunning(t, node(0), 5, time.Minute)
	setPolicy(cfg5)
	start := time.Now()
	awaitMembers(t, node(0), queues, 2*time.Minute, func(m []string) bool { return len(m) == 5 })
	t.Logf("scale 3 -> 5: every queue has 5 members %s after the policy's new target size", time.Since(start).Round(100*time.Millisecond))
	gate(cfg5).Settle(context.Background(), time.Minute)
	leaders := queueLeaders(t, node(0), queues)
	t.Logf("leaders after the settle step: %v", leaders)
	if len(distinct(leaders)) < 3 {
		t.Errorf("leaders after the rebalance: %v, want them spread over at least 3 nodes", leaders)
	}

	// A queue of 3 members, two of them on the nodes about to leave.
	conn = harness.Dial(t, direct(4), nil, time.Minute)
	const narrow = "members-narrow"
	setPolicy(cfg3)
	confirmed[narrow] = harness.PublishIDs(t, conn, narrow, narrow, 100, amqp.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": 3})
	conn.Close()
	if m := queueInfo(t, node(0))[narrow].Members; !slices.Contains(m, erl(3)) {
		harness.MustDocker(t, "exec", node(4), "rabbitmq-queues", "-q", "add_member", narrow, erl(3))
		other := slices.IndexFunc(m, func(n string) bool { return n != erl(4) })
		harness.MustDocker(t, "exec", node(4), "rabbitmq-queues", "-q", "delete_member", narrow, m[other])
	}
	awaitMembers(t, node(0), []string{narrow}, time.Minute, func(m []string) bool {
		return slices.Contains(m, erl(3)) && slices.Contains(m, erl(4)) && len(m) == 3
	})
	queues = append(queues, narrow)

	// Scale 5 -> 3, as `pulumi up` runs it: the policy first, then each
	// leaving node through the gate, stopped, removed and forgotten.
	g := gate(cfg3)
	for _, i := range []int{4, 3} {
		at := time.Now()
		if err := g.BeforeDelete(context.Background(), node(i)); err != nil {
			t.Fatalf("gate before deleting %s: %v", node(i), err)
		}
		t.Logf("scale-down: %s handed over and drained in %s", node(i), time.Since(at).Round(100*time.Millisecond))
		harness.MustDocker(t, "rm", "-f", node(i))
		g.AfterDelete(node(i))
		harness.MustDocker(t, "exec", node(0), "rabbitmqctl", "-q", "forget_cluster_node", erl(i))
	}
	members := awaitMembers(t, node(0), queues, time.Minute, func(m []string) bool { return len(m) == 3 })
	for q, m := range members {
		if slices.Contains(m, erl(3)) || slices.Contains(m, erl(4)) {
			t.Errorf("%s keeps a member on a removed node: %v", q, m)
		}
	}

	// Node 2 back on a fresh volume: forgotten, joined, its members back.
	harness.MustDocker(t, "rm", "-f", node(2))
	harness.MustDocker(t, "volume", "rm", plan.NodeNames(cfg3.Prefix, 2).Volume)
	runNode(t, cfg3, 2, line.Image)
	harness.WaitRunning(t, node(0), 3, time.Minute)
	start = time.Now()
	awaitMembers(t, node(0), queues, 2*time.Minute, func(m []string) bool { return len(m) == 3 && slices.Contains(m, erl(2)) })
	t.Logf("fresh volume: node 2 holds a member of every queue again %s after it was healthy", time.Since(start).Round(100*time.Millisecond))

	for _, q := range queues {
		got := harness.ConsumeIDs(t, direct(1), q, confirmed[q], 10*time.Second, 2*time.Minute)
		if lost, _ := got.Check(confirmed[q]); len(lost) > 0 {
			t.Errorf("%s: %d of %d confirmed messages lost", q, len(lost), len(confirmed[q]))
		}
	}
}

// queueInfo reads name, leader and members of every queue of vhost "/".
func queueInfo(t *testing.T, container string) map[string]struct {
	Leader  string
	Members []string
} {
	t.Helper()
	raw := harness.MustDocker(t, "exec", container, "rabbitmqctl", "-q", "list_queues", "name", "leader", "members", "--formatter", "json")
	var rows []struct {
		Name    string   `json:"name"`
		Leader  string   `json:"leader"`
		Members []string `json:"members"`
	}
	if err := json.Unmarshal([]byte(raw[strings.Index(raw, "["):]), &rows); err != nil {
		t.Fatalf("list_queues: %v in %q", err, raw)
	}
	out := map[string]struct {
		Leader  string
		Members []string
	}{}
	for _, r := range rows {
		out[r.Name] = struct {
			Leader  string
			Members []string
		}{r.Leader, r.Members}
	}
	return out
}

func queueLeaders(t *testing.T, container string, queues []string) []string {
	t.Helper()
	info := queueInfo(t, container)
	var out []string
	for _, q := range queues {
		out = append(out, info[q].Leader)
	}
	return out
}

// awaitMembers waits until every queue's members satisfy ok, and returns
// them.
func awaitMembers(t *testing.T, container string, queues []string, timeout time.Duration, ok func([]string) bool) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		info := queueInfo(t, container)
		got := map[string][]string{}
		bad := ""
		for _, q := range queues {
			got[q] = info[q].Members
			if !ok(info[q].Members) && bad == "" {
				bad = fmt.Sprintf("%s: %v", q, info[q].Members)
			}
		}
		if bad == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, a queue's members are still not as wanted: %s", timeout, bad)
		}
		time.Sleep(2 * time.Second)
	}
}

func distinct(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
