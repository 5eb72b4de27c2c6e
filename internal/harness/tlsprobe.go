package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"
)

// TLSProbe opens a new TLS connection to an address at a fixed pace and
// records what it saw: how many handshakes succeeded, every failure, and
// each distinct server certificate with the time it was first served. It is
// how the tests watch a certificate renewal from a client's side.
type TLSProbe struct {
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	ok       int
	failures []string
	seen     []ServedCert
}

// ServedCert is a server certificate the probe saw, and when first.
type ServedCert struct {
	Leaf  *x509.Certificate
	First time.Time
}

// StartTLSProbe starts probing addr (host:port) every pace, verifying the
// server with conf.
func StartTLSProbe(addr string, conf *tls.Config, pace time.Duration) *TLSProbe {
	p := &TLSProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			p.once(addr, conf)
			select {
			case <-p.stop:
				return
			case <-time.After(pace):
			}
		}
	}()
	return p
}

func (p *TLSProbe) once(addr string, conf *tls.Config) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failures = append(p.failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
		return
	}
	defer c.Close()
	p.ok++
	leaf := c.ConnectionState().PeerCertificates[0]
	for _, s := range p.seen {
		if s.Leaf.Equal(leaf) {
			return
		}
	}
	p.seen = append(p.seen, ServedCert{Leaf: leaf, First: time.Now()})
}

// AwaitServed waits up to d for the probe to see a certificate that match
// accepts, and returns it.
func (p *TLSProbe) AwaitServed(match func(*x509.Certificate) bool, d time.Duration) (ServedCert, bool) {
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		p.mu.Lock()
		for _, s := range p.seen {
			if match(s.Leaf) {
				p.mu.Unlock()
				return s, true
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return ServedCert{}, false
		}
	}
}

// Stop ends the probe and returns its counts: handshakes that succeeded,
// the failures, and the certificates served, in the order first seen.
func (p *TLSProbe) Stop() (ok int, failures []string, seen []ServedCert) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok, p.failures, p.seen
}
