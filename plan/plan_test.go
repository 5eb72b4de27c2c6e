package plan

import (
	"github.com/rabbitmq-ha/rabbitmq-ha/migrate"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

const (
	testCookie = "MOCKCOOKIE0123456789abcdef"
	testAdmin  = "mock-admin-Passw0rd"
	testStats  = "mock-stats-Passw0rd"
)

// load returns a validated config of the given values and test secrets.
func load(t *testing.T, values map[string]string) *config.Config {
	t.Helper()
	v := map[string]string{
		config.KeyErlangCookie: testCookie, config.KeyAdminPassword: testAdmin, config.KeyStatsPassword: testStats,
	}
	for k, val := range values {
		v[k] = val
	}
	cfg, _, err := config.Load(config.MapSource{Values: v, Secrets: map[string]bool{
		config.KeyErlangCookie: true, config.KeyAdminPassword: true, config.KeyStatsPassword: true, config.KeyMigrateFrom: true,
	}}, "p", "s")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestNodeNames(t *testing.T) {
	for _, c := range []struct {
		prefix                    string
		i                         int
		container, erlang, volume string
	}{
		{"rabbitmq-ha-dev", 1, "rabbitmq-ha-dev-node-1", "rabbit@rabbitmq-ha-dev-node-1", "rabbitmq-ha-dev-node-1-data"},
		{"x", 0, "x-node-0", "rabbit@x-node-0", "x-node-0-data"},
		{"x", 8, "x-node-8", "rabbit@x-node-8", "x-node-8-data"},
	} {
		n := NodeNames(c.prefix, c.i)
		if n.Container != c.container || n.Erlang != c.erlang || n.Volume != c.volume {
			t.Errorf("NodeNames(%q, %d) = %+v", c.prefix, c.i, n)
		}
		if !strings.HasPrefix(n.Container, PeerPrefix(c.prefix)) {
			t.Errorf("%s does not start with the peer prefix %s the cluster script probes", n.Container, PeerPrefix(c.prefix))
		}
	}
}

func TestNew(t *testing.T) {
	for _, c := range []struct {
		name   string
		values map[string]string
		// want
		nodes   int
		ips     []string
		ports   []int
		policy  string
		vhosts  []string
		khepri  bool
		ramNode int // -1: none
	}{
		{name: "default", values: nil, nodes: 3, ips: []string{"10.9.0.10", "10.9.0.11", "10.9.0.12"},
			ports: []int{56720, 56721, 56722}, policy: QuorumPolicy, vhosts: []string{"/"}, khepri: true, ramNode: -1},
		{name: "five nodes and vhosts", values: map[string]string{config.KeyNodes: "5", config.KeyVHosts: `["orders","/","billing"]`},
			nodes: 5, ips: []string{"10.9.0.10", "10.9.0.11", "10.9.0.12", "10.9.0.13", "10.9.0.14"},
			ports: []int{56720, 56721, 56722, 56723, 56724}, policy: QuorumPolicy, vhosts: []string{"/", "orders", "billing"}, khepri: true, ramNode: -1},
		{name: "one node", values: map[string]string{config.KeyNodes: "1"}, nodes: 1, ips: []string{"10.9.0.10"},
			ports: []int{56720}, policy: QuorumPolicy, vhosts: []string{"/"}, khepri: true, ramNode: -1},
		{name: "3.10 mirrored with a ram node", values: map[string]string{
			config.KeyRabbitMQImage: "rabbitmq:3.10-local", config.KeyNodeTypes: `["disc","disc","ram"]`},
			nodes: 3, ips: []string{"10.9.0.10", "10.9.0.11", "10.9.0.12"},
			ports: []int{56720, 56721, 56722}, policy: MirroredPolicy, vhosts: []string{"/"}, ramNode: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := load(t, c.values)
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Nodes) != c.nodes {
				t.Fatalf("%d nodes, want %d", len(p.Nodes), c.nodes)
			}
			var members []string
			for i, n := range p.Nodes {
				names := NodeNames(cfg.Prefix, i)
				if n.Index != i || n.Names != names || n.IP != c.ips[i] || n.AMQPPort != c.ports[i] || n.MetricsPort != cfg.Ports.Metrics(i) {
					t.Errorf("node %d = %+v", i, n)
				}
				s := n.Spec
				if s.Name != names.Container || s.Hostname != names.Container || s.IP != n.IP || s.Volume != names.Volume || s.VolumePath != DataPath {
					t.Errorf("node %d spec identity = %s %s %s %s", i, s.Name, s.Hostname, s.IP, s.Volume)
				}
				if s.Ports[0].External != n.AMQPPort || s.Ports[0].Internal != render.AMQPPort || s.Ports[1].External != n.MetricsPort {
					t.Errorf("node %d ports = %+v", i, s.Ports)
				}
				wantType := config.NodeDisc
				if i == c.ramNode {
					wantType = config.NodeRAM
				}
				if n.Type != wantType || !slices.Equal(s.Command, render.NodeCommand(wantType)) {
					t.Errorf("node %d type %s, command %v; want %s", i, n.Type, s.Command, wantType)
				}
				conf := file(t, s, render.RabbitMQConfPath)
				if i > 0 && !strings.Contains(conf, NodeNames(cfg.Prefix, 0).Erlang) {
					t.Errorf("node %d: rabbitmq.conf does not name the seed", i)
				}
				if c.khepri == strings.Contains(conf, "cluster_partition_handling") {
					t.Errorf("node %d: partition handling in rabbitmq.conf on a Khepri line %v", i, c.khepri)
				}
				if s.Labels[LabelStack] != cfg.Prefix || s.Labels[LabelRole] != RoleNode || s.Labels[LabelNode] != string(rune('0'+i)) {
					t.Errorf("node %d labels = %v", i, s.Labels)
				}
				members = append(members, names.Erlang)
			}
			if want := render.ForgetCommand(members); !slices.Equal(p.ForgetJob.Command, want) {
				t.Errorf("forget job command %v, want %v", p.ForgetJob.Command, want)
			}
			// The forget job gets the script and the cookie by name, never
			// the admin credentials.
			if paths := pathsOf(p.ForgetJob); !slices.Equal(paths, []string{render.ScriptPath, render.CookieUploadPath}) {
				t.Errorf("forget job files %v", paths)
			}
			if got := file(t, p.Nodes[0].Spec, render.CookieUploadPath); got != testCookie {
				t.Errorf("cookie = %q", got)
			}
			cfgText := file(t, p.HAProxy.ConfigJob, render.Staged(render.HAProxyConfigPath))
			for _, n := range p.Nodes {
				if !strings.Contains(cfgText, n.Container) || !strings.Contains(cfgText, n.IP) {
					t.Errorf("haproxy.cfg lacks %s at %s", n.Container, n.IP)
				}
			}
			if strings.Contains(cfgText, NodeNames(cfg.Prefix, c.nodes).Container) {
				t.Errorf("haproxy.cfg names a node beyond the %d configured", c.nodes)
			}
			if p.HAProxy.Spec.Volume != p.HAProxy.Volume || p.HAProxy.ConfigJob.Volume != p.HAProxy.Volume || p.HAProxy.Volume != cfg.Prefix+"-haproxy-conf" {
				t.Errorf("HAProxy volumes %s %s %s", p.HAProxy.Spec.Volume, p.HAProxy.ConfigJob.Volume, p.HAProxy.Volume)
			}
			if p.Broker.Policy.Name != c.policy || !slices.Equal(p.Broker.VHosts, c.vhosts) {
				t.Errorf("broker %+v, want policy %s on %v", p.Broker, c.policy, c.vhosts)
			}
			if p.Network.Name != cfg.Prefix || p.Network.Subnet != cfg.Subnet.String() || p.Network.Labels[LabelStack] != cfg.Prefix {
				t.Errorf("network %+v", p.Network)
			}
			if len(p.Endpoints.Nodes) != c.nodes || !slices.Equal(p.Containers(), namesOf(p)) {
				t.Errorf("endpoints %v, node names %v", p.Endpoints.Nodes, p.Containers())
			}
		})
	}
}

func TestHAAllIsTheMirroredPolicy(t *testing.T) {
	cfg := load(t, map[string]string{config.KeyRabbitMQImage: "rabbitmq:3.10-local"})
	p := PolicyFor(cfg)
	if p.Name != MirroredPolicy || p.ApplyTo != "queues" || p.Definition["ha-mode"] != "all" || p.Definition["ha-sync-mode"] != "automatic" ||
		p.Definition["ha-promote-on-failure"] != "when-synced" || p.Definition["ha-promote-on-shutdown"] != "when-synced" {
		t.Errorf("mirrored policy = %+v", p)
	}
	if got, want := p.DefinitionJSON(), HAAll().DefinitionJSON(); got != want {
		t.Errorf("mirrored policy %s, HAAll %s", got, want)
	}
	q := PolicyFor(load(t, map[string]string{config.KeyNodes: "5", config.KeyQuorumGroupSize: "3"}))
	if q.StringDefinition()["target-group-size"] != "3" || q.DefinitionJSON() != `{"queue-leader-locator":"balanced","target-group-size":3}` {
		t.Errorf("quorum policy %+v: %s", q, q.DefinitionJSON())
	}
}

func TestWithFileCopies(t *testing.T) {
	p, err := New(load(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	job := p.HAProxy.ConfigJob.WithFile(CertBundlePath, "PEM")
	if file(t, job, CertBundlePath) != "PEM" || file(t, p.HAProxy.ConfigJob, CertBundlePath) != "" {
		t.Error("WithFile changed the plan's own spec, or not the copy")
	}
}

// TestClientCA: mutual TLS changes the config job (the bundle, the script
// that installs it, haproxy.cfg) and never HAProxy's own container.
func TestClientCA(t *testing.T) {
	pki, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := New(load(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	mutual, err := New(load(t, map[string]string{config.KeyTLSClientCACert: pki.CAPEM}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain.HAProxy.Spec, mutual.HAProxy.Spec) {
		t.Error("mutual TLS changed HAProxy's container: it would be re-created")
	}
	job := mutual.HAProxy.ConfigJob
	if got := file(t, job, ClientCABundlePath); got != pki.CAPEM {
		t.Errorf("the job's client CA bundle = %q", got)
	}
	if s := file(t, job, render.HAProxyScriptPath); !strings.Contains(s, "for f in client-ca.pem server.pem haproxy.cfg; do") {
		t.Error("the job's script does not install the client CA bundle")
	}
	if c := file(t, job, render.Staged(render.HAProxyConfigPath)); !strings.Contains(c, "verify required") || !strings.Contains(c, render.Digest(pki.CAPEM)) {
		t.Error("haproxy.cfg neither requires client certificates nor names the bundle's digest")
	}
	if slices.ContainsFunc(plain.HAProxy.ConfigJob.Files, func(f FileSpec) bool { return f.Path == ClientCABundlePath }) {
		t.Error("a client CA bundle without tlsClientCaCert")
	}
}

func TestEndpoints(t *testing.T) {
	cfg := load(t, map[string]string{config.KeyHostIP: "0.0.0.0"})
	e := EndpointsOf(cfg)
	if e.AMQP != "amqp://127.0.0.1:56729/" || e.AMQPS != "amqps://localhost:56671/" || e.Nodes[2] != "amqp://127.0.0.1:56722/" || e.Management != "http://127.0.0.1:55672" {
		t.Errorf("endpoints = %+v", e)
	}
	for _, u := range append([]string{e.AMQP, e.AMQPS, e.Stats, e.Management}, e.Nodes...) {
		if strings.Contains(u, "@") {
			t.Errorf("%s holds credentials", u)
		}
	}
	if got := WithUser(e.AMQP, "u", "p@ss"); got != "amqp://u:p%40ss@127.0.0.1:56729/" {
		t.Errorf("WithUser = %s", got)
	}
}

func file(t *testing.T, s ContainerSpec, path string) string {
	t.Helper()
	for _, f := range s.Files {
		if f.Path == path {
			return f.Content
		}
	}
	t.Fatalf("%s has no file %s", s.Name, path)
	return ""
}

func pathsOf(s ContainerSpec) []string {
	var out []string
	for _, f := range s.Files {
		out = append(out, f.Path)
	}
	return out
}

func namesOf(p *Plan) []string {
	var out []string
	for i := range p.Nodes {
		out = append(out, NodeNames(p.Prefix, i).Container)
	}
	return out
}

// TestSeedFirst: where peer discovery joins the longest-running candidate
// (4.x), a fresh non-seed node waits for the seed's container before it
// starts RabbitMQ; on 3.10, whose discovery never picks the node itself, it
// starts at once, as before.
func TestSeedFirst(t *testing.T) {
	for image, want := range map[string]string{
		"rabbitmq:3.10-local": "readonly SEED_FIRST=false",
		"rabbitmq:4.0-local":  "readonly SEED_FIRST=true",
		"rabbitmq:4.3-local":  "readonly SEED_FIRST=true",
	} {
		values := map[string]string{config.KeyRabbitMQImage: image}
		if image != "rabbitmq:3.10-local" {
			values[config.KeyHAMode] = config.HAModeQuorum
		}
		p, err := New(load(t, values))
		if err != nil {
			t.Fatal(err)
		}
		if script := file(t, p.Nodes[1].Spec, render.ScriptPath); !strings.Contains(script, want+"\n") {
			t.Errorf("%s: the cluster script lacks %q", image, want)
		}
	}
}

// A move (migrateFrom) adds the shovel plugin and the old cluster's network
// to every node, and its job imports the moved definitions, kept secret
// (they carry password hashes), through the first node that answers.
func TestMigration(t *testing.T) {
	plain := load(t, nil)
	moving := load(t, map[string]string{config.KeyMigrateFrom: `{"managementUrl":"http://old:15672","amqpUrl":"amqp://old:5672","user":"admin","password":"old-pw","vhosts":["/"],"network":"oldnet"}`})
	for _, c := range []struct {
		cfg      *config.Config
		plugins  string
		networks []string
	}{{plain, render.EnabledPlugins, nil}, {moving, render.ShovelPlugins, []string{"oldnet"}}} {
		p, err := New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range p.Nodes {
			if got := file(t, n.Spec, render.EnabledPluginsPath); got != c.plugins || !slices.Equal(n.Spec.Networks, c.networks) {
				t.Errorf("%s: plugins %q, networks %v; want %q, %v", n.Spec.Name, got, n.Spec.Networks, c.plugins, c.networks)
			}
		}
	}
	p, err := New(moving)
	if err != nil {
		t.Fatal(err)
	}
	old := migrate.Definitions{
		VHosts:      []migrate.VHost{{Name: "/"}},
		Permissions: []migrate.Permission{{User: "admin", VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}},
		Queues:      []migrate.Queue{{Name: "jobs", VHost: "/", Durable: true}},
	}
	m, err := MigrationOf(moving, p, old)
	if err != nil {
		t.Fatal(err)
	}
	if want := render.ImportCommand([]string{"rabbit@p-s-node-0", "rabbit@p-s-node-1", "rabbit@p-s-node-2"}); !slices.Equal(m.Job.Command, want) {
		t.Errorf("job command %v, want %v", m.Job.Command, want)
	}
	defs := file(t, m.Job, render.DefinitionsPath)
	if !strings.Contains(defs, `"x-queue-type": "quorum"`) || !strings.Contains(defs, `"user": "admin"`) || !slices.Equal(m.Job.Networks, []string{"oldnet"}) {
		t.Errorf("job networks %v, definitions:\n%s", m.Job.Networks, defs)
	}
	for _, f := range m.Job.Files {
		if f.Path == render.DefinitionsPath && !f.Secret || f.Path == render.CookieUploadPath && !f.Secret {
			t.Errorf("%s is not secret", f.Path)
		}
	}
	if len(m.Shovels) != 1 || m.Shovels[0].SourceURI != "amqp://admin:old-pw@old:5672/%2F" || len(m.Move.Problems) != 0 {
		t.Errorf("shovels %+v, problems %q", m.Shovels, m.Move.Problems)
	}
}
