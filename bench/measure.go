package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/tests"
)

// roundTrip publishes one message through url and consumes it.
func roundTrip(url string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return err
	}
	if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("ready?")}); err != nil {
		return err
	}
	for range 40 {
		if _, ok, err := ch.Get(q.Name, true); err != nil || ok {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("published message not consumed")
}

// failoverResult is one failover measurement.
type failoverResult struct {
	Killed    string
	Gap       time.Duration // from the kill to the first confirm after it
	Confirmed int
	Lost      int // confirmed but not in the queue afterwards
	Err       string
}

// failover runs a publisher with confirms through HAProxy, kills the node
// behind its connection (where the queue's leader lives too, as the queue was
// declared on it), and measures the time to the next confirm.
func failover(e endpoints) failoverResult {
	const queue = "bench-failover"
	pub := tests.StartPublisher(e.amqp, queue)
	if !waitConfirms(pub, 200, 30*time.Second) {
		pub.Stop()
		return failoverResult{Err: "publisher made no progress"}
	}
	victim := nodeOfConnection(e, queue)
	if victim == "" {
		pub.Stop()
		return failoverResult{Err: "the connection's node was not found"}
	}
	pub.ResetGap()
	if _, err := tests.Docker(context.Background(), nil, "kill", victim); err != nil {
		pub.Stop()
		return failoverResult{Err: err.Error()}
	}
	ok := waitConfirms(pub, 50, 60*time.Second)
	_, _, gap := pub.Stats()
	confirmed, _ := pub.Stop()
	r := failoverResult{Killed: victim, Gap: gap, Confirmed: confirmed}
	if !ok {
		r.Err = "publishing did not resume within 60 s"
	}
	if depth, err := queueDepth(e.amqp, queue); err == nil {
		r.Lost = max(0, confirmed-depth)
	} else {
		r.Err = err.Error()
	}
	if _, err := tests.Docker(context.Background(), nil, "start", victim); err != nil {
		lg.Printf("restart %s: %v", victim, err)
	}
	return r
}

// waitConfirms waits until the publisher confirms n more messages.
func waitConfirms(p *tests.Publisher, n int, timeout time.Duration) bool {
	start, _, _ := p.Stats()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, _, _ := p.Stats(); c >= start+n {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// nodeOfConnection returns the container of the node serving a named
// connection. A new connection takes a moment to be listed, so it asks for
// up to 10 s.
func nodeOfConnection(e endpoints, name string) string {
	for range 20 {
		if n := nodeOfConnectionOnce(e, name); n != "" {
			return n
		}
		time.Sleep(500 * time.Millisecond)
	}
	lg.Printf("no node serves connection %s", name)
	return ""
}

func nodeOfConnectionOnce(e endpoints, name string) string {
	// 3.10 has no "node" info key; a connection's pid names its node:
	// <rabbit@host.1234.5678.0>.
	out, err := tests.Docker(context.Background(), nil, "exec", e.nodes[0], "rabbitmqctl", "-q", "list_connections", "pid", "client_properties")
	if err != nil {
		lg.Printf("list_connections: %v", err)
		return ""
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, name) {
			continue
		}
		node, _, _ := strings.Cut(strings.TrimPrefix(strings.Fields(line)[0], "<"), ".")
		for i, m := range e.members {
			if m == node {
				return e.nodes[i]
			}
		}
	}
	return ""
}

func queueDepth(url, queue string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// throughput is one throughput measurement.
type throughput struct {
	Path string
	Rate float64 // confirmed messages per second
	Err  string
}

// throughputRuns publishes persistent 1 KiB messages with confirms for d,
// direct to a node, through HAProxy AMQP and through AMQPS, while sampling
// the containers' memory.
func throughputRuns(e endpoints, d time.Duration) ([]throughput, map[string]uint64) {
	peak := map[string]uint64{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for name, b := range memory(e.prefix) {
				mu.Lock()
				peak[name] = max(peak[name], b)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	// Direct means direct to the node HAProxy picks: queue leaders on
	// different nodes of one host differ by up to 2x here, which would swamp
	// what the proxy costs. The paths take turns, three rounds, and each
	// reports its median: on a small shared machine one run alone says more
	// about its neighbours.
	direct := e.direct[0]
	if conn, err := dial(e.amqp, nil, "bench-throughput-probe"); err == nil {
		if n := nodeOfConnection(e, "bench-throughput-probe"); n != "" {
			for i, name := range e.nodes {
				if name == n {
					direct = e.direct[i]
					lg.Printf("throughput: HAProxy sends a lone connection to %s; direct is measured there", name)
				}
			}
		}
		conn.Close()
	}
	paths := []struct {
		path, url string
		tls       *tls.Config
	}{{"direct to a node", direct, nil}, {"HAProxy AMQP", e.amqp, nil}, {"HAProxy AMQPS", e.amqps, e.tls}}
	rates := make([][]float64, len(paths))
	out := make([]throughput, len(paths))
	for round := range throughputRounds {
		for i, run := range paths {
			lg.Printf("throughput round %d: %s", round+1, run.path)
			out[i].Path = run.path
			conn, err := dial(run.url, run.tls, "bench-throughput")
			var rate float64
			if err == nil {
				rate, err = publishFor(conn, "bench-throughput", d)
				conn.Close()
			}
			if err != nil {
				out[i].Err = err.Error()
				continue
			}
			rates[i] = append(rates[i], rate)
		}
	}
	for i := range out {
		sort.Float64s(rates[i])
		if n := len(rates[i]); n > 0 {
			out[i].Rate = rates[i][n/2]
		}
	}
	close(stop)
	wg.Wait()
	return out, peak
}

// dial connects with a connection name, over TLS when tlsConf is set.
func dial(url string, tlsConf *tls.Config, name string) (*amqp.Connection, error) {
	return amqp.DialConfig(url, amqp.Config{TLSClientConfig: tlsConf, Properties: amqp.Table{"connection_name": name}})
}

// throughputRounds is how many times each path is measured.
const throughputRounds = 3

// window is how many confirms may be outstanding: a pipelining producer.
const window = 64

// publishFor publishes for d with a window of outstanding confirms and
// returns the confirmed rate. The queue is deleted afterwards.
func publishFor(conn *amqp.Connection, queue string, d time.Duration) (float64, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return 0, err
	}
	defer ch.QueueDelete(queue, false, false, false)
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	// A consumer drains the queue meanwhile, as in production: a backlog
	// would soon raise the memory alarm and measure flow control instead.
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	go func() {
		for range deliveries {
		}
	}()
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
	body := make([]byte, 1024)
	slots := make(chan struct{}, window)
	acked := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range confirms {
			if c.Ack {
				acked++
			}
			<-slots
		}
	}()
	start := time.Now()
	for time.Since(start) < d {
		slots <- struct{}{}
		if err := ch.Publish("", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
			return 0, err
		}
	}
	for len(slots) > 0 { // wait for the last confirms
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	ch.Close()
	<-done
	return float64(acked) / elapsed.Seconds(), nil
}

// memory returns the memory use of every container whose name starts with prefix.
func memory(prefix string) map[string]uint64 {
	out, err := tests.Docker(context.Background(), nil, "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}")
	if err != nil {
		lg.Printf("docker stats: %v", err)
		return nil
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(out, "\n") {
		name, usage, ok := strings.Cut(line, "\t")
		if !ok || !strings.HasPrefix(name, prefix) {
			continue
		}
		used, _, _ := strings.Cut(usage, " / ")
		m[name] = parseBytes(strings.TrimSpace(used))
	}
	return m
}

// parseBytes reads docker stats sizes: 12.5MiB, 1.2GiB, 800KiB, 10B.
func parseBytes(s string) uint64 {
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return uint64(f * u.mult)
		}
	}
	return 0
}
