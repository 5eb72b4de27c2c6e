package components

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// fakeOldCluster is the old cluster's management API: the fixture's
// definitions (migrate/testdata) and a depth for every queue, behind basic
// auth. It records the paths asked for.
type fakeOldCluster struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func startOldCluster(t *testing.T, user, password string) *fakeOldCluster {
	defs, err := os.ReadFile("../migrate/testdata/old-3.10.json")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeOldCluster{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.paths = append(f.paths, r.URL.EscapedPath())
		f.mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			http.Error(w, `{"error":"not_authorized"}`, http.StatusUnauthorized)
			return
		}
		switch {
		case r.URL.Path == "/api/definitions":
			_, _ = w.Write(defs)
		case strings.HasPrefix(r.URL.Path, "/api/queues/"):
			_ = json.NewEncoder(w).Encode(map[string]int{"messages": 42})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// migrateFromOf is a migrateFrom for the fake old cluster.
func migrateFromOf(f *fakeOldCluster, password string) string {
	b, _ := json.Marshal(map[string]any{
		"managementUrl": f.URL, "amqpUrl": "amqp://old-haproxy:5672", "user": "admin", "password": password,
		"vhosts": []string{"/", "orders"}, "keepClassic": []string{"orders/orders.audit"}, "network": "old-net",
	})
	return string(b)
}

// A move reads the old cluster, imports the moved definitions through its
// job, and gives every moved queue an on-confirm shovel whose source URI
// (the mover's password) is secret.
func TestMigrationInputs(t *testing.T) {
	old := startOldCluster(t, "admin", "old-s3cret")
	m := run(t, map[string]any{"rabbitmqImage": "rabbitmq:4.3-local", "migrateFrom": migrateFromOf(old, "old-s3cret")})

	job := m.container(t, "rabbitmq-migration-job")
	defs, _, secret := upload(t, job, render.DefinitionsPath)
	if !secret || !strings.Contains(defs, `"name": "orders.new"`) || strings.Contains(defs, "ha-mode") {
		t.Errorf("the job's definitions (secret %v):\n%s", secret, defs)
	}
	var cmd []string
	for _, c := range job.inputs["command"].ArrayValue() {
		cmd = append(cmd, c.StringValue())
	}
	if want := render.ImportCommand([]string{"rabbit@rabbitmq-ha-dev-node-0", "rabbit@rabbitmq-ha-dev-node-1", "rabbit@rabbitmq-ha-dev-node-2"}); !slices.Equal(cmd, want) {
		t.Errorf("job command %v, want %v", cmd, want)
	}
	if !job.inputs["attach"].BoolValue() || !containsSuffix(job.deps, "rabbitmq-node-2") {
		t.Errorf("the job is not waited for (attach %v) or does not wait for the nodes: %v", job.inputs["attach"], job.deps)
	}
	for _, name := range []string{"rabbitmq-node-0", "rabbitmq-haproxy"} {
		c := m.container(t, name)
		nets := c.inputs["networksAdvanced"].ArrayValue()
		joined := len(nets) == 2 && nets[1].ObjectValue()["name"].StringValue() == "old-net"
		if joined != (name != "rabbitmq-haproxy") {
			t.Errorf("%s networks %v: only the nodes join the old cluster's network", name, nets)
		}
	}
	if plugins, _, _ := upload(t, m.container(t, "rabbitmq-node-1"), render.EnabledPluginsPath); plugins != render.ShovelPlugins {
		t.Errorf("a moving stack's plugins = %q", plugins)
	}

	shovels := m.byType("rabbitmq:index/shovel:Shovel")
	var queues []string
	for _, s := range shovels {
		info := s.inputs["info"].ObjectValue()
		src := info["sourceUri"]
		if !src.IsSecret() || !strings.Contains(src.SecretValue().Element.StringValue(), "admin:old-s3cret@old-haproxy:5672") {
			t.Errorf("%s: sourceUri %v is not the secret old URI", s.name, src)
		}
		if info["ackMode"].StringValue() != "on-confirm" || info["sourceQueue"].StringValue() != info["destinationQueue"].StringValue() || info["destinationAddForwardHeaders"].BoolValue() {
			t.Errorf("%s: info %v", s.name, info)
		}
		if !containsSuffix(s.deps, "rabbitmq-migration-job") {
			t.Errorf("%s does not wait for the import: %v", s.name, s.deps)
		}
		queues = append(queues, s.inputs["vhost"].StringValue()+"/"+info["sourceQueue"].StringValue())
	}
	slices.Sort(queues)
	if want := []string{"//jobs", "orders/orders.audit", "orders/orders.new", "orders/orders.qq", "orders/orders.urgent"}; !slices.Equal(queues, want) {
		t.Errorf("shovelled %v, want %v", queues, want)
	}
	// The progress is read for every moved queue.
	old.mu.Lock()
	defer old.mu.Unlock()
	for _, q := range []string{"/api/queues/%2F/jobs", "/api/queues/orders/orders.new"} {
		if !slices.Contains(old.paths, q) {
			t.Errorf("the old cluster was not asked for %s: %v", q, old.paths)
		}
	}
}

// Without migrateFrom, nothing of a move exists.
func TestNoMigration(t *testing.T) {
	m := run(t, map[string]any{"rabbitmqImage": "rabbitmq:4.3-local"})
	if n := len(m.byType("rabbitmq:index/shovel:Shovel")); n != 0 {
		t.Errorf("%d shovels without migrateFrom", n)
	}
	for _, r := range m.resources {
		if strings.Contains(r.name, "migration") {
			t.Errorf("%s exists without migrateFrom", r.name)
		}
	}
}

// An old cluster that refuses the mover fails the program before anything
// is created, naming the URL and the status, never the password.
func TestMigrationRefused(t *testing.T) {
	old := startOldCluster(t, "admin", "the-right-one")
	_, err := runWith(fakeDocker{}, map[string]any{"rabbitmqImage": "rabbitmq:4.3-local", "migrateFrom": migrateFromOf(old, "a-wrong-password")})
	if err == nil || !strings.Contains(err.Error(), "migrateFrom.managementUrl: GET "+old.URL+"/api/definitions as admin: 401 Unauthorized") || strings.Contains(err.Error(), "a-wrong-password") {
		t.Errorf("error = %v", err)
	}
}
