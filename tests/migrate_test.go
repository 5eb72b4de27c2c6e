package tests

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/migrate"
)

// The blue-green move's definitions (issue 17), checked by real RabbitMQs:
// a 3.10 node takes migrate/testdata/old-3.10.json (the recipe's kind of
// cluster), its own export is moved by migrate.Transform, and a node of
// each quorum line imports the move. Queues come out quorum (classic where
// kept), policies without ha-*, and a user logs in with its old password.

// movedPassword is the password orders-app has on the old node.
const movedPassword = "orders-app-old-password"

func TestIntegrationMigrateDefinitions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ containers; skipped under -short")
	}
	harness.RequireImages(t, harness.RabbitMQ3Image)
	export := oldExport(t)
	old, err := migrate.Parse(export)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(old.Policies, func(p migrate.Policy) bool { return p.Definition["ha-mode"] != nil }) {
		t.Fatalf("the old node's export has no ha-* policy:\n%s", export)
	}
	m := migrate.Transform(old, migrate.Options{
		VHosts: []string{"/", "orders"}, KeepClassic: []string{"orders/orders.audit"},
		OwnUsers: []string{"admin"}, Plugins: []string{"rabbitmq_management", "rabbitmq_prometheus"},
	})
	for _, c := range m.Changes {
		t.Logf("move: %s", c)
	}
	for _, line := range harness.Lines {
		if line.HAMode != config.HAModeQuorum {
			continue
		}
		t.Run(line.Name, func(t *testing.T) { importMove(t, line, m) })
	}
}

// oldExport runs a 3.10 node with the fixture's definitions (its shovel
// and federation plugins on, as the fixture's parameters need), sets
// orders-app's password, and returns the node's own export.
func oldExport(t *testing.T) []byte {
	name := "rmqha-it-migrate-old"
	n := startLoneNode(t, name, harness.RabbitMQ3Image)
	n.must(t, "rabbitmq-plugins", "-q", "enable", "rabbitmq_shovel", "rabbitmq_federation")
	fixture, err := os.ReadFile("../migrate/testdata/old-3.10.json")
	if err != nil {
		t.Fatal(err)
	}
	n.importDefinitions(t, fixture)
	n.must(t, "rabbitmqctl", "-q", "change_password", "orders-app", movedPassword)
	return []byte(n.must(t, "rabbitmqctl", "-q", "export_definitions", "-", "--format", "json"))
}

// importMove imports the move into a fresh node of line and checks it.
func importMove(t *testing.T, line harness.Line, m migrate.Move) {
	harness.RequireImages(t, line.Image)
	name := "rmqha-it-migrate-" + strings.ReplaceAll(line.Name, ".", "")
	n := startLoneNode(t, name, line.Image)
	n.importDefinitions(t, m.Definitions.JSON())

	type queue struct{ Name, Type string }
	var got []queue
	for _, vhost := range []string{"/", "orders"} {
		var qs []queue
		out := n.must(t, "rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "--formatter", "json")
		if err := json.Unmarshal([]byte(out), &qs); err != nil {
			t.Fatalf("list_queues -p %s: %v: %s", vhost, err, out)
		}
		for _, q := range qs {
			got = append(got, queue{vhost + "/" + q.Name, q.Type})
		}
	}
	slices.SortFunc(got, func(a, b queue) int { return strings.Compare(a.Name, b.Name) })
	want := []queue{{"//jobs", "quorum"}, {"orders/orders.audit", "classic"}, {"orders/orders.new", "quorum"}, {"orders/orders.qq", "quorum"}, {"orders/orders.rpc", "classic"}, {"orders/orders.urgent", "quorum"}}
	if !slices.Equal(got, want) {
		t.Errorf("queues after the import:\n got %v\nwant %v", got, want)
	}
	if out := n.must(t, "rabbitmqctl", "-q", "list_policies", "-p", "orders", "--formatter", "json"); strings.Contains(out, "ha-") || !strings.Contains(out, "orders-limits") {
		t.Errorf("policies on orders after the import: %s", out)
	}
	if out, err := n.exec(t, nil, "rabbitmqctl", "-q", "authenticate_user", "orders-app", movedPassword); err != nil {
		t.Errorf("orders-app cannot log in with its old password: %v: %s", err, out)
	}
	if out, err := n.exec(t, nil, "rabbitmqctl", "-q", "authenticate_user", "orders-app", "not-"+movedPassword); err == nil {
		t.Errorf("orders-app logs in with a wrong password: %s", out)
	}
}

// loneNode is a single RabbitMQ node in a container, for definitions.
// Its CLI runs as the rabbitmq user: run as root before the node's first
// start, it would write the cookie file the node then cannot read.
type loneNode struct{ name string }

// exec runs a command in the node's container as the rabbitmq user.
func (n loneNode) exec(t *testing.T, stdin []byte, args ...string) (string, error) {
	return harness.Docker(context.Background(), stdin, append([]string{"exec", "-i", "--user", "rabbitmq", n.name}, args...)...)
}

// must is exec that fails the test on an error.
func (n loneNode) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.exec(t, nil, args...)
	if err != nil {
		t.Fatalf("%s on %s: %v: %s", strings.Join(args, " "), n.name, err, out)
	}
	return out
}

// startLoneNode runs image as a lone node, removed when the test ends, and
// waits until it runs.
func startLoneNode(t *testing.T, name, image string) loneNode {
	t.Helper()
	_, _ = harness.Docker(t.Context(), nil, "rm", "-f", "-v", name)
	t.Cleanup(func() { _, _ = harness.Docker(context.Background(), nil, "rm", "-f", "-v", name) })
	harness.MustDocker(t, "run", "-d", "--name", name, "--hostname", name, image)
	n := loneNode{name}
	for start := time.Now(); ; time.Sleep(500 * time.Millisecond) {
		if _, err := n.exec(t, nil, "rabbitmq-diagnostics", "-q", "check_running"); err == nil {
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
	if out, err := n.exec(t, doc, "sh", "-c", "cat > /tmp/definitions.json"); err != nil {
		t.Fatalf("copying definitions into %s: %v: %s", n.name, err, out)
	}
	if out, err := n.exec(t, nil, "rabbitmqctl", "-q", "import_definitions", "/tmp/definitions.json"); err != nil {
		t.Fatalf("import_definitions on %s: %v: %s\n%s", n.name, err, out, doc)
	}
}
