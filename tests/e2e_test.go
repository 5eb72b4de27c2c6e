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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/components"
	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// pulumiCLI returns the project-local CLI, or skips the test naming exactly
// what is missing: the CLI or a provider plugin.
func pulumiCLI(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	cli, missing := harness.PulumiMissing(filepath.Dir(filepath.Dir(file)))
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

// startE2E prepares an end-to-end test: skips under -short or without the
// CLI and plugins, checks the images, cleans the prefix before and after,
// and returns the configured stack.
func startE2E(t *testing.T, name, prefix string, line harness.Line, subnet string, portBase int, extra, extraSecrets map[string]string) e2eStack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: runs `pulumi up`; skipped under -short")
	}
	harness.RequireImages(t, line.Image, line.HAProxy)
	cfg := harness.TestValues(prefix, line.Image, subnet, portBase)
	cfg[config.KeyHAProxyImage] = line.HAProxy
	cfg[config.KeyHAMode] = line.HAMode
	for k, v := range extra {
		cfg[k] = v
	}
	secrets := harness.TestSecrets()
	for k, v := range extraSecrets {
		secrets[k] = v
	}
	s := newE2EStack(t, name, cfg, secrets)
	harness.RemoveStack(t, prefix)
	t.Cleanup(func() { harness.RemoveStack(t, prefix) })
	return s
}

func newE2EStack(t *testing.T, name string, cfg map[string]string, secrets map[string]string) e2eStack {
	t.Helper()
	s, err := harness.InlineStack(context.Background(), components.Program, pulumiCLI(t), name, t.TempDir(), cfg, secrets)
	if err != nil {
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

// expectNoChanges runs `pulumi preview` and fails on any change.
func (s e2eStack) expectNoChanges(t *testing.T) {
	t.Helper()
	start := time.Now()
	pre, err := s.Preview(context.Background(), optpreview.Diff())
	if err != nil {
		t.Fatal(err)
	}
	if changed := changes(pre.ChangeSummary); changed != "" {
		t.Errorf("preview after up shows changes: %s\n%s", changed, pre.StdOut)
	}
	t.Logf("no-change preview took %s", time.Since(start).Round(100*time.Millisecond))
}

// testWriter logs Pulumi's progress when RABBITMQ_HA_TEST_PROGRESS=1.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("RABBITMQ_HA_TEST_PROGRESS") == "1" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// TestIntegrationE2E runs the real program on every supported line: up,
// checks with amqp091-go against the real cluster, node loss under load,
// every node restarted at once, scale 3 -> 5 -> 3 (on the quorum lines with
// the queues' members following), drift repair, idempotent previews and
// destroy.
func TestIntegrationE2E(t *testing.T) {
	for _, line := range selectLines(t, "e2e.lines", *e2eLines) {
		t.Run(line.Name, func(t *testing.T) { e2eMain(t, line) })
	}
}

func e2eMain(t *testing.T, line harness.Line) {
	prefix := "rmqha-e2e-" + strings.ReplaceAll(line.Name, ".", "")
	quorum := line.HAMode == config.HAModeQuorum
	s := startE2E(t, "e2e-"+line.Name, prefix, line, fmt.Sprintf("10.235.%d.0/24", line.Net), 48600+100*line.Net,
		map[string]string{"vhosts": `["/","orders"]`},
		map[string]string{"users": `[{"name":"app","password":"app-user-Passw0rd","tags":["management"],"permissions":[{"vhost":"orders","configure":".*","write":".*","read":".*"}]}]`})
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
	harness.WaitRunning(t, plan.NodeNames(prefix, 0).Container, 3, time.Minute)
	var policies []struct {
		Name       string         `json:"name"`
		Vhost      string         `json:"vhost"`
		ApplyTo    string         `json:"apply-to"`
		Definition map[string]any `json:"definition"`
	}
	mgmtURL := out("managementUrl").Value.(string)
	mgmt(t, mgmtURL, "/api/policies", &policies)
	if len(policies) != 2 {
		t.Errorf("policies = %+v, want the HA policy on / and orders", policies)
	}
	for _, p := range policies {
		switch {
		case !quorum && (p.Name != plan.MirroredPolicy || p.Definition["ha-mode"] != "all"):
			t.Errorf("policy %+v, want ha-all", p)
		case quorum && (p.Name != plan.QuorumPolicy || p.ApplyTo != "quorum_queues" || p.Definition["target-group-size"] != float64(3)):
			t.Errorf("policy %+v, want quorum-defaults with target-group-size 3", p)
		}
	}
	appConn := harness.Dial(t, plan.WithUser(amqpURL, "app", "app-user-Passw0rd")+"orders", nil, 30*time.Second)
	appConn.Close()

	// guest cannot log in, through HAProxy or directly.
	for _, u := range []string{amqpURL, nodes[0]} {
		if c, err := amqp.Dial(plan.WithUser(u, "guest", "guest")); err == nil {
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
	tlsConn := harness.Dial(t, plan.WithUser(amqpsURL, "admin", harness.TestAdminPassword), &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}, 30*time.Second)
	if st := tlsConn.ConnectionState(); st.Version < tls.VersionTLS12 || !st.HandshakeComplete {
		t.Errorf("TLS state %+v", st)
	}
	const queue, n = "e2e-orders", 300
	if got := harness.PublishConfirmed(t, tlsConn, queue, n, nil); got != n {
		t.Fatalf("confirmed %d of %d over AMQPS", got, n)
	}
	tlsConn.Close()
	var declared struct {
		Type string `json:"type"`
	}
	mgmt(t, mgmtURL, "/api/queues/%2F/"+queue, &declared)
	if want := map[bool]string{true: "quorum", false: "classic"}[quorum]; declared.Type != want {
		t.Errorf("a plainly declared queue is %q, want %s", declared.Type, want)
	}
	// A consumer reads directly from a node.
	direct := harness.Dial(t, plan.WithUser(nodes[2], "admin", harness.TestAdminPassword), nil, 30*time.Second)
	expectDepth(t, plan.WithUser(nodes[2], "admin", harness.TestAdminPassword), queue, n)
	direct.Close()

	// Idempotence: preview after up, and a second up, change nothing.
	s.expectNoChanges(t)
	if again := s.up(t); changes(*again.Summary.ResourceChanges) != "" {
		t.Errorf("second up changed: %v", *again.Summary.ResourceChanges)
	}

	// Node loss: a publisher with confirms runs through HAProxy while a
	// non-first node, then the first node, is killed and started again.
	admin := plan.WithUser(amqpURL, "admin", harness.TestAdminPassword)
	const stream = "e2e-stream"
	pub := harness.StartPublisher(admin, stream)
	pub.WaitConfirmed(t, 100, 30*time.Second)
	for _, victim := range []string{plan.NodeNames(prefix, 1).Container, plan.NodeNames(prefix, 0).Container} {
		pub.ResetGap()
		killed := time.Now()
		harness.MustDocker(t, "kill", victim)
		pub.WaitConfirmed(t, 100, 30*time.Second) // publishing resumed
		_, _, gap := pub.Stats()
		t.Logf("killed %s: longest gap between confirms %s", victim, gap.Round(10*time.Millisecond))
		for _, e := range pub.Events() {
			if e.At.After(killed) {
				t.Logf("  publisher at +%s: %s", e.At.Sub(killed).Round(10*time.Millisecond), e.What)
			}
		}
		harness.MustDocker(t, "start", victim)
		harness.WaitHealthy(t, victim, harness.StartTimeout)
		harness.WaitRunning(t, plan.NodeNames(prefix, 2).Container, 3, 2*time.Minute)
		if logs := harness.LastBoot(harness.Logs(t, victim)); !strings.Contains(logs, "existing data") || strings.Contains(logs, "joining") {
			t.Errorf("%s joined again after a restart (a reset):\n%s", victim, logs)
		}
	}
	confirmed, attempted := pub.Stop()
	streamIDs := pub.ConfirmedIDs()
	// The depth, confirmed or not, that every later step must keep; the
	// ID-based check comes at the end.
	c := harness.Dial(t, admin, nil, 30*time.Second)
	streamDepth := harness.QueueDepth(t, c, stream)
	c.Close()
	t.Logf("node loss: %d confirmed, %d attempted, %d in the queue", confirmed, attempted, streamDepth)

	// Every node restarted at once: the cluster re-forms, the messages stay.
	nodeNames := []string{plan.NodeNames(prefix, 0).Container, plan.NodeNames(prefix, 1).Container, plan.NodeNames(prefix, 2).Container}
	harness.MustDocker(t, append([]string{"stop"}, nodeNames...)...)
	harness.MustDocker(t, append([]string{"start"}, nodeNames...)...)
	for _, n := range nodeNames {
		harness.WaitHealthy(t, n, harness.StartTimeout)
	}
	harness.WaitRunning(t, nodeNames[0], 3, 2*time.Minute)
	expectDepth(t, admin, queue, n)
	expectDepth(t, admin, stream, streamDepth)

	// Scale 3 -> 5 -> 3 by config: new nodes join, removed nodes are
	// forgotten, no existing node and not HAProxy is re-created (HAProxy
	// reloads with the new node list), no message is lost.
	haproxyID := harness.MustDocker(t, "inspect", "-f", "{{.Id}}", prefix+"-haproxy")
	scale := func(nodes int) {
		if err := s.SetConfig(context.Background(), "rabbitmq-ha:nodes", auto.ConfigValue{Value: fmt.Sprint(nodes)}); err != nil {
			t.Fatal(err)
		}
		res := s.up(t)
		if r := (*res.Summary.ResourceChanges)["replace"]; r != 2 {
			t.Errorf("scaling to %d replaced %d resources, want the HAProxy config job and the forget job", nodes, r)
		}
		if id := harness.MustDocker(t, "inspect", "-f", "{{.Id}}", prefix+"-haproxy"); id != haproxyID {
			t.Errorf("scaling to %d re-created HAProxy", nodes)
		}
		if cfg := harness.MustDocker(t, "exec", prefix+"-haproxy", "cat", render.HAProxyConfigPath); strings.Count(cfg, ":5672 check") != nodes {
			t.Errorf("HAProxy's live haproxy.cfg after scaling to %d:\n%s", nodes, cfg)
		}
	}
	scale(5)
	harness.WaitRunning(t, nodeNames[0], 5, 2*time.Minute)
	if quorum {
		// The queues declared on 3 nodes grow to the new target size, 5.
		start := time.Now()
		awaitMembers(t, nodeNames[0], []string{queue, stream}, 2*time.Minute, func(m []string) bool { return len(m) == 5 })
		t.Logf("scale to 5: %s and %s have 5 members %s after the up returned", queue, stream, time.Since(start).Round(100*time.Millisecond))
	}
	scale(3)
	deadline := time.Now().Add(2 * time.Minute)
	for len(harness.GetClusterStatus(t, nodeNames[0]).Members()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("removed nodes not forgotten: %+v", harness.GetClusterStatus(t, nodeNames[0]))
		}
		time.Sleep(2 * time.Second)
	}
	if quorum {
		// One up, and the removed nodes hold no member: theirs were handed
		// over before they were drained.
		for q, m := range awaitMembers(t, nodeNames[0], []string{queue, stream}, time.Minute, func(m []string) bool { return len(m) == 3 }) {
			for _, gone := range []string{plan.NodeNames(prefix, 3).Erlang, plan.NodeNames(prefix, 4).Erlang} {
				if slices.Contains(m, gone) {
					t.Errorf("%s keeps a member on the removed %s: %v", q, gone, m)
				}
			}
		}
	}
	expectDepth(t, admin, queue, n)
	expectDepth(t, admin, stream, streamDepth)
	s.expectNoChanges(t)

	// Drift repair: a node removed by hand, then a node stopped by hand (one
	// at a time: two of three down is a minority, and pause_minority pauses
	// the last node, management API included). Refresh then up brings each
	// back on its volume, with its data.
	for _, drift := range []struct{ how, node string }{{"rm", nodeNames[2]}, {"stop", nodeNames[1]}} {
		if drift.how == "rm" {
			harness.MustDocker(t, "rm", "-f", drift.node)
		} else {
			harness.MustDocker(t, "stop", drift.node)
		}
		if _, err := s.Refresh(context.Background()); err != nil {
			t.Fatalf("refresh after docker %s %s: %v", drift.how, drift.node, err)
		}
		s.up(t)
		harness.WaitHealthy(t, drift.node, harness.StartTimeout)
		if logs := harness.LastBoot(harness.Logs(t, drift.node)); !strings.Contains(logs, "existing data") || strings.Contains(logs, "joining") {
			t.Errorf("%s after docker %s, refresh and up, want its existing data and no join:\n%s", drift.node, drift.how, logs)
		}
		harness.WaitRunning(t, nodeNames[0], 3, 2*time.Minute)
	}
	expectDepth(t, admin, queue, n)
	// Every message confirmed during the node losses survived them, the
	// full restart, the scaling and the drift repair, checked by ID.
	got := harness.ConsumeIDs(t, admin, stream, streamIDs, 5*time.Second, 2*time.Minute)
	if lost, dups := got.Check(streamIDs); len(lost) > 0 {
		t.Errorf("%d of %d confirmed messages lost, e.g. %v (%d duplicates)", len(lost), len(streamIDs), lost[:min(5, len(lost))], dups)
	} else {
		t.Logf("node loss to drift repair: all %d confirmed IDs consumed, %d distinct IDs in all, %d duplicates", len(streamIDs), len(got), dups)
	}
	s.expectNoChanges(t)

	// Destroy with retainVolumes: no container or network is left, and the
	// node volumes are kept (make destroy in .ci/run checks the default,
	// which removes them). Turning retainVolumes on re-creates nothing.
	setConfig(t, s, config.KeyRetainVolumes, "true")
	if r := s.up(t); (*r.Summary.ResourceChanges)["replace"] != 0 {
		t.Errorf("retainVolumes re-created resources: %v", *r.Summary.ResourceChanges)
	}
	if _, err := s.Destroy(context.Background(), optdestroy.RunProgram(true), optdestroy.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	filter := "label=" + plan.LabelStack + "=" + prefix
	for _, what := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
		if left := harness.MustDocker(t, append(what, "--filter", filter)...); left != "" {
			t.Errorf("docker %s: left behind after destroy: %s", what[0], left)
		}
	}
	if kept := strings.Fields(harness.MustDocker(t, "volume", "ls", "-q", "--filter", filter)); len(kept) != 3 {
		t.Errorf("volumes after destroy with retainVolumes = %v, want the 3 node volumes", kept)
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
	req.SetBasicAuth("admin", harness.TestAdminPassword)
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
