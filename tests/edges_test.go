package tests

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Bad input at the edges (issue 16, case 7): each is refused as expected
// while the matrix's load keeps running through the same HAProxy.

// refusedAtTheEdge tries every bad client in turn and says how each was
// refused. A good client of each kind must get in, so that each refusal
// is the rule's and not a broken endpoint's.
func refusedAtTheEdge(t *testing.T, s faultStack) (string, func()) {
	e := plan.EndpointsOf(s.cfg)
	var seen []string
	refused := func(what string, err error, want string) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s: accepted, want refused (%s)", what, want)
			seen = append(seen, what+": ACCEPTED")
		case !strings.Contains(err.Error(), want):
			t.Errorf("%s: refused with %v, want %q", what, err, want)
			seen = append(seen, fmt.Sprintf("%s: %v", what, err))
		default:
			t.Logf("%s: refused: %v", what, err)
			seen = append(seen, what+": "+want)
		}
	}
	dial := func(url string, conf *tls.Config) error {
		var c *amqp.Connection
		var err error
		if conf != nil {
			c, err = amqp.DialTLS(url, conf)
		} else {
			c, err = amqp.Dial(url)
		}
		if err == nil {
			c.Close()
		}
		return err
	}
	good := plan.WithUser(e.AMQP, s.cfg.AdminUser, harness.TestAdminPassword)
	if err := dial(good, nil); err != nil {
		t.Fatalf("the admin cannot connect: %v", err)
	}
	refused("wrong password", dial(plan.WithUser(e.AMQP, s.cfg.AdminUser, "not-the-password"), nil), "403")
	refused("guest from outside", dial(plan.WithUser(e.AMQP, "guest", "guest"), nil), "403")

	amqps := plan.WithUser(e.AMQPS, s.cfg.AdminUser, harness.TestAdminPassword)
	verified := func(minVersion, maxVersion uint16, ciphers []uint16) *tls.Config {
		return &tls.Config{RootCAs: s.pki.Pool, ServerName: "localhost", MinVersion: minVersion, MaxVersion: maxVersion, CipherSuites: ciphers}
	}
	if err := dial(amqps, verified(tls.VersionTLS12, tls.VersionTLS12, nil)); err != nil {
		t.Fatalf("TLS 1.2 with the default (AEAD) ciphers is refused: %v", err)
	}
	refused("TLS 1.1", dial(amqps, verified(tls.VersionTLS10, tls.VersionTLS11, nil)), "protocol version")
	weak := []uint16{ // CBC with SHA-1 MACs, and RSA key exchange
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	}
	refused("TLS 1.2 with only CBC, SHA-1 or RSA key exchange ciphers", dial(amqps, verified(tls.VersionTLS12, tls.VersionTLS12, weak)), "handshake failure")
	untrusted := tls.Config{ServerName: "localhost"}
	refused("AMQPS verified against another CA (the system's)", dial(amqps, &untrusted), "certificate signed by unknown authority")

	// Mutual TLS, turned on through the config job as `pulumi up` does,
	// then off again: HAProxy reloads under the load, not re-created.
	noCert, otherCA := mutualTLSRound(t, s.cfg, s.pki, amqps)
	refused("mutual TLS: no client certificate", noCert, "tls: certificate required")
	refused("mutual TLS: a client certificate of another CA", otherCA, "tls: unknown certificate authority")

	status := func(url, user, password string) error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return nil
		}
		return errors.New(resp.Status)
	}
	if err := status(e.Stats, s.cfg.StatsUser, harness.TestStatsPassword); err != nil {
		t.Fatalf("the stats page with its password: %v", err)
	}
	refused("stats page without auth", status(e.Stats, "", ""), "401")
	overview := e.Management + "/api/overview"
	if err := status(overview, s.cfg.AdminUser, harness.TestAdminPassword); err != nil {
		t.Fatalf("the management API as the admin: %v", err)
	}
	refused("management API without credentials", status(overview, "", ""), "401")
	refused("management API as guest", status(overview, "guest", "guest"), "401")
	return strings.Join(seen, "; "), func() {}
}

// haproxyMaxconn is the global maxconn of the rendered haproxy.cfg.
const haproxyMaxconn = 4096

// connectionFlood opens more raw connections than HAProxy's maxconn, each
// sending the AMQP protocol header, and holds them: HAProxy proxies at
// most maxconn of them (a node answers those with connection.start), the
// rest wait unanswered in the kernel's backlog, and the matrix's load,
// already connected, keeps publishing and consuming.
func connectionFlood(t *testing.T, s faultStack) (string, func()) {
	const flood = haproxyMaxconn + 400
	addr := strings.TrimSuffix(strings.TrimPrefix(plan.EndpointsOf(s.cfg).AMQP, "amqp://"), "/")
	conns := make([]net.Conn, flood)
	answered, dialed := make([]bool, flood), make([]bool, flood)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			conns[i], dialed[i] = c, true
			if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1)
			if n, _ := c.Read(buf); n == 1 {
				answered[i] = true
			}
		}()
	}
	wg.Wait()
	n, d := 0, 0
	for i := range answered {
		if answered[i] {
			n++
		}
		if dialed[i] {
			d++
		}
	}
	// HAProxy never proxies more than maxconn at once; the matrix's own
	// connections are among them.
	if n > haproxyMaxconn {
		t.Errorf("%d of %d flooding connections were proxied, over maxconn (%d)", n, flood, haproxyMaxconn)
	}
	_, _, gap := s.load.Pub.Stats()
	if gap > 5*time.Second {
		t.Errorf("the connected publisher stalled for %s during the flood", gap)
	}
	observed := fmt.Sprintf("%d of %d flooding connections were accepted (TCP) and %d answered within 5 s (maxconn %d); the connected load kept going (longest gap %.1f s)",
		d, flood, n, haproxyMaxconn, gap.Seconds())
	// Docker publishes a loopback port through its userland proxy
	// (docker-proxy), one process per port. Measured here (Docker 28.2):
	// the flood makes the AMQP port's proxy exit, and nothing restarts it,
	// so the port refuses every connection until the container restarts.
	// That limit is Docker's: the case says so, and restarts HAProxy.
	if !proxyAlive(s.cfg.Ports.AMQP) {
		t.Logf("Docker's userland proxy for port %d exited during the flood; restarting %s", s.cfg.Ports.AMQP, s.haproxy)
		observed += "; Docker's userland proxy for the AMQP port (docker-proxy) exited during the flood, so the port refused connections until HAProxy's container was restarted (done here)"
	}
	return observed, func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		if !proxyAlive(s.cfg.Ports.AMQP) {
			harness.MustDocker(t, "restart", "-t", "1", s.haproxy)
		}
	}
}

// proxyAlive reports whether Docker's userland proxy for a host port runs.
func proxyAlive(port int) bool {
	out, _ := hostCommand("pgrep", "-f", fmt.Sprintf("docker-proxy .*-host-port %d ", port))
	return out != ""
}
