package migrate

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// testdata/old-3.10.json is a definitions export of a 3.10 cluster like
// the classic docker-compose recipe's: the ha-all policy, a lazy queue, a
// priority queue, a transient one, an auto-delete one, a shovel and a
// federation upstream of its own, and a vhost that stays behind. Some tags
// are a string, as before 3.9. TestIntegrationMigrateDefinitions loads it
// into a real 3.10 node and imports the move into the quorum lines.

// fixture is testdata/old-3.10.json, parsed.
func fixture(t *testing.T) Definitions {
	t.Helper()
	raw, err := os.ReadFile("testdata/old-3.10.json")
	if err != nil {
		t.Fatal(err)
	}
	old, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return old
}

func move(t *testing.T, opts Options) Move {
	t.Helper()
	return Transform(fixture(t), opts)
}

var defaultOpts = Options{VHosts: []string{"/", "orders"}, KeepClassic: []string{"orders/orders.audit"}, OwnUsers: []string{"admin"}, Plugins: []string{"rabbitmq_management", "rabbitmq_prometheus"}}

func TestTransformQueues(t *testing.T) {
	m := move(t, defaultOpts)
	got := map[string]map[string]any{}
	for _, q := range m.Definitions.Queues {
		got[q.VHost+"/"+q.Name] = q.Arguments
	}
	want := map[string]map[string]any{
		"orders/orders.new":    {"x-queue-type": "quorum", "x-message-ttl": float64(86400000)},
		"orders/orders.urgent": {"x-queue-type": "quorum", "x-overflow": "reject-publish", "x-queue-leader-locator": "client-local"},
		"orders/orders.audit":  {"x-queue-type": "classic"},
		"orders/orders.qq":     {"x-queue-type": "quorum"},
		"//jobs":               {"x-queue-type": "quorum"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("queues:\n got %v\nwant %v", got, want)
	}
	var shovelled []string
	for _, q := range m.Queues {
		shovelled = append(shovelled, q.VHost+"/"+q.Name)
	}
	slices.Sort(shovelled)
	if want := []string{"//jobs", "orders/orders.audit", "orders/orders.new", "orders/orders.qq", "orders/orders.urgent"}; !slices.Equal(shovelled, want) {
		t.Errorf("shovelled queues = %v, want %v (every imported queue: the transient and auto-delete ones are not)", shovelled, want)
	}
	expectChanges(t, m.Changes, map[string]string{
		"queue orders/orders.cache":             "not imported: a transient queue",
		"queue orders/orders.rpc":               "not imported: an auto-delete queue",
		"queue orders/orders.audit":             "kept classic, as configured",
		"queue orders/orders.urgent":            "argument x-max-priority dropped",
		"queue orders/orders.new":               "argument x-queue-mode dropped",
		"binding orders/events -> orders.cache": "not imported: its queue is not",
	})
	if len(m.Definitions.Bindings) != 1 || m.Definitions.Bindings[0].Destination != "orders.new" {
		t.Errorf("bindings = %+v, want only events -> orders.new", m.Definitions.Bindings)
	}
}

func TestTransformPolicies(t *testing.T) {
	m := move(t, defaultOpts)
	if len(m.Definitions.Policies) != 1 {
		t.Fatalf("policies = %+v, want only orders-limits (ha-all has nothing left)", m.Definitions.Policies)
	}
	want := map[string]any{"max-length": float64(100000), "overflow": "reject-publish", "queue-leader-locator": "balanced", "dead-letter-exchange": "dlx"}
	if got := m.Definitions.Policies[0].Definition; !reflect.DeepEqual(got, want) {
		t.Errorf("orders-limits = %v, want %v", got, want)
	}
	expectChanges(t, m.Changes, map[string]string{
		"policy //ha-all":             "not imported: nothing is left of it",
		"policy orders/orders-limits": "ha-params dropped: classic mirroring was removed",
	})
}

func TestTransformUsersAndParameters(t *testing.T) {
	m := move(t, defaultOpts)
	var users []string
	for _, u := range m.Definitions.Users {
		users = append(users, u.Name+":"+u.PasswordHash+":"+strings.Join(u.Tags, "+"))
	}
	// admin is the stack's own; legacy-app has no permission on a moved
	// vhost; ops is an administrator (its tags were a string).
	if want := []string{"ops:aGFzaDM=:administrator+monitoring", "orders-app:aGFzaDI=:"}; !slices.Equal(users, want) {
		t.Errorf("users = %v, want %v", users, want)
	}
	if len(m.Definitions.Permissions) != 1 || m.Definitions.Permissions[0].User != "orders-app" || len(m.Definitions.TopicPermissions) != 1 {
		t.Errorf("permissions = %+v, topic permissions = %+v", m.Definitions.Permissions, m.Definitions.TopicPermissions)
	}
	if len(m.Definitions.Parameters) != 0 {
		t.Errorf("parameters = %+v, want none: the new nodes run neither shovel nor federation as a user's", m.Definitions.Parameters)
	}
	expectChanges(t, m.Changes, map[string]string{
		"user admin":                               "not imported: this stack manages a user of that name",
		"parameter shovel orders/to-archive":       "not imported: the new nodes do not run rabbitmq_shovel",
		"parameter federation-upstream orders/dc2": "not imported: the new nodes do not run rabbitmq_federation",
		"global parameter cluster_name":            "not imported",
	})
	// With the shovel plugin running, its parameters come along.
	opts := defaultOpts
	opts.Plugins = append(slices.Clone(opts.Plugins), "rabbitmq_shovel")
	if m := move(t, opts); len(m.Definitions.Parameters) != 1 || m.Definitions.Parameters[0].Name != "to-archive" {
		t.Errorf("with rabbitmq_shovel: parameters = %+v", m.Definitions.Parameters)
	}
}

// The vhosts that stay behind leave nothing in the move; a vhost the old
// cluster lacks is reported.
func TestTransformVHosts(t *testing.T) {
	opts := defaultOpts
	opts.VHosts = []string{"orders", "missing"}
	m := move(t, opts)
	raw := string(m.Definitions.JSON())
	for _, other := range []string{"legacy", `"jobs"`, "ha-all"} {
		if strings.Contains(raw, other) {
			t.Errorf("the move of orders carries %s:\n%s", other, raw)
		}
	}
	if strings.Contains(raw, "null") {
		t.Errorf("the document has a null (RabbitMQ's import refuses it):\n%s", raw)
	}
	if !hasChange(m.Changes, "vhost missing", "not on the old cluster") {
		t.Errorf("a missing vhost is not reported:\n%s", changes(m.Changes))
	}
	// The document round-trips: what is imported is what was decided.
	back, err := Parse(m.Definitions.JSON())
	if err != nil || !reflect.DeepEqual(back.Queues, m.Definitions.Queues) {
		t.Errorf("round trip: %v\n%+v", err, back.Queues)
	}
}

// The mover must be able to read every moved vhost on the old side.
func TestTransformMover(t *testing.T) {
	opts := defaultOpts
	opts.Mover = "orders-app"
	m := move(t, opts)
	if len(m.Problems) != 1 || !strings.Contains(m.Problems[0], `migrateFrom.user "orders-app" has no configure and read permission on the old cluster's vhost "/"`) {
		t.Errorf("problems = %q", m.Problems)
	}
	opts.Mover = "admin"
	if m := move(t, opts); len(m.Problems) != 0 {
		t.Errorf("admin, with permissions on / and orders: problems = %q", m.Problems)
	}
}

// The move does not depend on the order the old cluster's API lists
// things in (a restarted old node lists them anew): the same definitions,
// reversed, give the same document, byte for byte.
func TestTransformIgnoresOrder(t *testing.T) {
	old := fixture(t)
	reversed := old
	reversed.Users, reversed.Queues, reversed.Bindings = slices.Clone(old.Users), slices.Clone(old.Queues), slices.Clone(old.Bindings)
	reversed.Policies, reversed.Permissions = slices.Clone(old.Policies), slices.Clone(old.Permissions)
	for _, s := range []func(){
		func() { slices.Reverse(reversed.Users) }, func() { slices.Reverse(reversed.Queues) }, func() { slices.Reverse(reversed.Bindings) },
		func() { slices.Reverse(reversed.Policies) }, func() { slices.Reverse(reversed.Permissions) },
	} {
		s()
	}
	a, b := Transform(old, defaultOpts), Transform(reversed, defaultOpts)
	if string(a.Definitions.JSON()) != string(b.Definitions.JSON()) || changes(a.Changes) != changes(b.Changes) {
		t.Errorf("the move depends on the old listing's order:\n%s\n---\n%s", a.Definitions.JSON(), b.Definitions.JSON())
	}
}

func TestShovels(t *testing.T) {
	m := move(t, defaultOpts)
	s := Shovels(m, "amqp://mover:s3cret@old-haproxy:5672", "amqp://")
	if len(s) != len(m.Queues) {
		t.Fatalf("%d shovels for %d queues", len(s), len(m.Queues))
	}
	byName := map[string]Shovel{}
	for _, sh := range s {
		byName[sh.VHost+" "+sh.Name] = sh
	}
	root, ok := byName["/ rabbitmq-ha-migrate-jobs"]
	if !ok || root.SourceURI != "amqp://mover:s3cret@old-haproxy:5672/%2F" || root.DestinationURI != "amqp:///%2F" || root.AckMode != "on-confirm" || root.Queue != "jobs" {
		t.Errorf("the / vhost's shovel = %+v", root)
	}
	if o := byName["orders rabbitmq-ha-migrate-orders.new"]; o.SourceURI != "amqp://mover:s3cret@old-haproxy:5672/orders" {
		t.Errorf("the orders vhost's shovel = %+v", o)
	}
}

func TestTagsDecode(t *testing.T) {
	for raw, want := range map[string][]string{`["a","b"]`: {"a", "b"}, `"a, b"`: {"a", "b"}, `""`: nil, `[]`: {}} {
		var got Tags
		if err := json.Unmarshal([]byte(raw), &got); err != nil || !slices.Equal(got, want) {
			t.Errorf("tags %s = %v (%v), want %v", raw, got, err, want)
		}
	}
	var bad Tags
	if err := json.Unmarshal([]byte(`7`), &bad); err == nil {
		t.Error("tags 7 decoded")
	}
}

// expectChanges fails unless the report has each change: what, and a
// part of what was done to it.
func expectChanges(t *testing.T, cs []Change, want map[string]string) {
	t.Helper()
	for what, did := range want {
		if !hasChange(cs, what, did) {
			t.Errorf("no change %q: %q in\n%s", what, did, changes(cs))
		}
	}
}

func hasChange(cs []Change, what, did string) bool {
	return slices.ContainsFunc(cs, func(c Change) bool { return c.What == what && strings.Contains(c.Did, did) })
}

func changes(cs []Change) string {
	var lines []string
	for _, c := range cs {
		lines = append(lines, "  "+c.String())
	}
	return strings.Join(lines, "\n")
}
