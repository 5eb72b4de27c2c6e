// Command bench measures the stack against the classic docker-compose recipe
// (bench/baseline) and against the floor (3 plain `docker run` of the same
// image), side by side, on the same local images, for each line it is given
// (-lines; 3.10 mirrored and 4.3 quorum by default): time to a ready
// cluster, a no-change preview, failover, throughput and memory. It prints
// the tables and the machine it ran on, and writes docs/BENCHMARKS.md and a
// chart. Run it with `make bench`.
//
// The Pulumi parts need the provider plugins; without them the bench says so
// and still runs the baseline and the plugin-free parts.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
)

// lg is the bench's own logger: the Pulumi SDK redirects the standard one.
var lg = log.New(os.Stderr, "bench ", log.Ltime)

func main() {
	runs := flag.Int("runs", 3, "time-to-ready runs of each side (the median is reported)")
	duration := flag.Duration("duration", 10*time.Second, "length of each throughput run")
	out := flag.String("out", "docs", "folder for BENCHMARKS.md and the chart")
	names := flag.String("lines", "3.10-mirrored,4.3-quorum", "the lines of harness.Lines to measure, by name")
	readyOnly := flag.Bool("ready-only", false, "time to ready and the trace only (floor, compose recipe, ours), printed; docs/ is left alone")
	swarm := flag.Bool("swarm", false, "the stack on a Swarm of three simulated hosts only (4.3): time to ready and the loss of a whole host; writes its own part of docs/BENCHMARKS.md")
	migration := flag.Bool("migration", false, "the blue-green move only: the compose recipe on 3.10 moved into our stack on 4.3 (migrateFrom); writes its own part of docs/BENCHMARKS.md")
	flag.Parse()

	r := &report{machine: machine(), runs: *runs, duration: *duration}
	cert, err := testpki.New()
	if err != nil {
		lg.Fatal(err)
	}
	if *swarm {
		table := "Machine: " + r.machine + "\n\n" + measureSwarm(harness.Lines[len(harness.Lines)-1], *runs).markdown()
		fmt.Print(table)
		if err := writeSection(*out, "More than one host (Swarm)", swarmBegin, swarmEnd, table); err != nil {
			lg.Fatal(err)
		}
		return
	}
	if *migration {
		m, err := measureMigration(cert, harness.Lines[0], harness.Lines[len(harness.Lines)-1])
		if err != nil {
			lg.Fatal(err)
		}
		table := "Machine: " + r.machine + "\n\n" + m.markdown()
		fmt.Print(table)
		if err := writeMigration(*out, table); err != nil {
			lg.Fatal(err)
		}
		return
	}
	for _, name := range strings.Split(*names, ",") {
		i := slices.IndexFunc(harness.Lines, func(l harness.Line) bool { return l.Name == name })
		if i < 0 {
			lg.Fatalf("-lines: %q is not a line of harness.Lines", name)
		}
		r.lines = append(r.lines, measureLine(harness.Lines[i], cert, *runs, *duration, *readyOnly))
	}

	text := r.markdown()
	fmt.Print(text)
	if *readyOnly {
		return
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		lg.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "bench.svg"), []byte(r.svg()), 0o644); err != nil {
		lg.Fatal(err)
	}
	for _, l := range r.lines {
		if len(l.trace.spans) > 0 {
			if err := os.WriteFile(filepath.Join(*out, traceFile(l.line)), []byte(l.trace.svg("one pulumi up, "+l.line.Name)), 0o644); err != nil {
				lg.Fatal(err)
			}
		}
	}
	doc := filepath.Join(*out, "BENCHMARKS.md")
	old, _ := os.ReadFile(doc)
	if err := os.WriteFile(doc, []byte(r.document(string(old), text)), 0o644); err != nil {
		lg.Fatal(err)
	}
}

// measureLine runs every measurement of one line: the floor, the compose
// recipe, then the stack.
func measureLine(line harness.Line, cert testpki.PKI, runs int, duration time.Duration, readyOnly bool) *lineReport {
	r := &lineReport{line: line, readyOnly: readyOnly}
	lg.Printf("%s floor: %d runs of 3 plain `docker run` until each accepts AMQP", line.Name, runs)
	r.floorReady = timeReady(line.Name+" floor", runs, func() (time.Duration, error) { return floor(line) }, floorDown)
	floorDown()

	lg.Printf("%s baseline: %d runs of `docker-compose up` until ready", line.Name, runs)
	base := newBaseline(cert, line)
	base.down() // whatever an aborted run left behind
	r.baselineReady = timeReady(line.Name+" baseline", runs, base.upUntilReady, base.down)
	if !readyOnly {
		lg.Printf("%s baseline: failover", line.Name)
		r.baselineFailover = failover(base.endpoints())
		logTrace(line.Name+" baseline: failover", r.baselineFailover.Trace)
	}
	base.down()

	ours, skip := newOurs(line, nil)
	if skip != "" {
		lg.Printf("%s ours: skipped, %s", line.Name, skip)
		r.skipped = skip
		return r
	}
	r.oursReady = timeReady(line.Name+" ours", runs, ours.upUntilReady, ours.destroy)
	r.trace = ours.trace
	if readyOnly {
		ours.destroy()
		return r
	}
	r.preview, r.previewChanges = ours.preview()
	e := ours.endpoints()
	lg.Printf("%s ours: memory while idle", line.Name)
	r.idleMemory = memory(e.prefix)
	lg.Printf("%s ours: throughput, %s each", line.Name, duration)
	r.throughput, r.loadMemory = throughputRuns(e, duration)
	lg.Printf("%s ours: failover", line.Name)
	r.oursFailover = failover(e)
	logTrace(line.Name+" ours: failover", r.oursFailover.Trace)
	lg.Printf("%s ours: rolling replacement of every node under load", line.Name)
	r.rolling = ours.rolling(e)
	logTrace(line.Name+" ours: rolling replacement", r.rolling.Trace)
	ours.destroy()
	_, _ = harness.Docker(context.Background(), nil, "rmi", "-f", rollingImage(line))
	return r
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
	management  string   // the management API, with credentials
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

// ready waits until every node is in cluster_status, the line's HA policy
// is present, and a message published through HAProxy is consumed.
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

// readyOnce is one check of ready, through the management API (one HTTP
// request each, where rabbitmqctl would boot an Erlang VM on a node that is
// also serving): every node a running cluster member, the policy present,
// and a message through HAProxy consumed.
func readyOnce(ctx context.Context, e endpoints, policy string) bool {
	var nodes []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if managementGet(ctx, e.management, "/api/nodes?columns=name,running", &nodes) != nil {
		return false
	}
	running := map[string]bool{}
	for _, n := range nodes {
		running[n.Name] = n.Running
	}
	for _, m := range e.members {
		if !running[m] {
			return false
		}
	}
	if len(running) != len(e.members) {
		return false
	}
	var policies []struct {
		Name string `json:"name"`
	}
	if managementGet(ctx, e.management, "/api/policies/%2F", &policies) != nil {
		return false
	}
	found := false
	for _, p := range policies {
		found = found || p.Name == policy
	}
	if !found {
		return false
	}
	return roundTrip(e.amqp) == nil
}

// managementGet decodes the JSON of a management API GET. base carries the
// credentials (http://user:pass@host:port), which net/http sends as basic
// auth.
func managementGet(ctx context.Context, base, path string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

func caPool(pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pem)
	return p
}
