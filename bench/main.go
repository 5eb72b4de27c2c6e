// Command bench measures the stack against the classic docker-compose recipe
// (bench/baseline), side by side, on the same local images: time to a ready
// cluster, a no-change preview, failover, throughput and memory. It prints
// one table and the machine it ran on, and writes docs/BENCHMARKS.md and a
// chart. Run it with `make bench`.
//
// The Pulumi parts need the provider plugins; without them the bench says so
// and still runs the baseline and the plugin-free parts.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
	"github.com/rabbitmq-ha/rabbitmq-ha/tests"
)

// lg is the bench's own logger: the Pulumi SDK redirects the standard one.
var lg = log.New(os.Stderr, "bench ", log.Ltime)

func main() {
	runs := flag.Int("runs", 3, "time-to-ready runs of each side (the median is reported)")
	duration := flag.Duration("duration", 10*time.Second, "length of each throughput run")
	out := flag.String("out", "docs", "folder for BENCHMARKS.md and the chart")
	flag.Parse()

	r := &report{machine: machine(), runs: *runs, duration: *duration}
	cert, err := testpki.New()
	if err != nil {
		lg.Fatal(err)
	}

	lg.Printf("baseline: %d runs of `docker-compose up` until ready", *runs)
	base := newBaseline(cert)
	base.down() // whatever an aborted run left behind
	r.baselineReady = timeReady("baseline", *runs, base.upUntilReady, base.down)
	lg.Print("baseline: failover")
	r.baselineFailover = failover(base.endpoints())
	logTrace("baseline: failover", r.baselineFailover.Trace)
	base.down()

	ours, skip := newOurs()
	if skip != "" {
		lg.Printf("ours: skipped, %s", skip)
		r.skipped = skip
	} else {
		r.oursReady = timeReady("ours", *runs, ours.upUntilReady, ours.destroy)
		r.preview, r.previewChanges = ours.preview()
		e := ours.endpoints()
		lg.Print("ours: memory while idle")
		r.idleMemory = memory(e.prefix)
		lg.Printf("ours: throughput, %s each", *duration)
		r.throughput, r.loadMemory = throughputRuns(e, *duration)
		lg.Print("ours: failover")
		r.oursFailover = failover(e)
		logTrace("ours: failover", r.oursFailover.Trace)
		lg.Print("ours: rolling replacement of every node under load")
		r.rolling = ours.rolling(e)
		logTrace("ours: rolling replacement", r.rolling.Trace)
		ours.destroy()
		_, _ = tests.Docker(context.Background(), nil, "rmi", "-f", rollingImage)
	}

	text := r.markdown()
	fmt.Print(text)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		lg.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "bench.svg"), []byte(r.svg()), 0o644); err != nil {
		lg.Fatal(err)
	}
	doc := filepath.Join(*out, "BENCHMARKS.md")
	old, _ := os.ReadFile(doc)
	if err := os.WriteFile(doc, []byte(r.document(string(old), text)), 0o644); err != nil {
		lg.Fatal(err)
	}
}

// logTrace logs a publisher's trace, one event a line.
func logTrace(what string, trace []string) {
	for _, l := range trace {
		lg.Printf("%s: publisher %s", what, l)
	}
}

// endpoints is what the measurements need of a running cluster.
type endpoints struct {
	prefix      string   // container name prefix, to find the containers
	nodes       []string // node container names
	members     []string // their RabbitMQ node names
	amqp, amqps string   // through HAProxy, with credentials
	direct      []string // per node, with credentials
	tls         *tls.Config
}

// timeReady brings a side up from nothing runs times and returns how long
// each took to be ready. Between runs it tears the side down; after the last
// it leaves the side up for the other measurements.
func timeReady(side string, runs int, up func() (time.Duration, error), down func()) []time.Duration {
	var out []time.Duration
	for i := range runs {
		if i > 0 {
			down()
		}
		d, err := up()
		if err != nil {
			lg.Fatalf("%s run %d: %v", side, i+1, err)
		}
		lg.Printf("%s run %d: ready after %s", side, i+1, d.Round(100*time.Millisecond))
		out = append(out, d)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// ready waits until every node is in cluster_status, the ha-all policy is
// present, and a message published through HAProxy is consumed.
func ready(ctx context.Context, e endpoints, policy string) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("not ready: %w", err)
		}
		if readyOnce(ctx, e, policy) {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func readyOnce(ctx context.Context, e endpoints, policy string) bool {
	out, err := tests.Docker(ctx, nil, "exec", e.nodes[0], "rabbitmqctl", "-q", "cluster_status", "--formatter", "json")
	if err != nil {
		return false
	}
	for _, n := range e.members {
		if !strings.Contains(out, n) {
			return false
		}
	}
	if !strings.Contains(out, `"running_nodes":[`) || strings.Count(between(out, `"running_nodes":[`, "]"), "rabbit@") != len(e.members) {
		return false
	}
	pol, err := tests.Docker(ctx, nil, "exec", e.nodes[0], "rabbitmqctl", "-q", "list_policies")
	if err != nil || !strings.Contains(pol, policy) {
		return false
	}
	return roundTrip(e.amqp) == nil
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}

func caPool(pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pem)
	return p
}
