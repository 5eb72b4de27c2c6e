package tests

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// TestIntegrationHAProxy runs the rendered haproxy.cfg in each line's local
// HAProxy image (2.6, 3.0, 3.2) in front of a real 3-node cluster of that
// line: AMQP and verified AMQPS reach the cluster, the stats page needs its
// password, and a killed node is marked down with its clients' sessions
// shut at once.
func TestIntegrationHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ and HAProxy containers; skipped under -short")
	}
	for _, line := range harness.Lines {
		t.Run(line.Name, func(t *testing.T) { haproxyInFront(t, line) })
	}
}

func haproxyInFront(t *testing.T, line harness.Line) {
	harness.RequireImages(t, line.Image, line.HAProxy)
	cfg := line.Config(t, "rmqha-it-haproxy", 239, 50000, nil)
	harness.RemoveStack(t, cfg.Prefix)
	t.Cleanup(func() { harness.RemoveStack(t, cfg.Prefix) })
	harness.CreateNetwork(t, harness.Plan(t, cfg).Network)

	// HAProxy starts before the nodes, as the stack starts it with them,
	// and is not healthy until a node answers through it.
	pki, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	installConfig(t, cfg, pki.ServerPEM)
	spec := harness.Plan(t, cfg).HAProxy.Spec
	harness.RunSpec(t, spec, line.HAProxy, cfg.Prefix)
	expectUnhealthyProbe(t, spec.Name)
	startNodes(t, cfg, line.Image, nil)
	harness.WaitHealthy(t, spec.Name, time.Minute)
	e := plan.EndpointsOf(cfg)
	admin := func(u string) string { return plan.WithUser(u, cfg.AdminUser, harness.TestAdminPassword) }

	// AMQP through HAProxy.
	conn := harness.Dial(t, admin(e.AMQP), nil, 30*time.Second)
	if got := harness.PublishConfirmed(t, conn, "it-haproxy", 50, nil); got != 50 {
		t.Errorf("confirmed %d of 50 through HAProxy", got)
	}
	conn.Close()

	// AMQPS, verified against the CA and the server name; TLS 1.1 is refused.
	tlsConf := &tls.Config{RootCAs: pki.Pool, ServerName: "localhost"}
	tconn := harness.Dial(t, admin(e.AMQPS), tlsConf, 30*time.Second)
	if got := harness.Drain(t, tconn, "it-haproxy"); got != 50 {
		t.Errorf("consumed %d of 50 over AMQPS", got)
	}
	tconn.Close()
	if c, err := amqp.DialTLS(admin(e.AMQPS), &tls.Config{RootCAs: pki.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("HAProxy accepted TLS 1.1")
	}
	if c, err := amqp.DialTLS(admin(e.AMQPS), &tls.Config{ServerName: "localhost"}); err == nil {
		c.Close()
		t.Error("AMQPS verified without the stack's CA")
	}

	// The stats page: 401 without the password, every server UP with it.
	if resp, err := http.Get(e.Stats); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("stats page without auth: %v %v", resp, err)
	}
	// HAProxy started before the nodes, so it saw them fail and marks each
	// UP again once it passes 2 checks (downinter 2s, fastinter 500ms).
	var st map[string]string
	for start := time.Now(); ; time.Sleep(250 * time.Millisecond) {
		st = serverStates(t, e.Stats, cfg.StatsUser)
		up := 0
		for i := range cfg.Nodes {
			if st[plan.NodeNames(cfg.Prefix, i).Container] == "UP" {
				up++
			}
		}
		if up == cfg.Nodes {
			t.Logf("every server UP %s after the first look at the stats page", time.Since(start).Round(10*time.Millisecond))
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("server states after 10 s = %v", st)
		}
	}

	renewed := testCertReload(t, cfg, pki, admin(e.AMQPS))
	testMutualTLS(t, cfg, renewed, admin(e.AMQPS))

	// Kill node 1. leastconn spreads three connections over the three nodes;
	// exactly the one on node 1 must be shut soon after the kill.
	var conns []*amqp.Connection
	var closed []chan *amqp.Error
	for range 3 {
		c := harness.Dial(t, admin(e.AMQP), nil, 30*time.Second)
		conns = append(conns, c)
		closed = append(closed, c.NotifyClose(make(chan *amqp.Error, 1)))
	}
	killed := time.Now()
	harness.MustDocker(t, "kill", plan.NodeNames(cfg.Prefix, 1).Container)
	shut := 0
	deadline := time.After(8 * time.Second)
	for i := 0; i < len(conns) && shut == 0; {
		select {
		case <-closed[i]:
			shut++
			t.Logf("a client of the killed node was disconnected after %s", time.Since(killed).Round(10*time.Millisecond))
		case <-time.After(50 * time.Millisecond):
			i = (i + 1) % len(conns)
		case <-deadline:
			t.Fatal("no client of the killed node was disconnected within 8 s")
		}
	}
	time.Sleep(2 * time.Second)
	open := 0
	for _, c := range conns {
		if !c.IsClosed() {
			open++
			c.Close()
		}
	}
	if open != 2 {
		t.Errorf("%d connections open after the kill, want the 2 on live nodes", open)
	}
	// HAProxy marks it down after two failed checks (inter 1s, fastinter 500ms, timeout check 1s).
	for {
		st := serverStates(t, e.Stats, cfg.StatsUser)[plan.NodeNames(cfg.Prefix, 1).Container]
		if strings.HasPrefix(st, "DOWN") {
			t.Logf("HAProxy marked the killed node down after %s", time.Since(killed).Round(100*time.Millisecond))
			break
		}
		if time.Since(killed) > 6*time.Second {
			t.Fatalf("killed node state = %q 6 s after the kill, want DOWN", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Publishing through HAProxy goes on.
	conn = harness.Dial(t, admin(e.AMQP), nil, 10*time.Second)
	if got := harness.PublishConfirmed(t, conn, "it-haproxy", 20, nil); got != 20 {
		t.Errorf("confirmed %d of 20 after the kill", got)
	}
	conn.Close()

	// A node removed outright, before HAProxy has marked it down: every new
	// management API connection still gets an answer (the connection to the
	// dead node is redispatched at once), as `pulumi refresh` needs right
	// after a `docker rm`. Node 1 comes back first: with two of three nodes
	// down, pause_minority would pause the last one.
	harness.MustDocker(t, "start", plan.NodeNames(cfg.Prefix, 1).Container)
	harness.WaitHealthy(t, plan.NodeNames(cfg.Prefix, 1).Container, harness.StartTimeout)
	for serverStates(t, e.Stats, cfg.StatsUser)[plan.NodeNames(cfg.Prefix, 1).Container] != "UP" {
		time.Sleep(200 * time.Millisecond)
	}
	harness.MustDocker(t, "rm", "-f", plan.NodeNames(cfg.Prefix, 2).Container)
	removed := time.Now()
	requests := 0
	for i := 0; time.Since(removed) < 3*time.Second; i++ {
		req, _ := http.NewRequest(http.MethodGet, e.Management+"/api/overview", nil)
		req.SetBasicAuth(cfg.AdminUser, harness.TestAdminPassword)
		req.Close = true // a new connection each time, as a fresh provider makes
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("management API request %d, %s after the node was removed: %v\nHAProxy's log:\n%s", i, time.Since(removed).Round(time.Millisecond), err, harness.MustDocker(t, "logs", "--tail", "15", spec.Name))
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("management API request %d after the node was removed: %s", i, resp.Status)
		}
		requests = i + 1
	}
	t.Logf("%d management API requests in the 3 s after a node was removed: all answered", requests)
}

// installConfig runs the config job, which puts haproxy.cfg and a bundle
// into HAProxy's volume.
func installConfig(t *testing.T, cfg *config.Config, bundle string) {
	t.Helper()
	job := harness.Plan(t, cfg).HAProxy.ConfigJob.WithFile(plan.CertBundlePath, bundle)
	harness.RunJob(t, job, cfg.HAProxyImage, cfg.Prefix)
}

// testCertReload installs a new certificate bundle (through the config job,
// as a renewal does) while a TLS probe
// connects every 10 ms and an AMQPS client stays connected: HAProxy serves
// the new certificate within seconds, refuses no connection, and keeps the
// client.
func testCertReload(t *testing.T, cfg *config.Config, old testpki.PKI, amqpsURL string) testpki.PKI {
	renewed, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	pool := old.Pool.Clone()
	pool.AppendCertsFromPEM([]byte(renewed.CAPEM))
	conf := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	held := harness.Dial(t, amqpsURL, conf, 30*time.Second)
	defer held.Close()
	u, err := url.Parse(amqpsURL)
	if err != nil {
		t.Fatal(err)
	}
	probe := harness.StartTLSProbe(u.Host, conf, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	installed := time.Now()
	installConfig(t, cfg, renewed.ServerPEM)
	served, ok := probe.AwaitServed(leafOf(t, renewed.ServerPEM).Equal, 10*time.Second)
	if !ok {
		t.Fatal("HAProxy still serves the old certificate 10 s after the install")
	}
	t.Logf("HAProxy served the new certificate %s after the install", served.First.Sub(installed).Round(10*time.Millisecond))
	time.Sleep(time.Second)
	handshakes, failures, seen := probe.Stop()
	t.Logf("TLS probe: %d handshakes, %d failed, %d certificates served", handshakes, len(failures), len(seen))
	if len(failures) > 0 {
		t.Errorf("handshakes failed during the reload: %v", failures)
	}
	if len(seen) != 2 {
		t.Errorf("%d certificates served, want the old one then the new one", len(seen))
	}
	expectStillPublishing(t, held, "it-haproxy-reload", "the reload")
	if logs := harness.Logs(t, cfg.Prefix+"-haproxy"); !strings.Contains(logs, "haproxy.cfg or the certificate bundle changed: reloading") {
		t.Errorf("HAProxy's log does not tell of the reload:\n%s", logs)
	}
	return renewed
}

// testMutualTLS runs mutualTLSRound and checks each refusal's reason, and
// that HAProxy was never re-created or restarted.
func testMutualTLS(t *testing.T, cfg *config.Config, server testpki.PKI, amqpsURL string) {
	haproxy := harness.Plan(t, cfg).HAProxy.Spec.Name
	started := harness.MustDocker(t, "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", haproxy)
	noCert, otherCA := mutualTLSRound(t, cfg, server, amqpsURL)
	for what, c := range map[string]struct {
		err  error
		want string
	}{"no client certificate": {noCert, "tls: certificate required"}, "a client certificate of another CA": {otherCA, "tls: unknown certificate authority"}} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("mutual TLS, %s: %v, want refused with %q", what, c.err, c.want)
		}
	}
	if now := harness.MustDocker(t, "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", haproxy); now != started {
		t.Errorf("HAProxy was re-created or restarted: %s, then %s", started, now)
	}
}

// mutualTLSRound turns mutual TLS on (tlsClientCaCert, through the config
// job, as `pulumi up` does), publishes with confirms on a client
// certificate of the configured CA, and turns it off again, waiting at
// most 10 s each time for HAProxy's reload. It returns how AMQPS refused a
// client with no certificate and one with another CA's.
func mutualTLSRound(t *testing.T, cfg *config.Config, server testpki.PKI, amqpsURL string) (noCert, otherCA error) {
	t.Helper()
	clients, stranger := mustPKI(t), mustPKI(t)
	dial := func(c *testpki.PKI) error {
		conn, err := amqp.DialTLS(amqpsURL, clientTLS(t, server, c))
		if err == nil {
			conn.Close()
		}
		return err
	}
	installed := time.Now()
	installConfig(t, withClientCA(cfg, clients.CAPEM), server.ServerPEM)
	for dial(nil) == nil {
		if time.Since(installed) > 10*time.Second {
			t.Fatal("AMQPS still takes a client without a certificate 10 s after mutual TLS was installed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("mutual TLS in force %s after the install", time.Since(installed).Round(10*time.Millisecond))
	addr := hostPort(t, amqpsURL)
	noCert, otherCA = refusal(addr, clientTLS(t, server, nil)), refusal(addr, clientTLS(t, server, &stranger))
	conn := harness.Dial(t, amqpsURL, clientTLS(t, server, &clients), 10*time.Second)
	if got := harness.PublishConfirmed(t, conn, "it-mtls", 10, nil); got != 10 {
		t.Errorf("confirmed %d of 10 with a client certificate of the configured CA", got)
	}
	conn.Close()

	installConfig(t, cfg, server.ServerPEM)
	for off := time.Now(); dial(nil) != nil; time.Sleep(100 * time.Millisecond) {
		if time.Since(off) > 10*time.Second {
			t.Fatal("AMQPS still asks for a client certificate 10 s after mutual TLS was turned off")
		}
	}
	return noCert, otherCA
}

// refusal is how AMQPS at addr answers a client with conf: the TLS
// handshake, the AMQP protocol header, and one read, so the server's
// verdict on the client's certificate arrives as the error. In TLS 1.3 the
// server judges it only after the client's side of the handshake is done,
// so an AMQP dial may see just a closed connection. nil: the server spoke
// AMQP.
func refusal(addr string, conf *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

// hostPort is a URL's host:port.
func hostPort(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// mustPKI is a fresh test PKI: a CA, and the server certificate it signed.
func mustPKI(t *testing.T) testpki.PKI {
	t.Helper()
	p, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withClientCA is cfg with mutual TLS: AMQPS requires client certificates
// of the CAs of bundle.
func withClientCA(cfg *config.Config, bundle string) *config.Config {
	mutual := *cfg
	mutual.TLS.ClientCACert = bundle
	return &mutual
}

// clientTLS verifies the server's certificate against server's CA, and
// presents a client certificate of client, if any.
func clientTLS(t *testing.T, server testpki.PKI, client *testpki.PKI) *tls.Config {
	t.Helper()
	conf := &tls.Config{RootCAs: server.Pool, ServerName: "localhost"}
	if client != nil {
		cert, err := client.Client("it-client")
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf
}

// expectStillPublishing checks that a connection opened before a change
// (a certificate reload) is still open and still gets confirms.
func expectStillPublishing(t *testing.T, held *amqp.Connection, queue, change string) {
	t.Helper()
	if held.IsClosed() {
		t.Errorf("the AMQPS client connected before %s was disconnected", change)
	} else if got := harness.PublishConfirmed(t, held, queue, 10, nil); got != 10 {
		t.Errorf("confirmed %d of 10 on the connection opened before %s", got, change)
	}
}

// leafOf is the first certificate of a PEM bundle.
func leafOf(t *testing.T, bundle string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(bundle))
	if block == nil {
		t.Fatal("no PEM block in the bundle")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverStates reads the AMQP backend's server states from the stats CSV.
func serverStates(t *testing.T, statsURL, user string) map[string]string {
	t.Helper()
	states, err := statsServerStates(statsURL, user)
	if err != nil {
		t.Fatal(err)
	}
	return states
}

// statsServerStates is serverStates that returns its error.
func statsServerStates(statsURL, user string) (map[string]string, error) {
	req, err := http.NewRequest(http.MethodGet, statsURL+";csv", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, harness.TestStatsPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stats page: %s", resp.Status)
	}
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	for _, row := range rows {
		if len(row) > 17 && row[0] == "rabbitmq_amqp" {
			states[row[1]] = row[17]
		}
	}
	return states, nil
}

// expectUnhealthyProbe waits for a container's first health probes and
// fails unless they failed and the container is not healthy.
func expectUnhealthyProbe(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out := harness.MustDocker(t, "inspect", "-f", "{{.State.Health.Status}} {{range .State.Health.Log}}{{.ExitCode}} {{end}}", name)
		if f := strings.Fields(out); len(f) >= 3 {
			if f[0] == "healthy" || slices.Contains(f[1:], "0") {
				t.Fatalf("%s passed its health check with no node running: %s", name, out)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s ran fewer than 2 health probes in 30 s", name)
}
