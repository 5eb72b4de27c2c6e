package tests

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// TestIntegrationForceBoot runs docs/RUNBOOK.md's "The whole cluster went
// down" with the worst ending, on every line: every node stops, and the node
// that stopped last is gone for good with its volume.
//   - Mnesia (3.10, 4.0): a survivor waits for it (Mnesia's table wait); the
//     runbook's force_boot commands bring the survivor up alone, and the
//     other survivor follows.
//   - Khepri (4.3): the two survivors are a majority; started together they
//     serve, with no force_boot.
//
// Then the lost node comes back on a fresh volume as "A node lost its
// volume" says. The quorum queue keeps every message; the classic mirrored
// queue of 3.10 is lost with the last node, as RabbitMQ documents and the
// runbook warns; an unreplicated classic queue lives on with its node.
func TestIntegrationForceBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ containers; skipped under -short")
	}
	parallelTest(t)
	for _, line := range harness.Lines {
		t.Run(line.Name, func(t *testing.T) { parallelLine(t); forceBoot(t, line) })
	}
}

func forceBoot(t *testing.T, line harness.Line) {
	harness.RequireImages(t, line.Image)
	cfg := line.Config(t, "rmqha-it-force", 238, 49700, nil)
	harness.RemoveStack(t, cfg.Prefix)
	t.Cleanup(func() { harness.RemoveStack(t, cfg.Prefix) })
	startCluster(t, cfg, line.Image)
	node := func(i int) string { return plan.NodeNames(cfg.Prefix, i).Container }
	harness.WaitRunning(t, node(0), 3, time.Minute)

	p := plan.PolicyFor(cfg)
	harness.MustDocker(t, "exec", node(0), "rabbitmqctl", "-q", "set_policy", "--apply-to", p.ApplyTo, p.Name, p.Pattern, p.DefinitionJSON())
	admin := func(i int) string {
		return plan.WithUser(plan.EndpointsOf(cfg).Nodes[i], cfg.AdminUser, harness.TestAdminPassword)
	}
	// classic is mirrored by ha-all on the mirrored line, and a plain,
	// unreplicated classic queue on node 1 on the quorum lines.
	const classic, quorum, n = "it-force-classic", "it-force-quorum", 100
	conn := harness.Dial(t, admin(1), nil, 30*time.Second)
	for q, args := range map[string]amqp.Table{classic: {"x-queue-type": "classic"}, quorum: {"x-queue-type": "quorum"}} {
		if got := harness.PublishConfirmed(t, conn, q, n, args); got != n {
			t.Fatalf("%s: confirmed %d of %d", q, got, n)
		}
	}
	conn.Close()

	// Node 2, then node 1, then node 0 stop; node 0 is lost with its volume.
	for _, i := range []int{2, 1, 0} {
		harness.MustDocker(t, "stop", node(i))
	}
	harness.MustDocker(t, "rm", node(0))
	harness.MustDocker(t, "volume", "rm", plan.NodeNames(cfg.Prefix, 0).Volume)

	if cfg.Khepri() {
		// Khepri: the two survivors are a majority of its Raft members.
		// Started together, they serve with no force_boot (there is none).
		start := time.Now()
		harness.MustDocker(t, "start", node(1), node(2))
		harness.WaitHealthy(t, node(1), harness.StartTimeout)
		harness.WaitHealthy(t, node(2), harness.StartTimeout)
		t.Logf("Khepri: the 2 survivors healthy %s after docker start, with no force_boot", time.Since(start).Round(100*time.Millisecond))
	} else {
		mnesiaForceBoot(t, cfg, line)
	}
	// Two of the quorum queue's three members are back: it serves.
	expectDepth(t, admin(1), quorum, n)

	// Node 0 comes back on a fresh volume: forgotten by the survivors, then
	// joined again.
	runNode(t, cfg, 0, line.Image)
	if logs := harness.Logs(t, node(0)); !strings.Contains(logs, "forgotten") {
		t.Errorf("node 0 on a fresh volume, want it forgotten and joined again:\n%s", logs)
	}
	harness.WaitRunning(t, node(1), 3, time.Minute)
	expectDepth(t, admin(0), quorum, n)
	expectDepth(t, admin(2), quorum, n)

	if cfg.HAMode == config.HAModeQuorum {
		// An unreplicated classic queue lives and dies with its node: node 1
		// survived, so it is whole.
		expectDepth(t, admin(2), classic, n)
		return
	}
	// A classic mirrored queue's leader moves to the last node to stop (its
	// mirrors stopped first), and a mirror drops its copy when it restarts:
	// with that node lost, forgetting it deletes the queue. The runbook says
	// so; this checks that it is still true.
	c := harness.Dial(t, admin(2), nil, 30*time.Second)
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive(classic, true, false, false, false, nil); err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Errorf("the mirrored queue after its last node was lost: err = %v, want NOT_FOUND (see docs/RUNBOOK.md)", err)
	}
}

// mnesiaForceBoot: node 1 waits for node 0, the last to stop; the runbook's
// force_boot commands bring it up alone, and node 2 (stopped before it)
// boots from it.
func mnesiaForceBoot(t *testing.T, cfg *config.Config, line harness.Line) {
	node := func(i int) string { return plan.NodeNames(cfg.Prefix, i).Container }
	harness.MustDocker(t, "start", node(1))
	for deadline := time.Now().Add(time.Minute); !strings.Contains(harness.MustDocker(t, "logs", node(1)), "Waiting for Mnesia tables"); time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 did not wait for the node that stopped last:\n%s", harness.MustDocker(t, "logs", "--tail", "30", node(1)))
		}
	}

	// The runbook's commands, as written there.
	start := time.Now()
	step := func(what string, args ...string) {
		t.Helper()
		at := time.Now()
		harness.MustDocker(t, args...)
		t.Logf("%s: %s", what, time.Since(at).Round(100*time.Millisecond))
	}
	step("docker kill", "kill", node(1))
	step("force_boot", "run", "--rm", "--user", "rabbitmq", "--hostname", node(1),
		"-v", plan.NodeNames(cfg.Prefix, 1).Volume+":/var/lib/rabbitmq", "--entrypoint", "rabbitmqctl",
		line.Image, "force_boot")
	step("docker start", "start", node(1))
	harness.WaitHealthy(t, node(1), harness.StartTimeout)
	t.Logf("force_boot: node 1 healthy %s after the runbook's commands began", time.Since(start).Round(100*time.Millisecond))

	harness.MustDocker(t, "start", node(2))
	harness.WaitHealthy(t, node(2), harness.StartTimeout)
}
