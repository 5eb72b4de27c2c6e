package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/components"
)

// requiredPlugins are the provider plugins the program needs, at the
// versions of the SDKs in go.mod.
var requiredPlugins = []struct{ name, version string }{
	{"docker", "4.10.0"},
	{"tls", "5.2.0"},
	{"rabbitmq", "3.3.1"},
}

// pulumiCLI returns the project-local CLI (make bin/pulumi), or skips the
// test naming exactly what is missing: the CLI or a provider plugin.
func pulumiCLI(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	cli := filepath.Join(root, "bin", "pulumi")
	var missing []string
	if _, err := os.Stat(cli); err != nil {
		missing = append(missing, cli+" (run `make bin/pulumi`)")
	}
	home := os.Getenv("PULUMI_HOME")
	if home == "" {
		h, _ := os.UserHomeDir()
		home = filepath.Join(h, ".pulumi")
	}
	for _, p := range requiredPlugins {
		bin := filepath.Join(home, "plugins", fmt.Sprintf("resource-%s-v%s", p.name, p.version), "pulumi-resource-"+p.name)
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, fmt.Sprintf("provider plugin resource-%s v%s (%s)", p.name, p.version, bin))
		}
	}
	if len(missing) > 0 {
		t.Skipf("end-to-end test needs: %s. On a machine with a registry, `pulumi plugin install` fetches the plugins; here they are not in the Go module proxy.", strings.Join(missing, "; "))
	}
	return cli
}

// e2eStack is a stack of the real program, run inline through the
// Automation API against a temporary file:// backend.
type e2eStack struct {
	auto.Stack
	prefix string
}

func newE2EStack(t *testing.T, name string, cfg map[string]string, secrets map[string]string) e2eStack {
	t.Helper()
	cli := pulumiCLI(t)
	ctx := context.Background()
	state := t.TempDir()
	cmd, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: filepath.Dir(filepath.Dir(cli))})
	if err != nil {
		t.Fatal(err)
	}
	project := workspace.Project{Name: "rabbitmq-ha", Runtime: workspace.NewProjectRuntimeInfo("go", nil)}
	s, err := auto.UpsertStackInlineSource(ctx, name, "rabbitmq-ha", components.Program,
		auto.Pulumi(cmd),
		auto.Project(project),
		auto.EnvVars(map[string]string{
			"PULUMI_BACKEND_URL":                   "file://" + state,
			"PULUMI_CONFIG_PASSPHRASE":             "e2e-test-passphrase",
			"PULUMI_SKIP_UPDATE_CHECK":             "true",
			"PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
		}))
	if err != nil {
		t.Fatal(err)
	}
	all := auto.ConfigMap{}
	for k, v := range cfg {
		all["rabbitmq-ha:"+k] = auto.ConfigValue{Value: v}
	}
	for k, v := range secrets {
		all["rabbitmq-ha:"+k] = auto.ConfigValue{Value: v, Secret: true}
	}
	if err := s.SetAllConfig(ctx, all); err != nil {
		t.Fatal(err)
	}
	return e2eStack{Stack: s, prefix: cfg["prefix"]}
}

func (s e2eStack) up(t *testing.T) auto.UpResult {
	t.Helper()
	start := time.Now()
	res, err := s.Up(context.Background(), optup.ProgressStreams(testWriter{t}))
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Logf("up took %s: %v", time.Since(start).Round(time.Second), res.Summary.ResourceChanges)
	return res
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// TestIntegrationE2EMirrored runs the real program: up, checks with
// amqp091-go against the real cluster, node loss, idempotence, destroy.
func TestIntegrationE2EMirrored(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs `pulumi up`; skipped under -short")
	}
	RequireImages(t, RabbitMQ3Image, HAProxyImage)
	const prefix = "rmqha-e2e"
	RemoveStack(t, prefix)
	t.Cleanup(func() { RemoveStack(t, prefix) })
	s := newE2EStack(t, "e2e-mirrored", map[string]string{
		"prefix":           prefix,
		"rabbitmqImage":    RabbitMQ3Image,
		"haproxyImage":     HAProxyImage,
		"subnet":           "10.231.2.0/24",
		"amqpPort":         "47200",
		"amqpsPort":        "47201",
		"statsPort":        "47202",
		"managementPort":   "47203",
		"nodeAmqpPortBase": "47210",
		"vhosts":           `["/","orders"]`,
	}, map[string]string{
		"erlangCookie":  TestCookie,
		"adminPassword": TestAdminPassword,
		"statsPassword": TestStatsPassword,
		"users":         `[{"name":"app","password":"app-user-Passw0rd","tags":["management"],"permissions":[{"vhost":"orders","configure":".*","write":".*","read":".*"}]}]`,
	})
	res := s.up(t)
	out := func(k string) auto.OutputValue { return res.Outputs[k] }
	if !out("adminAmqpUrl").Secret || out("amqpUrl").Secret {
		t.Error("adminAmqpUrl must be secret, amqpUrl must not")
	}
	amqpURL := out("amqpUrl").Value.(string)
	amqpsURL := out("amqpsUrl").Value.(string)
	var nodes []string
	for _, n := range out("nodeEndpoints").Value.([]any) {
		nodes = append(nodes, n.(string))
	}

	// The cluster: 3 members, the ha-all policy, the user and its permissions.
	WaitRunning(t, prefix+"-node-0", 3, time.Minute)
	var policies []struct {
		Name       string         `json:"name"`
		Vhost      string         `json:"vhost"`
		Definition map[string]any `json:"definition"`
	}
	mgmt(t, out("managementUrl").Value.(string), "/api/policies", &policies)
	if len(policies) != 2 {
		t.Errorf("policies = %+v, want ha-all on / and orders", policies)
	}
	for _, p := range policies {
		if p.Name != components.MirroredPolicy || p.Definition["ha-mode"] != "all" {
			t.Errorf("policy %+v", p)
		}
	}
	appConn := Dial(t, WithUser(amqpURL, "app", "app-user-Passw0rd")+"orders", nil, 30*time.Second)
	appConn.Close()

	// guest cannot log in, through HAProxy or directly.
	for _, u := range []string{amqpURL, nodes[0]} {
		if c, err := amqp.Dial(WithUser(u, "guest", "guest")); err == nil {
			c.Close()
			t.Errorf("guest logged in at %s", u)
		}
	}

	// AMQPS with full verification: the exported CA and the URL's host name.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(out("caCertPem").Value.(string))) {
		t.Fatal("caCertPem is not a PEM certificate")
	}
	u, _ := url.Parse(amqpsURL)
	tlsConn := Dial(t, WithUser(amqpsURL, "admin", TestAdminPassword), &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}, 30*time.Second)
	if st := tlsConn.ConnectionState(); st.Version < tls.VersionTLS12 || !st.HandshakeComplete {
		t.Errorf("TLS state %+v", st)
	}
	const queue, n = "e2e-orders", 300
	if got := PublishConfirmed(t, tlsConn, queue, n, nil); got != n {
		t.Fatalf("confirmed %d of %d over AMQPS", got, n)
	}
	tlsConn.Close()
	// A consumer reads directly from a node.
	direct := Dial(t, WithUser(nodes[2], "admin", TestAdminPassword), nil, 30*time.Second)
	expectDepth(t, WithUser(nodes[2], "admin", TestAdminPassword), queue, n)
	direct.Close()

	// Idempotence: preview after up, and a second up, change nothing.
	pre, err := s.Preview(context.Background(), optpreview.Diff())
	if err != nil {
		t.Fatal(err)
	}
	if changed := changes(pre.ChangeSummary); changed != "" {
		t.Errorf("preview after up shows changes: %s", changed)
	}
	if again := s.up(t); changes(*again.Summary.ResourceChanges) != "" {
		t.Errorf("second up changed: %v", *again.Summary.ResourceChanges)
	}

	// Node loss: kill a non-first node, then the first; no confirmed message is lost.
	admin := WithUser(amqpURL, "admin", TestAdminPassword)
	total := n
	for _, victim := range []string{prefix + "-node-1", prefix + "-node-0"} {
		MustDocker(t, "kill", victim)
		conn := Dial(t, admin, nil, 30*time.Second)
		total += PublishConfirmed(t, conn, queue, 100, nil)
		conn.Close()
		MustDocker(t, "start", victim)
		WaitHealthy(t, victim, 3*time.Minute)
		WaitRunning(t, prefix+"-node-2", 3, 2*time.Minute)
	}
	expectDepth(t, admin, queue, total)

	// Destroy leaves no container, network or volume of the stack.
	if _, err := s.Destroy(context.Background(), optdestroy.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	filter := "label=" + components.LabelStack + "=" + prefix
	for _, what := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"}} {
		if left := MustDocker(t, append(what, "--filter", filter)...); left != "" {
			t.Errorf("docker %s: left behind after destroy: %s", what[0], left)
		}
	}
}

// changes lists the non-"same" operations of a change summary.
func changes[K ~string](summary map[K]int) string {
	var out []string
	for op, n := range summary {
		if op != K(apitype.OpSame) && n > 0 {
			out = append(out, fmt.Sprintf("%s=%d", op, n))
		}
	}
	return strings.Join(out, " ")
}

// mgmt GETs a management API path as the admin user.
func mgmt(t *testing.T, base, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.SetBasicAuth("admin", TestAdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
