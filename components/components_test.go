package components

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
	"github.com/rabbitmq-ha/rabbitmq-ha/rolling"
)

const (
	testCookie = "MOCKCOOKIE0123456789abcdef"
	testAdmin  = "mock-admin-Passw0rd"
	testStats  = "mock-stats-Passw0rd"
	userPass   = "app-user-Passw0rd"
)

// registered is one resource the program registered, with its inputs.
type registered struct {
	typ, name string
	inputs    resource.PropertyMap
	deps      []string
	provider  string
	hooks     []string // before-delete hook names
}

type mocks struct {
	mu        sync.Mutex
	resources []registered
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := registered{typ: args.TypeToken, name: args.Name, inputs: args.Inputs, provider: args.Provider}
	if args.RegisterRPC != nil {
		r.deps = args.RegisterRPC.GetDependencies()
		r.hooks = args.RegisterRPC.GetHooks().GetBeforeDelete()
	}
	m.resources = append(m.resources, r)
	outputs := args.Inputs.Copy()
	switch args.TypeToken {
	case "docker:index/remoteImage:RemoteImage":
		outputs["imageId"] = resource.NewStringProperty("sha256:" + args.Name)
	case "tls:index/privateKey:PrivateKey":
		outputs["privateKeyPem"] = resource.MakeSecret(resource.NewStringProperty("KEY " + args.Name + "\n"))
	case "tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert":
		outputs["certPem"] = resource.NewStringProperty("CERT " + args.Name + "\n")
	case "tls:index/certRequest:CertRequest":
		outputs["certRequestPem"] = resource.NewStringProperty("CSR\n")
	}
	return args.Name + "-id", outputs, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return args.Args, nil
}

func (m *mocks) byType(typ string) []registered {
	var out []registered
	for _, r := range m.resources {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	return out
}

// container returns the container resource of a name (a component may
// share the name).
func (m *mocks) container(t *testing.T, name string) registered {
	t.Helper()
	for _, r := range m.resources {
		if r.name == name && r.typ == "docker:index/container:Container" {
			return r
		}
	}
	t.Fatalf("no container resource named %s", name)
	return registered{}
}

// fakeDocker is the program's Docker connection in unit tests: containers by
// name, nothing else.
type fakeDocker map[string]dockerapi.Container

func (f fakeDocker) Inspect(_ context.Context, name string) (dockerapi.Container, error) {
	return f[name], nil
}

func (f fakeDocker) Exec(context.Context, string, []string) (int, string, error) {
	return 0, "", errors.New("fakeDocker: no exec in unit tests")
}

func (f fakeDocker) open(string) (rolling.Engine, error) { return f, nil }

// run runs the real Program with mocks and the given config, with no
// containers running yet.
func run(t *testing.T, extra map[string]any) *mocks {
	t.Helper()
	m, err := runWith(fakeDocker{}, extra)
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	return m
}

// runWith runs the real Program with mocks, the given running containers
// and config.
func runWith(docker fakeDocker, extra map[string]any) (*mocks, error) {
	return runWithOpen(docker.open, extra)
}

// runWithOpen is runWith with the program's Docker connection given, and
// changes to the run's info (a preview: DryRun).
func runWithOpen(open OpenDocker, extra map[string]any, edit ...func(*pulumi.RunInfo)) (*mocks, error) {
	cfg := map[string]string{
		"rabbitmq-ha:rabbitmqImage": "rabbitmq:3.10-local",
		"rabbitmq-ha:erlangCookie":  testCookie,
		"rabbitmq-ha:adminPassword": testAdmin,
		"rabbitmq-ha:statsPassword": testStats,
		"rabbitmq-ha:vhosts":        `["/","orders"]`,
		"rabbitmq-ha:users":         `[{"name":"app","password":"` + userPass + `","tags":["management"],"permissions":[{"vhost":"orders","configure":"^app\\.","write":".*","read":".*"}]}]`,
	}
	for k, v := range extra {
		cfg["rabbitmq-ha:"+k] = fmt.Sprint(v)
	}
	m := &mocks{}
	err := pulumi.RunErr(ProgramWith(open), pulumi.WithMocks("rabbitmq-ha", "dev", m), func(ri *pulumi.RunInfo) {
		ri.Config = cfg
		ri.ConfigSecretKeys = []string{"rabbitmq-ha:erlangCookie", "rabbitmq-ha:adminPassword", "rabbitmq-ha:statsPassword", "rabbitmq-ha:users", "rabbitmq-ha:migrateFrom"}
		for _, e := range edit {
			e(ri)
		}
	})
	return m, err
}

func str(t *testing.T, r registered, key string) string {
	t.Helper()
	v, ok := r.inputs[resource.PropertyKey(key)]
	if !ok {
		t.Fatalf("%s: no input %s", r.name, key)
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v.StringValue()
}

// upload returns a container's upload of one path, and whether it is secret.
func upload(t *testing.T, r registered, path string) (string, string, bool) {
	t.Helper()
	for _, u := range r.inputs["uploads"].ArrayValue() {
		o := u.ObjectValue()
		if o["file"].StringValue() != path {
			continue
		}
		c := o["content"]
		if c.IsSecret() {
			return c.SecretValue().Element.StringValue(), o["permissions"].StringValue(), true
		}
		return c.StringValue(), o["permissions"].StringValue(), false
	}
	t.Fatalf("%s: no upload of %s", r.name, path)
	return "", "", false
}

func TestResourceCounts(t *testing.T) {
	m := run(t, nil)
	want := map[string]int{
		"docker:index/network:Network":                  1,
		"docker:index/remoteImage:RemoteImage":          2,
		"docker:index/volume:Volume":                    4, // 3 nodes, HAProxy's
		"docker:index/container:Container":              6, // 3 nodes, HAProxy, forget job, HAProxy config job
		"tls:index/privateKey:PrivateKey":               2,
		"tls:index/selfSignedCert:SelfSignedCert":       1,
		"tls:index/locallySignedCert:LocallySignedCert": 1,
		"pulumi:providers:rabbitmq":                     1,
		"rabbitmq:index/vHost:VHost":                    1, // orders; "/" exists
		"rabbitmq:index/policy:Policy":                  2, // one per vhost
		"rabbitmq:index/user:User":                      1,
		"rabbitmq:index/permissions:Permissions":        1,
		"rabbitmq-ha:index:Cluster":                     1,
		"rabbitmq-ha:index:Nodes":                       1,
		"rabbitmq-ha:index:LoadBalancer":                1,
		"rabbitmq-ha:index:Broker":                      1,
		"rabbitmq-ha:index:PKI":                         1,
		"rabbitmq-ha:index:Network":                     1,
	}
	for typ, n := range want {
		if got := len(m.byType(typ)); got != n {
			t.Errorf("%s: %d resources, want %d", typ, got, n)
		}
	}
	for _, img := range m.byType("docker:index/remoteImage:RemoteImage") {
		if !img.inputs["keepLocally"].BoolValue() {
			t.Errorf("%s: keepLocally is not set", img.name)
		}
	}
}

func TestNodeInputs(t *testing.T) {
	m := run(t, map[string]any{"nodeTypes": `["disc","disc","ram"]`})
	for i := range 3 {
		c := m.container(t, fmt.Sprintf("rabbitmq-node-%d", i))
		host := fmt.Sprintf("rabbitmq-ha-dev-node-%d", i)
		if got := str(t, c, "hostname"); got != host {
			t.Errorf("node %d hostname = %s", i, got)
		}
		if got := str(t, c, "image"); got != "sha256:rabbitmq-node-image" {
			t.Errorf("node %d image = %s, want the image ID (not the tag)", i, got)
		}
		net := c.inputs["networksAdvanced"].ArrayValue()[0].ObjectValue()
		if ip := net["ipv4Address"].StringValue(); ip != fmt.Sprintf("10.9.0.%d", 10+i) {
			t.Errorf("node %d IP = %s", i, ip)
		}
		p := c.inputs["ports"].ArrayValue()[0].ObjectValue()
		if p["ip"].StringValue() != "127.0.0.1" || p["external"].NumberValue() != float64(56720+i) || p["internal"].NumberValue() != 5672 || p["protocol"].StringValue() != "tcp" {
			t.Errorf("node %d port = %v", i, p)
		}
		if ports := c.inputs["ports"].ArrayValue(); len(ports) != 2 || ports[1].ObjectValue()["ip"].StringValue() != "127.0.0.1" ||
			ports[1].ObjectValue()["external"].NumberValue() != float64(56780+i) || ports[1].ObjectValue()["internal"].NumberValue() != 15692 {
			t.Errorf("node %d ports = %v, want AMQP and Prometheus (127.0.0.1:%d -> 15692)", i, ports, 56780+i)
		}
		cmd := c.inputs["command"].ArrayValue()
		wantType := map[int]string{0: "disc", 1: "disc", 2: "ram"}[i]
		if len(cmd) != 3 || cmd[0].StringValue() != render.ScriptPath || cmd[2].StringValue() != wantType {
			t.Errorf("node %d command = %v", i, cmd)
		}
		conf, _, secret := upload(t, c, render.RabbitMQConfPath)
		if secret || !strings.Contains(conf, "total_memory_available_override_value = 429496730") {
			t.Errorf("node %d rabbitmq.conf (secret %v):\n%s", i, secret, conf)
		}
		if (i > 0) != strings.Contains(conf, "classic_config.nodes.1 = rabbit@rabbitmq-ha-dev-node-0") {
			t.Errorf("node %d: seed peer discovery only on nodes after the seed:\n%s", i, conf)
		}
		if plugins, _, _ := upload(t, c, render.EnabledPluginsPath); plugins != "[rabbitmq_management,rabbitmq_prometheus].\n" {
			t.Errorf("node %d enabled_plugins = %q", i, plugins)
		}
		if cookie, mode, secret := upload(t, c, render.CookieUploadPath); cookie != testCookie || !secret || mode != "0400" {
			t.Errorf("node %d cookie upload: secret %v mode %s", i, secret, mode)
		}
		if creds, _, secret := upload(t, c, render.SecretsConfPath); !secret || !strings.Contains(creds, "default_pass = "+testAdmin) {
			t.Errorf("node %d admin credentials upload is not a secret or lacks the password", i)
		}
		envs := c.inputs["envs"].ArrayValue()
		if len(envs) != 1 || envs[0].StringValue() != "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none" {
			t.Errorf("node %d envs = %v, want only the scheduler settings (secrets are files)", i, envs)
		}
		if !c.inputs["wait"].BoolValue() || c.inputs["memory"].NumberValue() != 512 || str(t, c, "restart") != "unless-stopped" {
			t.Errorf("node %d: wait/memory/restart = %v/%v/%v", i, c.inputs["wait"], c.inputs["memory"], c.inputs["restart"])
		}
		hc := c.inputs["healthcheck"].ObjectValue()
		if tests := hc["tests"].ArrayValue(); !strings.Contains(tests[len(tests)-1].StringValue(), render.ReadyFile) {
			t.Errorf("node %d healthcheck = %v", i, tests)
		}
		vol := c.inputs["volumes"].ArrayValue()[0].ObjectValue()
		if vol["containerPath"].StringValue() != "/var/lib/rabbitmq" || vol["volumeName"].StringValue() != host+"-data" {
			t.Errorf("node %d volume = %v", i, vol)
		}
		if containsSuffix(c.deps, "rabbitmq-node-0") {
			t.Errorf("node %d waits for the seed; nodes start together: %v", i, c.deps)
		}
	}
	// The same script on every node, so scaling re-creates no node.
	a, _, _ := upload(t, m.container(t, "rabbitmq-node-1"), render.ScriptPath)
	b, _, _ := upload(t, m.container(t, "rabbitmq-node-2"), render.ScriptPath)
	if a != b || !strings.Contains(a, "readonly SEED='rabbit@rabbitmq-ha-dev-node-0'") {
		t.Error("nodes carry different cluster scripts")
	}
}

// startTimeoutSeconds is every waited-for container's waitTimeout: the
// nodes' and HAProxy's (the one-shot config job is not waited for).
func TestStartTimeout(t *testing.T) {
	for _, tc := range []struct {
		extra map[string]any
		want  float64
	}{{nil, 360}, {map[string]any{"startTimeoutSeconds": 45}, 45}} {
		m := run(t, tc.extra)
		for _, name := range []string{"rabbitmq-node-0", "rabbitmq-node-1", "rabbitmq-node-2", "rabbitmq-haproxy"} {
			c := m.container(t, name)
			if !c.inputs["wait"].BoolValue() || c.inputs["waitTimeout"].NumberValue() != tc.want {
				t.Errorf("%v: %s wait/waitTimeout = %v/%v, want true/%v", tc.extra, name, c.inputs["wait"], c.inputs["waitTimeout"], tc.want)
			}
		}
	}
}

func TestNetworkInputs(t *testing.T) {
	m := run(t, map[string]any{"subnet": "10.77.0.0/24", "prefix": "blue"})
	n := m.byType("docker:index/network:Network")[0]
	ipam := n.inputs["ipamConfigs"].ArrayValue()[0].ObjectValue()
	if str(t, n, "name") != "blue" || ipam["subnet"].StringValue() != "10.77.0.0/24" || ipam["gateway"].StringValue() != "10.77.0.1" || ipam["ipRange"].StringValue() != "10.77.0.128/25" {
		t.Errorf("network = %v", n.inputs)
	}
	if h := m.container(t, "rabbitmq-haproxy"); str(t, h, "name") != "blue-haproxy" {
		t.Errorf("HAProxy name = %s", str(t, h, "name"))
	}
}

func TestHAProxyInputs(t *testing.T) {
	m := run(t, map[string]any{"hostIP": "127.0.0.2"})
	h := m.container(t, "rabbitmq-haproxy")
	job := m.container(t, "rabbitmq-haproxy-config-job")
	cfg, mode, secret := upload(t, job, render.Staged(render.HAProxyConfigPath))
	if !secret || mode != "0400" {
		t.Errorf("haproxy.cfg (with the stats password): secret %v, mode %s", secret, mode)
	}
	for i := range 3 {
		if want := fmt.Sprintf("server rabbitmq-ha-dev-node-%d 10.9.0.%d:5672 check", i, 10+i); !strings.Contains(cfg, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	if !strings.Contains(cfg, "stats auth admin:"+testStats) {
		t.Error("haproxy.cfg lacks the stats credentials")
	}
	pem, mode, secret := upload(t, job, render.Staged(render.HAProxyCertPath))
	if !secret || mode != "0400" || pem != "CERT rabbitmq-pki-server\nCERT rabbitmq-pki-ca\nKEY rabbitmq-pki-server-key\n" {
		t.Errorf("server PEM (secret %v, mode %s) = %q", secret, mode, pem)
	}
	if str(t, job, "user") != "root" || job.inputs["mustRun"].BoolValue() || !job.inputs["attach"].BoolValue() ||
		strings.Join(stringsOf(job.inputs["command"]), " ") != render.HAProxyScriptPath+" install "+render.HAProxyStageDir {
		t.Errorf("config job = %v", job.inputs)
	}
	// haproxy.cfg and the bundle reach HAProxy through the config job and
	// HAProxy's volume, never as uploads of HAProxy's own: neither a renewal
	// nor a scale change may re-create it.
	if u := h.inputs["uploads"].ArrayValue(); len(u) != 1 || u[0].ObjectValue()["file"].StringValue() != render.HAProxyScriptPath {
		t.Errorf("HAProxy uploads %v, want only its script", u)
	}
	if got := strings.Join(stringsOf(h.inputs["command"]), " "); got != render.HAProxyScriptPath+" run" {
		t.Errorf("HAProxy command = %q", got)
	}
	for _, c := range []registered{h, job} {
		v := c.inputs["volumes"].ArrayValue()
		if len(v) != 1 || v[0].ObjectValue()["volumeName"].StringValue() != "rabbitmq-ha-dev-haproxy-conf" ||
			v[0].ObjectValue()["containerPath"].StringValue() != render.HAProxyConfDir {
			t.Errorf("%s volumes = %v", c.name, v)
		}
	}
	if !containsSuffix(h.deps, "rabbitmq-haproxy-config-job") {
		t.Error("HAProxy does not wait for the config job")
	}
	want := map[float64]float64{5672: 56729, 5671: 56671, 15672: 55672, 1080: 51080}
	for _, p := range h.inputs["ports"].ArrayValue() {
		o := p.ObjectValue()
		if o["ip"].StringValue() != "127.0.0.2" || want[o["internal"].NumberValue()] != o["external"].NumberValue() {
			t.Errorf("HAProxy port %v", o)
		}
	}
	// HAProxy starts together with the nodes: it waits for the config job
	// alone, and its health check for a node answering through it.
	for _, d := range h.deps {
		if strings.Contains(d, "rabbitmq-node-") {
			t.Errorf("HAProxy waits for a node: %s", d)
		}
	}
	health := h.inputs["healthcheck"].ObjectValue()
	if test := strings.Join(strArray(health["tests"]), " "); !strings.Contains(test, "/dev/tcp/127.0.0.1/15672") || !strings.Contains(test, "HTTP/*") {
		t.Errorf("HAProxy health check = %s", test)
	}
}

func strArray(v resource.PropertyValue) []string {
	var out []string
	for _, e := range v.ArrayValue() {
		out = append(out, e.StringValue())
	}
	return out
}

func TestPKIInputs(t *testing.T) {
	m := run(t, map[string]any{"tlsKeyAlgorithm": "RSA", "tlsDnsNames": `["rmq.local"]`, "tlsIpAddresses": `["127.0.0.1","10.9.0.2"]`})
	for _, k := range m.byType("tls:index/privateKey:PrivateKey") {
		if str(t, k, "algorithm") != "RSA" || k.inputs["rsaBits"].NumberValue() < 2048 {
			t.Errorf("%s: %v", k.name, k.inputs)
		}
	}
	ca := m.byType("tls:index/selfSignedCert:SelfSignedCert")[0]
	if !ca.inputs["isCaCertificate"].BoolValue() {
		t.Error("the CA is not a CA")
	}
	csr := m.byType("tls:index/certRequest:CertRequest")[0]
	if dns := csr.inputs["dnsNames"].ArrayValue(); len(dns) != 1 || dns[0].StringValue() != "rmq.local" {
		t.Errorf("DNS SANs = %v", dns)
	}
	if ips := csr.inputs["ipAddresses"].ArrayValue(); len(ips) != 2 {
		t.Errorf("IP SANs = %v", ips)
	}
	cert := m.byType("tls:index/locallySignedCert:LocallySignedCert")[0]
	if cert.inputs["earlyRenewalHours"].NumberValue() != 720 {
		t.Errorf("early renewal = %v", cert.inputs["earlyRenewalHours"])
	}
}

func TestBrokerInputs(t *testing.T) {
	m := run(t, nil)
	p := m.byType("pulumi:providers:rabbitmq")[0]
	if str(t, p, "endpoint") != "http://127.0.0.1:55672" || str(t, p, "username") != "admin" {
		t.Errorf("provider = %v", p.inputs)
	}
	if !p.inputs["password"].IsSecret() {
		t.Error("the provider's password is not secret")
	}
	for _, dep := range []string{"rabbitmq-node-0", "rabbitmq-node-1", "rabbitmq-node-2", "rabbitmq-haproxy"} {
		if !containsSuffix(p.deps, dep) {
			t.Errorf("the rabbitmq provider does not depend on %s: %v", dep, p.deps)
		}
	}
	for _, pol := range m.byType("rabbitmq:index/policy:Policy") {
		// The policies go through HAProxy, once every node is healthy.
		for _, dep := range []string{"rabbitmq-node-0", "rabbitmq-node-1", "rabbitmq-node-2", "rabbitmq-haproxy"} {
			if !containsSuffix(pol.deps, dep) {
				t.Errorf("%s does not depend on %s: %v", pol.name, dep, pol.deps)
			}
		}
		def := pol.inputs["policy"].ObjectValue()
		d := def["definition"].ObjectValue()
		if str(t, pol, "name") != plan.MirroredPolicy || def["pattern"].StringValue() != "^" || d["ha-mode"].StringValue() != "all" || d["ha-sync-mode"].StringValue() != "automatic" ||
			d["ha-promote-on-shutdown"].StringValue() != "when-synced" || d["ha-promote-on-failure"].StringValue() != "when-synced" {
			t.Errorf("%s = %v", pol.name, pol.inputs)
		}
		if !strings.Contains(pol.provider, "rabbitmq-broker-provider") {
			t.Errorf("%s does not use the explicit provider: %s", pol.name, pol.provider)
		}
	}
	u := m.byType("rabbitmq:index/user:User")[0]
	if !u.inputs["password"].IsSecret() || str(t, u, "name") != "app" {
		t.Errorf("user = %v", u.inputs)
	}
	perm := m.byType("rabbitmq:index/permissions:Permissions")[0].inputs["permissions"].ObjectValue()
	if perm["configure"].StringValue() != `^app\.` {
		t.Errorf("permissions = %v", perm)
	}
}

// TestQuorumMode: quorum queues by default, kept at quorumGroupSize members
// by continuous membership reconciliation (the policy sets the size, so a
// scale changes no node's rabbitmq.conf).
func TestQuorumMode(t *testing.T) {
	for _, tc := range []struct {
		extra map[string]any
		size  string
	}{
		{map[string]any{"rabbitmqImage": "rabbitmq:4.0-local"}, "3"},
		{map[string]any{"rabbitmqImage": "rabbitmq:4.3-local", "nodes": 5}, "5"},
		{map[string]any{"rabbitmqImage": "rabbitmq:4.3-local", "nodes": 5, "quorumGroupSize": 3}, "3"},
	} {
		m := run(t, tc.extra)
		pols := m.byType("rabbitmq:index/policy:Policy")
		if len(pols) == 0 {
			t.Fatal("no policy")
		}
		for _, pol := range pols {
			p := pol.inputs["policy"].ObjectValue()
			def := p["definition"].ObjectValue()
			if str(t, pol, "name") != plan.QuorumPolicy || p["applyTo"].StringValue() != "quorum_queues" ||
				def["target-group-size"].StringValue() != tc.size || def["queue-leader-locator"].StringValue() != "balanced" {
				t.Errorf("%v: %s = %v, want target-group-size %s", tc.extra, pol.name, pol.inputs, tc.size)
			}
		}
		conf, _, _ := upload(t, m.container(t, "rabbitmq-node-0"), render.RabbitMQConfPath)
		for _, want := range []string{"default_queue_type = quorum", "continuous_membership_reconciliation.enabled = true",
			"continuous_membership_reconciliation.auto_remove = true"} {
			if !strings.Contains(conf, want) {
				t.Errorf("%v: rabbitmq.conf lacks %q:\n%s", tc.extra, want, conf)
			}
		}
		if strings.Contains(conf, "target_group_size") {
			t.Errorf("the target size is in rabbitmq.conf, so a scale would re-create every node:\n%s", conf)
		}
	}
}

func TestBadConfigCreatesNothing(t *testing.T) {
	m := &mocks{}
	err := pulumi.RunErr(ProgramWith(fakeDocker{}.open), pulumi.WithMocks("rabbitmq-ha", "dev", m), func(ri *pulumi.RunInfo) {
		ri.Config = map[string]string{"rabbitmq-ha:nodes": "0", "rabbitmq-ha:haMode": "raft"}
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"nodes: 0", `haMode: "raft"`, "erlangCookie: (unset) is required", "adminPassword", "statsPassword"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if len(m.resources) != 0 {
		t.Errorf("%d resources registered before validation failed", len(m.resources))
	}
}

func containsSuffix(urns []string, name string) bool {
	for _, u := range urns {
		if strings.HasSuffix(u, "::"+name) {
			return true
		}
	}
	return false
}

// running is a node container of the given RabbitMQ version.
func running(version string) dockerapi.Container {
	return dockerapi.Container{Exists: true, ID: "c-" + version, Running: true, Health: "healthy",
		Env: []string{"HOME=/var/lib/rabbitmq", "RABBITMQ_VERSION=" + version}}
}

func TestVersionGuard(t *testing.T) {
	for _, tc := range []struct {
		name, running, image string
		allow                bool
		want                 string // "" = accepted
	}{
		{"same series", "3.10.8", "rabbitmq:3.10-local", false, ""},
		{"next series", "3.10.8", "rabbitmq:3.11-management", false, ""},
		{"3.13 to 4.0", "3.13.7", "rabbitmq:4.0-local", false, ""},
		{"3.13 to 4.2", "3.13.7", "rabbitmq:4.2-management", false, ""},
		{"4.0 to 4.2", "4.0.9", "rabbitmq:4.2-management", false, ""},
		{"4.2 to 4.3", "4.2.4", "rabbitmq:4.3-local", false, ""},
		{"4.1 to 4.3", "4.1.5", "rabbitmq:4.3-local", false, "the nodes run 4.1, and 4.3 is upgraded to only from 4.2"},
		{"3.13 to 4.3", "3.13.7", "rabbitmq:4.3-management", false, "the nodes run 3.13, and 4.3 is upgraded to only from 4.2"},
		{"3.12 to 4.0", "3.12.14", "rabbitmq:4.0-local", false, "4.0 is upgraded to only from 3.13"},
		{"skips series", "3.10.8", "rabbitmq:4.0-local", false, "is not an in-place upgrade RabbitMQ supports: the nodes run 3.10, and 4.0 is upgraded to only from 3.13"},
		{"unlisted series", "4.3.6", "rabbitmq:4.5-management", false, "4.5 is upgraded to only from 4.4"},
		{"next unlisted series", "4.3.6", "rabbitmq:4.4-management", false, ""},
		{"downgrade", "4.0.5", "rabbitmq:3.13-management", false, "is a downgrade from the running RabbitMQ 4.0"},
		{"override", "3.10.8", "rabbitmq:4.0-local", true, ""},
		{"unversioned tag", "3.10.8", "rabbitmq:latest", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docker := fakeDocker{"rabbitmq-ha-dev-node-1": running(tc.running)}
			m, err := runWith(docker, map[string]any{"rabbitmqImage": tc.image, "allowUnsupportedUpgrade": tc.allow})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range []string{"rabbitmqImage: " + strconv.Quote(tc.image), tc.want, "allowUnsupportedUpgrade", "node rabbitmq-ha-dev-node-1 runs " + tc.running} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if len(m.resources) != 0 {
				t.Errorf("%d resources registered before the guard refused", len(m.resources))
			}
		})
	}
}

func TestRollingHooksBound(t *testing.T) {
	m := run(t, nil)
	for i := 0; i < 3; i++ {
		node := m.container(t, fmt.Sprintf("rabbitmq-node-%d", i))
		if !slices.Equal(node.hooks, []string{"rabbitmq-ha-dev-node-before-delete"}) {
			t.Errorf("%s before-delete hooks = %v", node.name, node.hooks)
		}
	}
	if h := m.container(t, "rabbitmq-haproxy").hooks; len(h) != 0 {
		t.Errorf("HAProxy before-delete hooks = %v", h)
	}
	// The policy of "/" depends on every node, so a destroy deletes it
	// first: its hook tells the gate. Other vhosts' policies go with their
	// vhost, in any update.
	policies := m.byType("rabbitmq:index/policy:Policy")
	if len(policies) < 2 {
		t.Fatalf("%d policies; the test config has two vhosts", len(policies))
	}
	for _, pol := range policies {
		want := []string(nil)
		if pol.name == "rabbitmq-broker-policy-root" {
			want = []string{"rabbitmq-ha-dev-root-policy-before-delete"}
		}
		if !slices.Equal(pol.hooks, want) {
			t.Errorf("%s before-delete hooks = %v, want %v", pol.name, pol.hooks, want)
		}
	}
	if h := m.container(t, "rabbitmq-node-forget-job").hooks; len(h) != 0 {
		t.Errorf("forget job hooks = %v", h)
	}

	m = run(t, map[string]any{"rollingReplace": false})
	for _, c := range m.byType("docker:index/container:Container") {
		if len(c.hooks) != 0 {
			t.Errorf("rollingReplace=false, yet %s has hooks %v", c.name, c.hooks)
		}
	}
}

func TestUploadContentReadsSecretUploads(t *testing.T) {
	upload := func(file string, content resource.PropertyValue) resource.PropertyValue {
		return resource.NewObjectProperty(resource.PropertyMap{"file": resource.NewStringProperty(file), "content": content})
	}
	inputs := resource.PropertyMap{"uploads": resource.NewArrayProperty([]resource.PropertyValue{
		upload(render.ScriptPath, resource.NewStringProperty("#!/bin/bash")),
		upload(render.CookieUploadPath, resource.MakeSecret(resource.NewStringProperty(testCookie))),
	})}
	if got, ok := uploadContent(inputs, render.CookieUploadPath); !ok || got != testCookie {
		t.Errorf("cookie = %q, %v", got, ok)
	}
	inputs["uploads"] = resource.MakeSecret(inputs["uploads"])
	if got, ok := uploadContent(inputs, render.CookieUploadPath); !ok || got != testCookie {
		t.Errorf("cookie in a secret array = %q, %v", got, ok)
	}
	if _, ok := uploadContent(inputs, "/nowhere"); ok {
		t.Error("found an upload that is not there")
	}
}

// stringsOf is an array input's strings.
func stringsOf(v resource.PropertyValue) []string {
	var out []string
	for _, e := range v.ArrayValue() {
		out = append(out, e.StringValue())
	}
	return out
}
