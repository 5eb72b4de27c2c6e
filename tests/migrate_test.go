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
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/migrate"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// The blue-green move (issue 17) from the stack's own specs, checked by
// real RabbitMQs. An old 3.10 node takes migrate/testdata/old-3.10.json
// (the recipe's kind of cluster) on a network of its own. For each quorum
// line, a new stack joins that network (migrateFrom.network), the
// migration job imports the moved definitions, and the shovels the plan
// gives (as runtime parameters, what pulumi-rabbitmq's Shovel sets) empty
// the old queues into the new ones. Counted by message ID.

const (
	oldNode = "rmqha-it-migrate-old"
	oldNet  = "rmqha-it-migrate-oldnet"
	// oldPort is the old node's AMQP port on 127.0.0.1.
	oldPort = 51300
	// movedPassword is orders-app's password on the old node; oldAdminPassword
	// is admin's.
	movedPassword    = "orders-app-old-password"
	oldAdminPassword = "old-admin-password"
	// The messages waiting on the old side, per line.
	movedJobs, movedAudit = 1000, 300
)

func TestIntegrationMigrate(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ containers; skipped under -short")
	}
	parallelTest(t)
	harness.RequireImages(t, harness.RabbitMQ3Image)
	old := startOldCluster(t)
	for _, line := range harness.Lines {
		if line.HAMode != config.HAModeQuorum {
			continue
		}
		t.Run(line.Name, func(t *testing.T) { migrateInto(t, line, old) })
	}
}

// startOldCluster runs the old 3.10 node on its own network with the
// fixture's definitions (its shovel and federation plugins on, as the
// fixture's parameters need) and the two passwords set.
func startOldCluster(t *testing.T) loneNode {
	t.Helper()
	cleanup := func() {
		_, _ = harness.Docker(context.Background(), nil, "rm", "-f", "-v", oldNode)
		_, _ = harness.Docker(context.Background(), nil, "network", "rm", oldNet)
	}
	cleanup()
	t.Cleanup(cleanup)
	harness.MustDocker(t, "network", "create", oldNet)
	n := startLoneNode(t, oldNode, harness.RabbitMQ3Image, "--network", oldNet, "-p", fmt.Sprintf("127.0.0.1:%d:5672", oldPort))
	n.must(t, "rabbitmq-plugins", "-q", "enable", "rabbitmq_shovel", "rabbitmq_federation")
	fixture, err := os.ReadFile("../migrate/testdata/old-3.10.json")
	if err != nil {
		t.Fatal(err)
	}
	n.importDefinitions(t, fixture)
	n.must(t, "rabbitmqctl", "-q", "change_password", "orders-app", movedPassword)
	n.must(t, "rabbitmqctl", "-q", "change_password", "admin", oldAdminPassword)
	return n
}

// oldURL is the old node's AMQP URL from the test, for user on vhost.
func oldURL(user, password, vhost string) string {
	return migrate.WithVHost(fmt.Sprintf("amqp://%s:%s@127.0.0.1:%d", user, password, oldPort), vhost)
}

// migrateInto moves the old node into a new stack of line, under no load:
// the old queues hold what was published before the move.
func migrateInto(t *testing.T, line harness.Line, old loneNode) {
	harness.RequireImages(t, line.Image)
	from, _ := json.Marshal(config.MigrateFrom{
		ManagementURL: "http://" + oldNode + ":15672", AMQPURL: "amqp://" + oldNode + ":5672",
		User: "admin", Password: oldAdminPassword, VHosts: []string{"/", "orders"},
		KeepClassic: []string{"orders/orders.audit"}, Network: oldNet,
	})
	cfg := line.Config(t, "rmqha-it-migrate", 242, 51000, map[string]string{config.KeyMigrateFrom: string(from)})
	harness.RemoveStack(t, cfg.Prefix)
	t.Cleanup(func() { harness.RemoveStack(t, cfg.Prefix) })

	// What waits on the old side: plain IDs, and one message whose
	// properties and headers must arrive as they were.
	jobs := publishOld(t, oldURL("admin", oldAdminPassword, "/"), "jobs", idMessages(line.Name+"-job", movedJobs))
	audit := publishOld(t, oldURL("orders-app", movedPassword, "orders"), "orders.audit", idMessages(line.Name+"-audit", movedAudit))
	marked := amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: line.Name + "-marked", ContentType: "application/json",
		CorrelationId: "c-42", Priority: 3, Headers: amqp.Table{"x-tenant": "acme", "x-attempt": int32(2)}, Body: []byte(`{"kept":true}`)}
	publishOld(t, oldURL("orders-app", movedPassword, "orders"), "orders.new", []amqp.Publishing{marked})

	export := old.must(t, "rabbitmqctl", "-q", "export_definitions", "-", "--format", "json")
	defs, err := migrate.Parse([]byte(export))
	if err != nil {
		t.Fatal(err)
	}
	p := harness.Plan(t, cfg)
	mig, err := plan.MigrationOf(cfg, p, defs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range mig.Move.Changes {
		t.Logf("move: %s", c)
	}
	if len(mig.Move.Problems) > 0 {
		t.Fatalf("the move has problems: %q", mig.Move.Problems)
	}
	harness.CreateNetwork(t, p.Network)
	startNodes(t, cfg, line.Image, nil)
	start := time.Now()
	harness.RunJob(t, mig.Job, line.Image, cfg.Prefix)
	t.Logf("the migration job imported the definitions in %s", time.Since(start).Round(100*time.Millisecond))

	node0 := p.Nodes[0].Spec.Name
	queueTypes := map[string]string{}
	for _, vhost := range []string{"/", "orders"} {
		var qs []struct{ Name, Type string }
		out := harness.MustDocker(t, "exec", node0, "rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "--formatter", "json")
		if err := json.Unmarshal([]byte(out), &qs); err != nil {
			t.Fatalf("list_queues -p %s: %v: %s", vhost, err, out)
		}
		for _, q := range qs {
			queueTypes[vhost+"/"+q.Name] = q.Type
		}
	}
	want := map[string]string{"//jobs": "quorum", "orders/orders.audit": "classic", "orders/orders.new": "quorum", "orders/orders.qq": "quorum", "orders/orders.urgent": "quorum"}
	for q, typ := range want {
		if queueTypes[q] != typ {
			t.Errorf("after the import, %s is %q, want %s (all: %v)", q, queueTypes[q], typ, queueTypes)
		}
	}
	if out := harness.MustDocker(t, "exec", node0, "rabbitmqctl", "-q", "list_policies", "-p", "orders", "--formatter", "json"); strings.Contains(out, `"ha-`) || !strings.Contains(out, "orders-limits") {
		t.Errorf("policies on orders after the import: %s", out)
	}
	if out, err := harness.Docker(context.Background(), nil, "exec", node0, "rabbitmqctl", "-q", "authenticate_user", "orders-app", movedPassword); err != nil {
		t.Errorf("orders-app cannot log in with its old password: %v: %s", err, out)
	}

	// The shovels, as the components set them through pulumi-rabbitmq.
	start = time.Now()
	for _, s := range mig.Shovels {
		value, _ := json.Marshal(s.Value())
		harness.MustDocker(t, "exec", node0, "rabbitmqctl", "-q", "set_parameter", "-p", s.VHost, "shovel", s.Name, string(value))
	}
	newJobs := plan.WithUser(plan.EndpointsOf(cfg).Nodes[0], cfg.AdminUser, harness.TestAdminPassword)
	newOrders := migrate.WithVHost(plan.WithUser(strings.TrimSuffix(plan.EndpointsOf(cfg).Nodes[1], "/"), "orders-app", movedPassword), "orders")
	for _, c := range []struct {
		url, queue string
		ids        []string
	}{{newJobs, "jobs", jobs}, {newOrders, "orders.audit", audit}} {
		got := harness.ConsumeIDs(t, c.url, c.queue, c.ids, 20*time.Second, 3*time.Minute)
		lost, dups := got.Check(c.ids)
		t.Logf("%s: %d of %d moved and consumed on the new side, %d duplicates, %s after the shovels started", c.queue, len(c.ids)-len(lost), len(c.ids), dups, time.Since(start).Round(100*time.Millisecond))
		if len(lost) > 0 {
			t.Errorf("%s: %d of the %d messages confirmed on the old side never reached the new one, e.g. %v", c.queue, len(lost), len(c.ids), lost[:min(5, len(lost))])
		}
	}
	checkMarked(t, newOrders, "orders.new", marked)
	for _, q := range []struct{ vhost, name string }{{"/", "jobs"}, {"orders", "orders.audit"}, {"orders", "orders.new"}} {
		if n := oldDepth(t, old, q.vhost, q.name); n != 0 {
			t.Errorf("the old %s/%s still holds %d messages", q.vhost, q.name, n)
		}
	}
	// The move is over: the shovels go (as they do when migrateFrom is
	// removed), so the next line starts from the old side alone.
	for _, s := range mig.Shovels {
		harness.MustDocker(t, "exec", node0, "rabbitmqctl", "-q", "clear_parameter", "-p", s.VHost, "shovel", s.Name)
	}
}

// publishOld publishes msgs to a queue of the old side with confirms,
// after a passive declare (the queue's arguments are its own), fails the
// test unless each is confirmed, and returns their IDs.
func publishOld(t *testing.T, url, queue string, msgs []amqp.Publishing) []string {
	t.Helper()
	conn := harness.Dial(t, url, nil, 30*time.Second)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
		t.Fatalf("the old side has no queue %s: %v", queue, err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirm("", queue, true, false, m)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(t.Context()); err != nil || !ok {
			t.Fatalf("the old side did not confirm %s: %v", m.MessageId, err)
		}
		ids = append(ids, m.MessageId)
	}
	return ids
}

// idMessages are n persistent messages, the i-th with ID prefix-i.
func idMessages(prefix string, n int) []amqp.Publishing {
	out := make([]amqp.Publishing, n)
	for i := range out {
		id := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: id, Body: []byte(id)}
	}
	return out
}

// checkMarked takes the marked message from the new side and checks that
// it arrived as it was published: properties, headers and body.
func checkMarked(t *testing.T, url, queue string, want amqp.Publishing) {
	t.Helper()
	conn := harness.Dial(t, url, nil, 30*time.Second)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(500 * time.Millisecond) {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if ok {
			got := fmt.Sprintf("id %s, type %s, correlation %s, priority %d, persistent %v, headers %v, body %s",
				d.MessageId, d.ContentType, d.CorrelationId, d.Priority, d.DeliveryMode == amqp.Persistent, d.Headers, d.Body)
			exp := fmt.Sprintf("id %s, type %s, correlation %s, priority %d, persistent %v, headers %v, body %s",
				want.MessageId, want.ContentType, want.CorrelationId, want.Priority, true, want.Headers, want.Body)
			if got != exp {
				t.Errorf("the marked message changed on its way:\n got %s\nwant %s", got, exp)
			}
			return
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("the marked message did not reach the new %s within a minute", queue)
		}
	}
}

// oldDepth is a queue's message count on the old node.
func oldDepth(t *testing.T, old loneNode, vhost, queue string) int {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Second) {
		out := old.must(t, "rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages", "--formatter", "json")
		type depth struct {
			Name     string
			Messages int
		}
		var qs []depth
		if err := json.Unmarshal([]byte(out), &qs); err != nil {
			t.Fatalf("list_queues on the old node: %v: %s", err, out)
		}
		i := slices.IndexFunc(qs, func(q depth) bool { return q.Name == queue })
		if i < 0 {
			t.Fatalf("the old node has no queue %s/%s", vhost, queue)
		}
		// The counts lag a little behind the acks: wait for zero briefly.
		if qs[i].Messages == 0 || time.Since(start) > 15*time.Second {
			return qs[i].Messages
		}
	}
}

// loneNode is a single RabbitMQ node in a container. Its CLI runs as the
// rabbitmq user: run as root before the node's first start, it would write
// the cookie file the node then cannot read.
type loneNode struct{ name string }

// exec runs a command in the node's container as the rabbitmq user.
func (n loneNode) exec(stdin []byte, args ...string) (string, error) {
	return harness.Docker(context.Background(), stdin, append([]string{"exec", "-i", "--user", "rabbitmq", n.name}, args...)...)
}

// must is exec that fails the test on an error.
func (n loneNode) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.exec(nil, args...)
	if err != nil {
		t.Fatalf("%s on %s: %v: %s", strings.Join(args, " "), n.name, err, out)
	}
	return out
}

// startLoneNode runs image as a lone node with the given docker run
// options, and waits until it runs. The caller removes it.
func startLoneNode(t *testing.T, name, image string, opts ...string) loneNode {
	t.Helper()
	harness.MustDocker(t, append(append([]string{"run", "-d", "--name", name, "--hostname", name}, opts...), image)...)
	n := loneNode{name}
	for start := time.Now(); ; time.Sleep(500 * time.Millisecond) {
		if _, err := n.exec(nil, "rabbitmq-diagnostics", "-q", "check_running"); err == nil {
			return n
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("%s (%s) is not running 2 minutes after its start:\n%s", name, image, harness.Logs(t, name))
		}
	}
}

// importDefinitions imports a definitions document into the node.
func (n loneNode) importDefinitions(t *testing.T, doc []byte) {
	t.Helper()
	if out, err := n.exec(doc, "sh", "-c", "cat > /tmp/definitions.json"); err != nil {
		t.Fatalf("copying definitions into %s: %v: %s", n.name, err, out)
	}
	if out, err := n.exec(nil, "rabbitmqctl", "-q", "import_definitions", "/tmp/definitions.json"); err != nil {
		t.Fatalf("import_definitions on %s: %v: %s\n%s", n.name, err, out, doc)
	}
}
