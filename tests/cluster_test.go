package tests

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// startCluster runs a config's nodes with plain docker as the stack does:
// all at once, then waits until every one is healthy.
func startCluster(t *testing.T, cfg *config.Config, image string) {
	t.Helper()
	startClusterWith(t, cfg, image, nil)
}

// startClusterWith is startCluster with each node's spec changed by edit
// first (nil: as the stack renders it).
func startClusterWith(t *testing.T, cfg *config.Config, image string, edit func(*plan.ContainerSpec)) {
	t.Helper()
	harness.CreateNetwork(t, harness.Plan(t, cfg).Network)
	startNodes(t, cfg, image, edit)
}

// startNodes is startClusterWith on a network that exists.
func startNodes(t *testing.T, cfg *config.Config, image string, edit func(*plan.ContainerSpec)) {
	t.Helper()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Nodes; i++ {
		spec := harness.Plan(t, cfg).Nodes[i].Spec
		if edit != nil {
			edit(&spec)
		}
		harness.RunSpec(t, spec, image, cfg.Prefix)
		wg.Add(1)
		go func() {
			defer wg.Done()
			harness.WaitHealthy(t, spec.Name, harness.StartTimeout)
		}()
	}
	wg.Wait()
}

func runNode(t *testing.T, cfg *config.Config, i int, image string) {
	t.Helper()
	spec := harness.Plan(t, cfg).Nodes[i].Spec
	harness.RunSpec(t, spec, image, cfg.Prefix)
	harness.WaitHealthy(t, spec.Name, harness.StartTimeout)
}

// TestIntegrationClusterLifecycle forms a 3-node cluster from the stack's
// own specs (rendered rabbitmq.conf, cluster script, cookie handling) on
// every supported line, and checks restarts, re-creation on the same volume
// and on a fresh volume, and the drain. Node 2 is a RAM node where the line
// has RAM nodes (Mnesia).
func TestIntegrationClusterLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ containers; skipped under -short")
	}
	parallelTest(t)
	for _, line := range harness.Lines {
		t.Run(line.Name, func(t *testing.T) { parallelLine(t); clusterLifecycle(t, line) })
	}
}

func clusterLifecycle(t *testing.T, line harness.Line) {
	harness.RequireImages(t, line.Image)
	cfg := line.Config(t, "rmqha-it-cluster", 237, 49400, nil)
	ram := cfg.RAMNodesSupported()
	if ram {
		cfg = line.Config(t, "rmqha-it-cluster", 237, 49400, map[string]string{config.KeyNodeTypes: `["disc","disc","ram"]`})
	}
	harness.RemoveStack(t, cfg.Prefix)
	t.Cleanup(func() { harness.RemoveStack(t, cfg.Prefix) })

	start := time.Now()
	startCluster(t, cfg, line.Image)
	t.Logf("3 nodes healthy after %s", time.Since(start).Round(100*time.Millisecond))

	node := func(i int) string { return plan.NodeNames(cfg.Prefix, i).Container }
	s := harness.WaitRunning(t, node(0), 3, time.Minute)
	if ram && (len(s.RAMNodes) != 1 || s.RAMNodes[0] != plan.NodeNames(cfg.Prefix, 2).Erlang) {
		t.Errorf("ram nodes = %v, want [%s]", s.RAMNodes, plan.NodeNames(cfg.Prefix, 2).Erlang)
	}
	if !ram && len(s.RAMNodes) != 0 {
		t.Errorf("ram nodes = %v on a line without them", s.RAMNodes)
	}

	// The cookie is a file only rabbitmq can read, and the uploaded copy is root's alone.
	if got := harness.MustDocker(t, "exec", node(1), "stat", "-c", "%U %a", "/var/lib/rabbitmq/.erlang.cookie", "/opt/rabbitmq-ha/erlang.cookie"); got != "rabbitmq 400\nroot 400" {
		t.Errorf("cookie owners and modes = %q, want rabbitmq 400 and root 400", got)
	}
	if env := harness.MustDocker(t, "inspect", "-f", "{{json .Config.Env}}", node(1)); strings.Contains(env, harness.TestCookie) {
		t.Error("the cookie is in the container's environment")
	}
	// The stack's enabled_plugins: management and prometheus.
	if plugins := harness.MustDocker(t, "exec", node(2), "rabbitmq-plugins", "-q", "list", "--enabled", "--minimal"); !strings.Contains(plugins, "rabbitmq_management") || !strings.Contains(plugins, "rabbitmq_prometheus") {
		t.Errorf("enabled plugins = %q", plugins)
	}
	// guest does not exist: the admin user replaced it.
	if users := harness.MustDocker(t, "exec", node(0), "rabbitmqctl", "-q", "list_users"); strings.Contains(users, "guest") || !strings.Contains(users, cfg.AdminUser) {
		t.Errorf("users = %q, want %s and no guest", users, cfg.AdminUser)
	}

	p := plan.PolicyFor(cfg)
	harness.MustDocker(t, "exec", node(0), "rabbitmqctl", "-q", "set_policy", "--apply-to", p.ApplyTo, p.Name, p.Pattern, p.DefinitionJSON())
	admin := func(i int) string {
		return plan.WithUser(plan.EndpointsOf(cfg).Nodes[i], cfg.AdminUser, harness.TestAdminPassword)
	}
	conn := harness.Dial(t, admin(1), nil, 30*time.Second)
	const queue, n = "it-lifecycle", 200
	if got := harness.PublishConfirmed(t, conn, queue, n, nil); got != n {
		t.Fatalf("confirmed %d of %d", got, n)
	}
	conn.Close()

	// 1. docker restart keeps the node's data and does not join again.
	harness.MustDocker(t, "restart", node(1))
	harness.WaitHealthy(t, node(1), harness.StartTimeout)
	logs := harness.Logs(t, node(1))
	restarted := sinceLastStop(logs)
	if strings.Count(restarted, "starting RabbitMQ with its existing data") != 1 || strings.Contains(restarted, "joining") {
		t.Errorf("node 1 after restart, want one start with existing data and no join:\n%s", logs)
	}
	if strings.Contains(logs, "exited with 0 during boot") {
		// Seen in CI on 3.10 under load (stop 22 and 23), cause unknown: a
		// fresh node's first boot ends with exit code 0 and the restart
		// policy starts it again on its data. Logged, not failed: it is not
		// what this step tests, and it recovers by itself.
		t.Logf("KNOWN FLAKE: node 1's first boot exited with 0 and was restarted:\n%s", logs)
	}
	harness.WaitRunning(t, node(0), 3, time.Minute)
	expectDepth(t, admin(1), queue, n)

	// 2. Re-created on its volume: rejoins without a reset.
	harness.MustDocker(t, "rm", "-f", node(1))
	runNode(t, cfg, 1, line.Image)
	if logs := harness.Logs(t, node(1)); !strings.Contains(logs, "existing data") || strings.Contains(logs, "joining") {
		t.Errorf("node 1 re-created on its volume, want existing data and no join:\n%s", logs)
	}
	harness.WaitRunning(t, node(0), 3, time.Minute)
	expectDepth(t, admin(1), queue, n)

	// 3. Back without its data while the cluster remembers it: forgotten, then joined.
	harness.MustDocker(t, "rm", "-f", node(1))
	harness.MustDocker(t, "volume", "rm", plan.NodeNames(cfg.Prefix, 1).Volume)
	runNode(t, cfg, 1, line.Image)
	if logs := harness.Logs(t, node(1)); !strings.Contains(logs, "it was forgotten there") {
		t.Errorf("node 1 on a fresh volume, want it forgotten and rejoined:\n%s", logs)
	}
	harness.WaitRunning(t, node(0), 3, time.Minute)
	expectDepth(t, admin(1), queue, n)

	// 4. Drained as the rolling replacement does it, through the Docker API:
	// the node stops taking clients and fails its health check, the queue
	// stays whole on the others, and a restart brings it back into service.
	testDrain(t, cfg, line, 2, admin, queue, n)

	// 5. Every node stopped at once, as a host's reboot, a Docker daemon's
	// restart or destroy stops them: each sees the others stopping too, so
	// none waits out its handover for them; started again at once, the
	// cluster comes back with its messages.
	stopTogether(t, cfg, admin, queue, n)
}

// sinceLastStop is a node's log from its last SIGTERM on: what its last
// stop, and the start after it, did.
func sinceLastStop(logs string) string {
	return logs[max(0, strings.LastIndex(logs, "received SIGTERM")):]
}

// stopTogether stops every node at once and starts them again. Half the
// handover bound is the limit: before the stopping mark, 4.3's nodes each
// waited 49-65 s for the others; with it, 4-12 s on every line here.
func stopTogether(t *testing.T, cfg *config.Config, admin func(int) string, queue string, n int) {
	t.Helper()
	names := make([]string, cfg.Nodes)
	for i := range names {
		names[i] = plan.NodeNames(cfg.Prefix, i).Container
	}
	start := time.Now()
	eachAtOnce(t, "stop", names)
	took := time.Since(start)
	t.Logf("every node stopped at once in %s", took.Round(100*time.Millisecond))
	for _, name := range names {
		if stop := sinceLastStop(harness.Logs(t, name)); strings.Contains(stop, "stopping anyway") {
			t.Errorf("%s waited out its handover when every node stopped:\n%s", name, stop)
		}
	}
	if limit := render.HandoverSeconds * time.Second / 2; took > limit {
		t.Errorf("stopping every node at once took %s, want under %s", took.Round(100*time.Millisecond), limit)
	}
	eachAtOnce(t, "start", names)
	for _, name := range names {
		harness.WaitHealthy(t, name, harness.StartTimeout)
	}
	harness.WaitRunning(t, names[0], cfg.Nodes, 2*time.Minute)
	expectDepth(t, admin(0), queue, n)
}

func testDrain(t *testing.T, cfg *config.Config, line harness.Line, i int, admin func(int) string, queue string, n int) {
	t.Helper()
	docker, err := dockerapi.NewDocker(os.Getenv("DOCKER_HOST"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name := plan.NodeNames(cfg.Prefix, i).Container
	before, err := docker.Inspect(ctx, name)
	if err != nil || !before.Healthy() {
		t.Fatalf("inspect %s = %+v, %v; want healthy", name, before, err)
	}
	if v, _ := before.EnvValue("RABBITMQ_VERSION"); config.ParseVersion(v) != config.ImageVersion(line.Image) {
		t.Errorf("RABBITMQ_VERSION = %q, want the %s series", v, config.ImageVersion(line.Image))
	}
	if missing, err := docker.Inspect(ctx, cfg.Prefix+"-no-such-node"); err != nil || missing.Exists {
		t.Errorf("inspect of a missing container = %+v, %v", missing, err)
	}
	start := time.Now()
	code, out, err := docker.Exec(ctx, name, render.DrainCommand(60))
	if err != nil || code != 0 {
		t.Fatalf("drain: exit %d, %v:\n%s", code, err, out)
	}
	t.Logf("drained %s in %s", name, time.Since(start).Round(100*time.Millisecond))
	for _, want := range []string{"drain: waiting until every quorum queue", "drain: entering maintenance mode", "drain: done"} {
		if !strings.Contains(out, want) {
			t.Errorf("drain output lacks %q:\n%s", want, out)
		}
	}
	if _, err := amqp.Dial(admin(i)); err == nil {
		t.Errorf("%s still takes AMQP clients after its drain", name)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c, _ := docker.Inspect(ctx, name); c.Health != "unhealthy"; c, _ = docker.Inspect(ctx, name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q 30 s after its drain, want unhealthy", name, c.Health)
		}
		time.Sleep(500 * time.Millisecond)
	}
	expectDepth(t, admin((i+1)%cfg.Nodes), queue, n)

	harness.MustDocker(t, "restart", name)
	harness.WaitHealthy(t, name, harness.StartTimeout)
	conn := harness.Dial(t, admin(i), nil, 30*time.Second)
	conn.Close()
	harness.WaitRunning(t, plan.NodeNames(cfg.Prefix, 0).Container, cfg.Nodes, time.Minute)
	expectDepth(t, admin(i), queue, n)
}

func expectDepth(t *testing.T, url, queue string, want int) {
	t.Helper()
	conn := harness.Dial(t, url, nil, 30*time.Second)
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := harness.QueueDepth(t, conn, queue)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages, want %d", queue, got, want)
		}
		time.Sleep(time.Second)
	}
}
