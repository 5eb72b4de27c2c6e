package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
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
	// Trace is what the publisher's connection went through after the
	// kill, with times from the kill: it explains a long gap.
	Trace []string
}

// trace lists a publisher's events from t0 on, with times from t0.
func trace(pub *harness.Publisher, t0 time.Time) []string { return pub.Trace(t0) }

// failover runs a publisher with confirms through HAProxy, kills the node
// behind its connection (where the queue's leader lives too, as the queue was
// declared on it), and measures the time to the next confirm.
func failover(e endpoints) failoverResult {
	const queue = "bench-failover"
	pub := harness.StartPublisher(e.amqp, queue)
	if _, ok := pub.AwaitConfirmed(200, 30*time.Second); !ok {
		pub.Stop()
		return failoverResult{Err: "publisher made no progress"}
	}
	victim := nodeOfConnection(e, queue)
	if victim == "" {
		pub.Stop()
		return failoverResult{Err: "the connection's node was not found"}
	}
	pub.ResetGap()
	killed := time.Now()
	if _, err := harness.Docker(context.Background(), nil, "kill", victim); err != nil {
		pub.Stop()
		return failoverResult{Err: err.Error()}
	}
	_, ok := pub.AwaitConfirmed(50, 60*time.Second)
	_, _, gap := pub.Stats()
	confirmed, _ := pub.Stop()
	r := failoverResult{Killed: victim, Gap: gap, Confirmed: confirmed, Trace: trace(pub, killed)}
	if !ok {
		r.Err = "publishing did not resume within 60 s"
	}
	// The depth is read through HAProxy too. The recipe's HAProxy keeps
	// sending new connections to the killed node until its slow checks mark
	// it down (about 15 s), so the read is retried for up to 30 s.
	if depth, err := queueDepthWithin(e.amqp, queue, 30*time.Second); err == nil {
		r.Lost = max(0, confirmed-depth)
	} else {
		r.Err = err.Error()
	}
	if _, err := harness.Docker(context.Background(), nil, "start", victim); err != nil {
		lg.Printf("restart %s: %v", victim, err)
	}
	return r
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
	out, err := harness.Docker(context.Background(), nil, "exec", e.nodes[0], "rabbitmqctl", "-q", "list_connections", "pid", "client_properties")
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

// queueDepthWithin retries queueDepth until it answers or d has passed.
func queueDepthWithin(url, queue string, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		n, err := queueDepth(url, queue)
		if err == nil || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(time.Second)
	}
}

func queueDepth(url, queue string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return harness.ReadyMessages(conn, queue)
}

// throughput is one throughput measurement.
type throughput struct {
	Path string
	Rate float64 // confirmed messages per second, median of the rounds
	// Ratio is the median, over the rounds, of the rate through this path
	// over the rate direct to the same node, measured right before it.
	Ratio float64
	Err   string
}

// throughputRuns publishes persistent 1 KiB messages with confirms for d,
// through HAProxy AMQP and AMQPS, and direct to the node each of those
// connections landed on, while sampling the containers' memory.
//
// Like for like matters: on this machine one node of a cluster leads a
// mirrored queue at about twice the rate of the others (which one differs
// from cluster to cluster), far more than the proxy costs. So each proxied
// run is compared with a direct run on the node HAProxy chose for it.
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
	proxied := []struct {
		path, url string
		tls       *tls.Config
	}{{"HAProxy AMQP", e.amqp, nil}, {"HAProxy AMQPS", e.amqps, e.tls}}
	var direct []float64
	rates := make([][]float64, len(proxied))
	ratios := make([][]float64, len(proxied))
	out := []throughput{{Path: "direct to the same node"}}
	for _, p := range proxied {
		out = append(out, throughput{Path: p.path})
	}
	for round := range throughputRounds {
		for i, p := range proxied {
			name := fmt.Sprintf("bench-throughput-%d-%d", round, i)
			conn, err := dial(p.url, p.tls, name)
			if err != nil {
				out[i+1].Err = err.Error()
				continue
			}
			node := nodeOfConnection(e, name)
			idx := slices.Index(e.nodes, node)
			if idx < 0 {
				conn.Close()
				out[i+1].Err = "the connection's node was not found"
				continue
			}
			lg.Printf("throughput round %d: %s lands on %s; direct there first", round+1, p.path, node)
			dconn, err := dial(e.direct[idx], nil, name+"-direct")
			if err != nil {
				conn.Close()
				out[0].Err = err.Error()
				continue
			}
			dr, derr := publishFor(dconn, "bench-throughput", d)
			dconn.Close()
			pr, perr := publishFor(conn, "bench-throughput", d)
			conn.Close()
			if derr != nil || perr != nil {
				out[i+1].Err = fmt.Sprint(errors.Join(derr, perr))
				continue
			}
			direct = append(direct, dr)
			rates[i] = append(rates[i], pr)
			ratios[i] = append(ratios[i], pr/dr)
		}
	}
	out[0].Rate, out[0].Ratio = medianOf(direct), 1
	for i := range proxied {
		out[i+1].Rate, out[i+1].Ratio = medianOf(rates[i]), medianOf(ratios[i])
	}
	close(stop)
	wg.Wait()
	return out, peak
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2]
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
	out, err := harness.Docker(context.Background(), nil, "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}")
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

// rollingResult is a rolling replacement of every node under load.
type rollingResult struct {
	Total      time.Duration
	Spans      []harness.Span // each node out of service
	MinRunning int
	Gap        time.Duration // the longest gap between confirms
	Confirmed  int
	Lost       int
	Trace      []string
	Err        string
}

// rolling re-creates every node with `pulumi up` (the same image under a
// new label) while a publisher with confirms runs through HAProxy.
func (o *ours) rolling(e endpoints) rollingResult {
	const queue = "bench-rolling"
	tag := rollingImage(o.line)
	if err := harness.Relabel(o.line.Image, tag, "bench"); err != nil {
		return rollingResult{Err: err.Error()}
	}
	ctx := context.Background()
	if err := o.stack.SetConfig(ctx, "rabbitmq-ha:rabbitmqImage", auto.ConfigValue{Value: tag}); err != nil {
		return rollingResult{Err: err.Error()}
	}
	docker, err := dockerapi.NewDocker(os.Getenv("DOCKER_HOST"))
	if err != nil {
		return rollingResult{Err: err.Error()}
	}
	// The failover's victim may still be booting: start from a healthy cluster.
	for _, n := range e.nodes {
		for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
			if c, err := docker.Inspect(ctx, n); err == nil && c.Healthy() {
				break
			}
			if time.Now().After(deadline) {
				return rollingResult{Err: n + " not healthy before the rolling replacement"}
			}
		}
	}
	watch := harness.WatchNodes(docker, oursPrefix, len(e.nodes))
	pub := harness.StartPublisher(e.amqp, queue)
	if _, ok := pub.AwaitConfirmed(200, 30*time.Second); !ok {
		pub.Stop()
		watch.Stop()
		return rollingResult{Err: "publisher made no progress"}
	}
	pub.ResetGap()
	start := time.Now()
	_, upErr := o.stack.Up(ctx)
	r := rollingResult{Total: time.Since(start)}
	pub.AwaitConfirmed(50, 30*time.Second)
	_, _, r.Gap = pub.Stats()
	r.Confirmed, _ = pub.Stop()
	r.Spans, r.MinRunning, r.Trace = watch.Stop(), watch.MinRunning, trace(pub, start)
	if upErr != nil {
		r.Err = upErr.Error()
	}
	if depth, err := queueDepth(e.amqp, queue); err == nil {
		r.Lost = max(0, r.Confirmed-depth)
	} else if r.Err == "" {
		r.Err = err.Error()
	}
	return r
}

// rollingImage is the relabelled image of a line's rolling replacement.
func rollingImage(line harness.Line) string { return line.Image + "-bench-rolling" }
