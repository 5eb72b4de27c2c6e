package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	amqp "github.com/rabbitmq/amqp091-go"
)

// failoverBudget is the longest a publisher may go without a confirm while
// a node is replaced: the failover target of the benchmarks.
const failoverBudget = 5 * time.Second

// TestIntegrationE2ERolling, on every supported line, changes something
// that re-creates every node (an image of the same RabbitMQ with another
// label) and runs `pulumi up` while a publisher with confirms runs through
// HAProxy. The nodes must go one at a time: at every moment at least N-1
// run, no confirmed message is lost, and publishing resumes within the
// failover budget. It also checks the version guard: an image change off
// RabbitMQ's upgrade matrix (the next line's image, or for the newest line
// the previous one, a downgrade) is refused before anything changes.
func TestIntegrationE2ERolling(t *testing.T) {
	for _, line := range selectLines(t, "e2e.lines", *e2eLines) {
		i := lineIndex(line.Name)
		refused := harness.Lines[(i+1)%len(harness.Lines)]
		if i == len(harness.Lines)-1 {
			refused = harness.Lines[i-1]
		}
		t.Run(line.Name, func(t *testing.T) { e2eRolling(t, line, refused) })
	}
}

func e2eRolling(t *testing.T, line harness.Line, refusedLine harness.Line) {
	const nodes = 3
	prefix := "rmqha-roll-" + strings.ReplaceAll(line.Name, ".", "")
	s := startE2E(t, "e2e-rolling-"+line.Name, prefix, line, fmt.Sprintf("10.236.%d.0/24", line.Net), 49000+100*line.Net, nil, nil)
	res := s.up(t)
	harness.WaitRunning(t, plan.NodeNames(prefix, 0).Container, nodes, time.Minute)
	ctx := context.Background()

	// The version guard, with the refused line's HA mode, so that only the
	// upgrade path is wrong.
	refused := refusedLine.Image
	setConfig(t, s, "rabbitmqImage", refused)
	setConfig(t, s, "haMode", refusedLine.HAMode)
	_, err := s.Preview(ctx, optpreview.Diff())
	if err == nil || !strings.Contains(err.Error(), `rabbitmqImage: "`+refused+`"`) || !strings.Contains(err.Error(), "allowUnsupportedUpgrade") {
		t.Fatalf("a %s to %s preview: err = %v, want the version guard's refusal", line.Image, refused, err)
	}
	setConfig(t, s, "haMode", line.HAMode)

	image := harness.RelabelImage(t, line.Image, line.Image+"-rolling")
	setConfig(t, s, "rabbitmqImage", image)

	docker, err := dockerapi.NewDocker(os.Getenv("DOCKER_HOST"))
	if err != nil {
		t.Fatal(err)
	}
	watch := harness.WatchNodes(docker, prefix, nodes)
	admin := plan.WithUser(res.Outputs["amqpUrl"].Value.(string), "admin", harness.TestAdminPassword)
	const stream = "rolling-stream"
	// Paced at about 50 messages a second: a replaced node's new mirror
	// synchronises the queue, and classic mirror sync blocks the queue for a
	// time that grows with its depth (docs/BENCHMARKS.md: 11.9 s at 31,000
	// messages). An unpaced publisher with no consumer builds a backlog of
	// 25,000 messages here, and then the budget is missed by design.
	pub := harness.StartPacedPublisher(admin, stream, 20*time.Millisecond)
	pub.WaitConfirmed(t, 100, 30*time.Second)
	pub.ResetGap()

	start := time.Now()
	up := s.up(t)
	took := time.Since(start)
	pub.WaitConfirmed(t, 100, 30*time.Second)
	confirmed, attempted := pub.Stop()
	_, _, gap := pub.Stats()
	spans := watch.Stop()

	if got := (*up.Summary.ResourceChanges)["replace"]; got < nodes {
		t.Errorf("up replaced %d resources, want at least the %d nodes: %v", got, nodes, *up.Summary.ResourceChanges)
	}
	t.Logf("rolling replacement of %d nodes took %s; fewest nodes running %d, fewest healthy %d",
		nodes, took.Round(100*time.Millisecond), watch.MinRunning, watch.MinHealthy)
	for _, sp := range spans {
		t.Logf("  %s: out of service %s (drained and stopped, re-created, healthy again)", sp.Node, sp.Down.Round(100*time.Millisecond))
	}
	t.Logf("publisher: %d confirmed of %d attempted; longest gap between confirms %s", confirmed, attempted, gap.Round(10*time.Millisecond))
	for _, st := range pub.Stalls() {
		t.Logf("  stall of %s at +%s", st.Length.Round(10*time.Millisecond), st.From.Sub(start).Round(100*time.Millisecond))
	}
	for _, e := range pub.Events() {
		t.Logf("  publisher at +%s: %s", e.At.Sub(start).Round(100*time.Millisecond), e.What)
	}
	for _, sp := range spans {
		t.Logf("  %s out of service from +%s to +%s", sp.Node, sp.From.Sub(start).Round(100*time.Millisecond), sp.To.Sub(start).Round(100*time.Millisecond))
	}

	if watch.MinRunning < nodes-1 {
		t.Errorf("at one point only %d of %d nodes were running, want at least %d", watch.MinRunning, nodes, nodes-1)
	}
	if len(spans) != nodes {
		t.Errorf("%d nodes were replaced, want %d: %+v", len(spans), nodes, spans)
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].From.Before(spans[i-1].To) {
			t.Errorf("%s went out of service before %s was healthy again", spans[i].Node, spans[i-1].Node)
		}
	}
	if gap > failoverBudget {
		t.Errorf("publishing stalled for %s, over the failover budget %s", gap, failoverBudget)
	}
	ids := pub.ConfirmedIDs()
	got := harness.ConsumeIDs(t, admin, stream, ids, 5*time.Second, 2*time.Minute)
	if lost, dups := got.Check(ids); len(lost) > 0 {
		t.Errorf("%d of %d confirmed messages lost, e.g. %v (%d duplicates)", len(lost), len(ids), lost[:min(5, len(lost))], dups)
	}
	harness.WaitRunning(t, plan.NodeNames(prefix, 0).Container, nodes, time.Minute)
	for i := 0; i < nodes; i++ {
		name := plan.NodeNames(prefix, i).Container
		if got := harness.MustDocker(t, "inspect", "-f", "{{.Image}}", name); got != harness.MustDocker(t, "image", "inspect", "-f", "{{.Id}}", image) {
			t.Errorf("%s runs image %s, want %s", name, got, image)
		}
	}
	s.expectNoChanges(t)

	testRenewal(t, s, res.Outputs)
	testRotation(t, s, res.Outputs["amqpUrl"].Value.(string), nodes)
}

// testRenewal re-issues HAProxy's server certificate from the same CA, as a
// renewal in the early-renewal window does (pulumi-tls replaces the
// certificate; here a new DNS name replaces it now), while a TLS probe
// connects every 10 ms and an AMQPS client stays connected. HAProxy must not
// be re-created, no handshake may fail, the client must stay connected, and
// the new certificate must be served when `pulumi up` returns.
func testRenewal(t *testing.T, s e2eStack, outputs auto.OutputMap) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(outputs["caCertPem"].Value.(string))) {
		t.Fatal("caCertPem holds no certificate")
	}
	conf := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	amqps := outputs["amqpsUrl"].Value.(string)
	held := harness.Dial(t, plan.WithUser(amqps, "admin", harness.TestAdminPassword), conf, 30*time.Second)
	defer held.Close()
	u, err := url.Parse(amqps)
	if err != nil {
		t.Fatal(err)
	}
	haproxy := s.prefix + "-haproxy"
	before := harness.MustDocker(t, "inspect", "-f", "{{.Id}}", haproxy)
	probe := harness.StartTLSProbe(u.Host, conf, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	const name = "rabbitmq.renewal.test"
	setConfig(t, s, "tlsDnsNames", `["localhost","`+name+`"]`)
	start := time.Now()
	res := s.up(t)
	took := time.Since(start)
	served, ok := probe.AwaitServed(func(c *x509.Certificate) bool { return slices.Contains(c.DNSNames, name) }, 5*time.Second)
	if !ok {
		t.Fatalf("HAProxy still serves the old certificate 5 s after `pulumi up` returned")
	}
	time.Sleep(time.Second)
	handshakes, failures, seen := probe.Stop()
	t.Logf("renewed the certificate in %s (served %s after the up started); TLS probe: %d handshakes, %d failed, %d certificates served",
		took.Round(100*time.Millisecond), served.First.Sub(start).Round(10*time.Millisecond), handshakes, len(failures), len(seen))
	if len(failures) > 0 {
		t.Errorf("handshakes failed during the renewal: %v", failures)
	}
	if r := res.Summary.ResourceChanges; r == nil || (*r)["replace"] != 3 {
		t.Errorf("the renewal's changes = %v, want 3 replaced (the CSR, the certificate, the HAProxy config job)", res.Summary.ResourceChanges)
	}
	if after := harness.MustDocker(t, "inspect", "-f", "{{.Id}}", haproxy); after != before {
		t.Error("HAProxy was re-created by the renewal")
	}
	expectStillPublishing(t, held, "renewal", "the renewal")
	if got := res.Outputs["caCertPem"].Value.(string); got != outputs["caCertPem"].Value.(string) {
		t.Error("the renewal changed the CA certificate that clients trust")
	}
	s.expectNoChanges(t)
}

// testRotation rotates the Erlang cookie and the admin password in one
// `pulumi up`, as docs/RUNBOOK.md says. Nodes with different cookies cannot
// form one cluster, so every node restarts at once; the cluster script sets
// the new admin password, and the broker settings apply with it.
func testRotation(t *testing.T, s e2eStack, amqpURL string, nodes int) {
	const queue, n = "rotation", 100
	oldAdmin := plan.WithUser(amqpURL, "admin", harness.TestAdminPassword)
	conn := harness.Dial(t, oldAdmin, nil, 30*time.Second)
	if got := harness.PublishConfirmed(t, conn, queue, n, nil); got != n {
		t.Fatalf("confirmed %d of %d", got, n)
	}
	conn.Close()

	const cookie, password = "RotatedCookie0123456789abcdef", "rotated-Passw0rd-2"
	for k, v := range map[string]string{"erlangCookie": cookie, "adminPassword": password} {
		if err := s.SetConfig(context.Background(), "rabbitmq-ha:"+k, auto.ConfigValue{Value: v, Secret: true}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	s.up(t)
	t.Logf("rotated the cookie and the admin password in %s", time.Since(start).Round(100*time.Millisecond))
	harness.WaitRunning(t, plan.NodeNames(s.prefix, 0).Container, nodes, time.Minute)
	for i := 0; i < nodes; i++ {
		name := plan.NodeNames(s.prefix, i).Container
		if got := harness.MustDocker(t, "exec", name, "cat", "/var/lib/rabbitmq/.erlang.cookie"); got != cookie {
			t.Errorf("%s runs with an old cookie", name)
		}
	}
	if c, err := amqp.Dial(oldAdmin); err == nil {
		c.Close()
		t.Error("the old admin password still logs in")
	}
	expectDepth(t, plan.WithUser(amqpURL, "admin", password), queue, n)
	s.expectNoChanges(t)
}

func setConfig(t *testing.T, s e2eStack, key, value string) {
	t.Helper()
	if err := s.SetConfig(context.Background(), "rabbitmq-ha:"+key, auto.ConfigValue{Value: value}); err != nil {
		t.Fatal(err)
	}
}
