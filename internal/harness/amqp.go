package harness

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
)

// Test secrets: long enough to pass validation, obviously not production.
const (
	TestCookie        = "ITCOOKIE0123456789abcdefABCDEF"
	TestAdminPassword = "it-admin-Passw0rd"
	TestStatsPassword = "it-stats-Passw0rd"
)

// TestValues are the plain config values of a test stack: its own prefix,
// subnet and port range, so tests never collide with each other or a stack.
// Ports: AMQP portBase, AMQPS +1, stats +2, management +3, nodes +10...,
// node metrics +20...
func TestValues(prefix, image, subnet string, portBase int) map[string]string {
	return map[string]string{
		config.KeyPrefix:           prefix,
		config.KeyRabbitMQImage:    image,
		config.KeyHAProxyImage:     HAProxyImage,
		config.KeySubnet:           subnet,
		config.KeyAMQPPort:         strconv.Itoa(portBase),
		config.KeyAMQPSPort:        strconv.Itoa(portBase + 1),
		config.KeyStatsPort:        strconv.Itoa(portBase + 2),
		config.KeyManagementPort:   strconv.Itoa(portBase + 3),
		config.KeyNodeAMQPPortBase: strconv.Itoa(portBase + 10),
		config.KeyMetricsPortBase:  strconv.Itoa(portBase + 20),
	}
}

// TestSecrets are the secret config values of a test stack.
func TestSecrets() map[string]string {
	return map[string]string{
		config.KeyErlangCookie:  TestCookie,
		config.KeyAdminPassword: TestAdminPassword,
		config.KeyStatsPassword: TestStatsPassword,
	}
}

// TestConfig is a valid, loaded config for an integration test.
func TestConfig(t testing.TB, prefix, image, subnet string, portBase int, extra map[string]string) *config.Config {
	t.Helper()
	v := TestValues(prefix, image, subnet, portBase)
	secrets := map[string]bool{}
	for k, val := range TestSecrets() {
		v[k], secrets[k] = val, true
	}
	for k, val := range extra {
		v[k] = val
		// Keys whose values hold passwords are set as secrets.
		secrets[k] = secrets[k] || k == config.KeyUsers || k == config.KeyMigrateFrom
	}
	cfg, _, err := config.Load(config.MapSource{Values: v, Secrets: secrets}, "rabbitmq-ha", "it")
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}

// Dial connects with retries while a node or HAProxy comes up.
func Dial(t testing.TB, rawURL string, tlsConfig *tls.Config, timeout time.Duration) *amqp.Connection {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var conn *amqp.Connection
		var err error
		if tlsConfig != nil {
			conn, err = amqp.DialTLS(rawURL, tlsConfig)
		} else {
			conn, err = amqp.Dial(rawURL)
		}
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", redact(rawURL), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<url>"
	}
	return u.Redacted()
}

// PublishConfirmed publishes n persistent messages to a durable queue and
// returns how many the broker confirmed.
func PublishConfirmed(t testing.TB, conn *amqp.Connection, queue string, n int, args amqp.Table) int {
	t.Helper()
	return len(PublishIDs(t, conn, queue, queue, n, args))
}

// QueueDepth returns the number of ready messages in a queue.
func QueueDepth(t testing.TB, conn *amqp.Connection, queue string) int {
	t.Helper()
	n, err := ReadyMessages(conn, queue)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return n
}

// ReadyMessages reads a queue's ready messages by a passive declare on a
// channel of its own, for callers that may not fail a test (a goroutine, a
// bench).
func ReadyMessages(conn *amqp.Connection, queue string) (int, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// Drain consumes every ready message of a queue, acking each, and returns the count.
func Drain(t testing.TB, conn *amqp.Connection, queue string) int {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	n := 0
	for {
		_, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get %s: %v", queue, err)
		}
		if !ok {
			return n
		}
		n++
	}
}

// ClusterStatus is the part of `rabbitmqctl cluster_status --formatter json` tests read.
type ClusterStatus struct {
	DiskNodes    []string `json:"disk_nodes"`
	RAMNodes     []string `json:"ram_nodes"`
	RunningNodes []string `json:"running_nodes"`
}

// Members returns every member, disc and RAM.
func (s ClusterStatus) Members() []string {
	return append(append([]string{}, s.DiskNodes...), s.RAMNodes...)
}

// GetClusterStatus asks one node for the cluster's status.
func GetClusterStatus(t testing.TB, container string) ClusterStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := ClusterStatusOf(ctx, container)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ClusterStatusOf is GetClusterStatus that returns its error, for callers
// that poll a node which may not answer yet.
func ClusterStatusOf(ctx context.Context, container string) (ClusterStatus, error) {
	var s ClusterStatus
	out, err := Docker(ctx, nil, "exec", container, "rabbitmqctl", "-q", "cluster_status", "--formatter", "json")
	if err != nil {
		return s, err
	}
	// rabbitmqctl may print a line before the JSON on some versions.
	if i := strings.Index(out, "{"); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("cluster_status of %s: %v: %s", container, err, out)
	}
	return s, nil
}

// WaitRunning waits until a node reports want running members.
func WaitRunning(t testing.TB, container string, want int, timeout time.Duration) ClusterStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := GetClusterStatus(t, container)
		if len(s.RunningNodes) == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d running nodes after %s, want %d: %+v", container, len(s.RunningNodes), timeout, want, s)
		}
		time.Sleep(time.Second)
	}
}

// Publisher publishes persistent messages with publisher confirms, one at a
// time, until stopped, reconnecting whenever its connection fails: a
// producer as a careful application writes it. Every message carries a
// unique MessageId (<queue>-<n>), and the publisher keeps the IDs the
// broker confirmed, for the ID-based check (Consumed.Check).
type Publisher struct {
	// urls are the addresses it dials, in turn after a failed dial.
	urls       []string
	queue      string
	pace       time.Duration
	stop, done chan struct{}

	mu        sync.Mutex
	confirmed int
	attempted int
	ids       []string // the confirmed message IDs, in order
	lastOK    time.Time
	maxGap    time.Duration // the longest time between two confirms
	stalls    []Stall
	events    []Event
}

// StallThreshold is the least gap between confirms that counts as a stall.
const StallThreshold = time.Second

// Stall is a gap between two confirms of at least StallThreshold.
type Stall struct {
	From   time.Time
	Length time.Duration
}

// Stalls returns every stall so far, oldest first.
func (p *Publisher) Stalls() []Stall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Stall(nil), p.stalls...)
}

// StartPublisher starts publishing to a durable queue (declared on connect).
func StartPublisher(url, queue string) *Publisher { return StartPacedPublisher(url, queue, 0) }

// StartPacedPublisher is StartPublisher that waits pace after each confirm,
// which bounds the queue's growth.
func StartPacedPublisher(url, queue string, pace time.Duration) *Publisher {
	return StartFailoverPublisher([]string{url}, queue, pace)
}

// StartFailoverPublisher is StartPacedPublisher for a client that knows
// several addresses of the service (HAProxy on each of a Swarm's hosts): it
// dials the first, and on a failed dial the next, round.
func StartFailoverPublisher(urls []string, queue string, pace time.Duration) *Publisher {
	p := &Publisher{urls: urls, queue: queue, pace: pace, stop: make(chan struct{}), done: make(chan struct{}), lastOK: time.Now()}
	go p.run()
	return p
}

func (p *Publisher) run() {
	defer close(p.done)
	// next is the address to dial: a failed dial or a lost session moves it
	// on, so a client whose host died goes elsewhere at once.
	dialErrors, next := 0, 0
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		// The queue's name names the connection, so a test can find the node
		// behind it (rabbitmqctl list_connections node client_properties).
		conf := amqp.Config{Properties: amqp.Table{"connection_name": p.queue}}
		if len(p.urls) > 1 {
			// A dead host answers nothing: a client with somewhere else to
			// go gives a dial two seconds, not the library's 30.
			conf.Dial = amqp.DefaultDial(2 * time.Second)
		}
		conn, err := amqp.DialConfig(p.urls[next%len(p.urls)], conf)
		if err != nil {
			if dialErrors == 0 {
				p.event("dial failed: %v (retrying every 100 ms)", err)
			}
			dialErrors++
			next++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		p.event("connected (after %d failed dials)", dialErrors)
		dialErrors = 0

		if reason := p.session(conn); reason != "" {
			p.event("session ended: %s", reason)
			next++
		}
		// A careful client gives the close a deadline: a channel whose
		// queue leader is cut off answers the close only once the broker
		// sees that node down (net_ticktime).
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
	}
}

// ConfirmTimeout is how long the publisher waits for one confirm before it
// gives up on the connection and dials again.
const ConfirmTimeout = 5 * time.Second

// closeTimeout is how long a client waits for a connection's close-ok.
const closeTimeout = time.Second

// session publishes on one connection until it fails or the publisher
// stops, and says why it ended.
func (p *Publisher) session(conn *amqp.Connection) string {
	// A resource alarm blocks the connection (connection.blocked): the
	// publisher waits for its confirms, however long, and says so.
	var blocked atomic.Bool
	go func(notices <-chan amqp.Blocking) {
		for b := range notices {
			blocked.Store(b.Active)
			if b.Active {
				p.event("blocked: %s", b.Reason)
			} else {
				p.event("unblocked")
			}
		}
	}(conn.NotifyBlocked(make(chan amqp.Blocking, 4)))
	ch, err := conn.Channel()
	if err != nil {
		return "channel: " + err.Error()
	}
	if _, err := ch.QueueDeclare(p.queue, true, false, false, false, nil); err != nil {
		return "queue.declare: " + err.Error()
	}
	if err := ch.Confirm(false); err != nil {
		return "confirm.select: " + err.Error()
	}
	for {
		select {
		case <-p.stop:
			return ""
		default:
		}
		p.mu.Lock()
		id := fmt.Sprintf("%s-%d", p.queue, p.attempted)
		p.attempted++
		p.mu.Unlock()
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", p.queue, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: id, Body: []byte(id),
		})
		if err != nil {
			return "publish: " + err.Error()
		}
		ok, timedOut := awaitConfirm(dc, &blocked)
		switch {
		case timedOut:
			return fmt.Sprintf("no confirm within %s", ConfirmTimeout)
		case !ok:
			return "nack (or the channel closed: " + fmt.Sprint(conn.IsClosed()) + ")"
		}
		p.mu.Lock()
		now := time.Now()
		gap := now.Sub(p.lastOK)
		if gap > p.maxGap {
			p.maxGap = gap
		}
		if gap >= StallThreshold {
			p.stalls = append(p.stalls, Stall{From: p.lastOK, Length: gap})
		}
		p.lastOK = now
		p.confirmed++
		p.ids = append(p.ids, id)
		p.mu.Unlock()
		if p.pace > 0 {
			time.Sleep(p.pace)
		}
	}
}

// awaitConfirm waits for a publish's confirm up to ConfirmTimeout, a time
// that stands still while the connection is blocked, and says whether the
// broker acked it or the wait timed out.
func awaitConfirm(dc *amqp.DeferredConfirmation, blocked *atomic.Bool) (acked, timedOut bool) {
	deadline := time.Now().Add(ConfirmTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-dc.Done():
			return dc.Acked(), false
		case now := <-tick.C:
			if blocked.Load() {
				deadline = now.Add(ConfirmTimeout)
			}
			if now.After(deadline) {
				return false, true
			}
		}
	}
}

// Event is one thing that happened to the publisher's connection.
type Event struct {
	At   time.Time
	What string
}

func (p *Publisher) event(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, Event{time.Now(), fmt.Sprintf(format, args...)})
}

// Events returns what happened to the publisher's connections, oldest
// first: connects, failed dials and why each session ended.
func (p *Publisher) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Trace is what happened to the publisher's connections since t0, one line
// each, timed from t0: "+2.31 s session ended: ...".
func (p *Publisher) Trace(t0 time.Time) []string {
	var out []string
	for _, e := range p.Events() {
		if !e.At.Before(t0) {
			out = append(out, fmt.Sprintf("+%.2f s %s", e.At.Sub(t0).Seconds(), e.What))
		}
	}
	return out
}

// Stats returns the counts so far and the longest gap between confirms.
func (p *Publisher) Stats() (confirmed, attempted int, maxGap time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.confirmed, p.attempted, p.maxGap
}

// ConfirmedIDs returns the IDs of every message the broker confirmed so far.
func (p *Publisher) ConfirmedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ids...)
}

// ResetGap starts measuring the longest gap afresh.
func (p *Publisher) ResetGap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxGap, p.lastOK, p.stalls = 0, time.Now(), nil
}

// AwaitConfirmed waits until at least n more messages are confirmed and
// returns how many were, and whether that happened within timeout.
func (p *Publisher) AwaitConfirmed(n int, timeout time.Duration) (int, bool) {
	start, _, _ := p.Stats()
	deadline := time.Now().Add(timeout)
	for {
		c, _, _ := p.Stats()
		if c >= start+n {
			return c - start, true
		}
		if time.Now().After(deadline) {
			return c - start, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitConfirmed is AwaitConfirmed that fails the test on timeout.
func (p *Publisher) WaitConfirmed(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	if got, ok := p.AwaitConfirmed(n, timeout); !ok {
		t.Fatalf("publisher confirmed %d messages in %s, want %d", got, timeout, n)
	}
}

// Stop stops publishing and returns the final counts.
func (p *Publisher) Stop() (confirmed, attempted int) {
	close(p.stop)
	<-p.done
	c, a, _ := p.Stats()
	return c, a
}
