package tests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// The fault matrix (issue 16). CI runs it on the default line; `make
// reliability` runs every line and writes docs/RELIABILITY.md.
var (
	reliabilityLines  = flag.String("reliability.lines", "4.3-quorum", "lines the fault matrix runs on: comma-separated line names, or all")
	reliabilityReport = flag.String("reliability.report", "", "write the fault matrix's tables to this Markdown file")
	reliabilityCases  = flag.String("reliability.cases", "", "run only the cases whose names match this regular expression (no report: a partial run would overwrite the full one)")
)

// daemonCaseName is the case run on a Docker host of its own, after the others.
const daemonCaseName = "the Docker daemon restarted"

// Budgets every fault case is held to.
const (
	// partitionHold is how long a partition lasts.
	partitionHold = 30 * time.Second
	// healBudget bounds the time from the fault's end to a cluster whose
	// every node runs, sees every other and passes its health check, with
	// HAProxy sending to each.
	healBudget = 90 * time.Second
	// resumeBudget bounds the time from the fault's end to the publisher's
	// next 50 confirms.
	resumeBudget = 30 * time.Second
)

// faultStack is a line's stack as the fault cases see it: nodes, HAProxy
// and the HA policy, run from the stack's own specs.
type faultStack struct {
	cfg     *config.Config
	amqp    string // through HAProxy, as the admin
	haproxy string // its container
	pki     testpki.PKI
	load    *harness.Load // the running case's
	// smallVolume is where node 2's small data volume is mounted on the host.
	smallVolume string
}

func (s faultStack) node(i int) string { return plan.NodeNames(s.cfg.Prefix, i).Container }

// direct is node i's own AMQP endpoint, as the admin: a client that
// bypasses HAProxy, as consumers pinned to a node do.
func (s faultStack) direct(i int) string {
	return plan.WithUser(plan.EndpointsOf(s.cfg).Nodes[i], s.cfg.AdminUser, harness.TestAdminPassword)
}

// faultCase injects one fault, checks the behaviour during it, and removes
// it; the matrix runs each under load and measures the rest.
type faultCase struct {
	name string
	// fault breaks the stack, checks what the cut-off side does (and says
	// it, where the case has one), and returns what repairs the fault.
	fault func(t *testing.T, s faultStack) (minority string, repair func())
	// load is the URL the case's load uses; nil is through HAProxy.
	load func(s faultStack) string
	// mirroredLoss, where set, is why classic mirrored queues (3.x) may
	// lose confirmed messages in this case: RabbitMQ's own limit, with
	// upstream's word for it. The loss is measured and reported there, not
	// failed; every other line must lose nothing.
	mirroredLoss string
}

var faultCases = []faultCase{
	{name: "partition: node 1 disconnected for 30 s", fault: func(t *testing.T, s faultStack) (string, func()) { return partitionNode(t, s, 1) }},
	{name: "partition: the seed (node 0) disconnected for 30 s", fault: func(t *testing.T, s faultStack) (string, func()) { return partitionNode(t, s, 0) }},
	{name: "partition: clients on the minority (node 1 cut off from its peers only, its clients connected straight to it) for 30 s",
		fault: clientsOnTheMinority, load: func(s faultStack) string { return s.direct(1) },
		mirroredLoss: "classic mirrored queues are not partition tolerant: the cut-off node promotes its own mirror and confirms on the minority until pause_minority stops it, and those messages are dropped when it rejoins. Upstream deprecated mirroring in 3.9 and removed it in 4.0 for this; quorum queues (Raft) confirm only what a majority wrote"},
	{name: "partition: HAProxy cut off from node 2 for 30 s", fault: isolateHAProxyFromNode2},
	{name: "HAProxy's process killed (SIGKILL)", fault: killHAProxy},
	{name: "HAProxy restarted (docker restart)", fault: func(t *testing.T, s faultStack) (string, func()) {
		harness.MustDocker(t, "restart", "-t", "5", s.haproxy)
		return "", func() {}
	}},
	{name: "a stalled start: node 2 restarted and paused mid-boot for 60 s", fault: stalledStart},
	{name: "memory alarm: a queue nobody consumes fills to the watermark", fault: memoryAlarm},
	{name: "disk alarm, then a full disk, on node 2", fault: diskAlarm},
	{name: "bad input at the edges", fault: refusedAtTheEdge},
	{name: "a connection flood beyond HAProxy's maxconn", fault: connectionFlood},
}

// faultRow is one case's measurement.
type faultRow struct {
	Case string
	harness.LoadResult
	Heal time.Duration
	// Observed is what the case saw during the fault: what the cut-off
	// side did, or how bad input was refused.
	Observed string
}

var faultRows = struct {
	sync.Mutex
	byLine map[string][]faultRow
}{byLine: map[string][]faultRow{}}

// TestIntegrationReliability runs each fault case under load (a publisher
// with confirms and a consumer, both through HAProxy) and counts by message
// ID: every confirmed ID must be consumed. Each case must heal without a
// manual step within healBudget, and publishing must resume.
func TestIntegrationReliability(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ and HAProxy containers; skipped under -short")
	}
	lines := selectLines(t, "reliability.lines", *reliabilityLines)
	only, err := regexp.Compile(*reliabilityCases)
	if err != nil {
		t.Fatalf("-reliability.cases=%q: %v", *reliabilityCases, err)
	}
	if *reliabilityCases != "" && *reliabilityReport != "" {
		t.Fatalf("-reliability.cases=%q with -reliability.report: a report is written from every case only", *reliabilityCases)
	}
	for _, line := range lines {
		t.Run(line.Name, func(t *testing.T) { reliability(t, line, only) })
	}
	if *reliabilityReport != "" {
		old, _ := os.ReadFile(*reliabilityReport)
		doc := reliabilityDocument(string(old), reliabilityMarkdown(lines, faultRows.byLine, machine(), time.Now()))
		if err := os.WriteFile(*reliabilityReport, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *reliabilityReport)
	}
}

func reliability(t *testing.T, line harness.Line, only *regexp.Regexp) {
	harness.RequireImages(t, line.Image, line.HAProxy)
	cfg := line.Config(t, "rmqha-it-faults", 240, 50300, map[string]string{config.KeyDiskFreeLimitMB: strconv.Itoa(diskLimitMB)})
	harness.RemoveStack(t, cfg.Prefix)
	t.Cleanup(func() { harness.RemoveStack(t, cfg.Prefix) })
	s := startFaultStack(t, line, cfg, func(s *faultStack) { s.smallVolume = smallVolume(t, *s, 2) })
	// The rendered net_ticktime is the one the nodes run with: partitions
	// are seen within the cases' 30 s.
	if out, err := rabbitmqctl(s.node(1), 10*time.Second, "eval", "net_kernel:get_net_ticktime()."); err != nil || out != strconv.Itoa(cfg.NetTicktimeSeconds) {
		t.Fatalf("net_ticktime on %s = %q (%v), want %d", s.node(1), out, err, cfg.NetTicktimeSeconds)
	}

	for i, c := range faultCases {
		if !only.MatchString(c.name) {
			continue
		}
		ok := t.Run(c.name, func(t *testing.T) {
			row := runFault(t, s, c, fmt.Sprintf("faults-%d", i))
			faultRows.Lock()
			faultRows.byLine[line.Name] = append(faultRows.byLine[line.Name], row)
			faultRows.Unlock()
		})
		// A case that left the cluster unhealed leaves the rest meaningless.
		if why := unhealed(s); !ok && why != "" {
			t.Fatalf("%q left the cluster unhealed (%s): the remaining cases are not run on this line", c.name, why)
		}
	}
	// On a Docker host of its own, whose daemon it restarts.
	if !only.MatchString(daemonCaseName) {
		return
	}
	t.Run(daemonCaseName, func(t *testing.T) {
		row := daemonRestart(t, line)
		faultRows.Lock()
		faultRows.byLine[line.Name] = append(faultRows.byLine[line.Name], row)
		faultRows.Unlock()
	})
}

// startFaultStack runs a line's stack from the stack's own specs: the
// network, HAProxy with its config job, the nodes (prepare runs just
// before they start) and the HA policy, and waits until it is whole.
func startFaultStack(t *testing.T, line harness.Line, cfg *config.Config, prepare func(*faultStack)) faultStack {
	t.Helper()
	harness.CreateNetwork(t, harness.Plan(t, cfg).Network)
	pki, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	installConfig(t, cfg, pki.ServerPEM)
	harness.RunSpec(t, harness.Plan(t, cfg).HAProxy.Spec, line.HAProxy, cfg.Prefix)
	s := faultStack{cfg: cfg, amqp: plan.WithUser(plan.EndpointsOf(cfg).AMQP, cfg.AdminUser, harness.TestAdminPassword),
		haproxy: harness.Plan(t, cfg).HAProxy.Spec.Name, pki: pki}
	if prepare != nil {
		prepare(&s)
	}
	startNodes(t, cfg, line.Image, nil)
	p := plan.PolicyFor(cfg)
	harness.MustDocker(t, "exec", s.node(0), "rabbitmqctl", "-q", "set_policy", "--apply-to", p.ApplyTo, p.Name, p.Pattern, p.DefinitionJSON())
	harness.WaitHealthy(t, s.haproxy, time.Minute)
	awaitHealed(t, s, time.Minute)
	return s
}

// runFault runs one case under load and checks what every case promises.
func runFault(t *testing.T, s faultStack, c faultCase, queue string) faultRow {
	url := s.amqp
	if c.load != nil {
		url = c.load(s)
	}
	load := harness.StartLoad(url, queue, 5*time.Millisecond)
	s.load = load
	load.Pub.WaitConfirmed(t, 200, 30*time.Second)
	load.Pub.ResetGap()
	start := time.Now()
	minority, repair := c.fault(t, s)
	repair()
	repaired := time.Now()
	heal := awaitHealed(t, s, healBudget)
	if n, ok := load.Pub.AwaitConfirmed(50, resumeBudget); !ok {
		t.Errorf("publishing did not resume: %d confirms in the %s after the repair", n, resumeBudget)
	}
	res := load.Finish(2 * time.Minute)
	row := faultRow{Case: c.name, LoadResult: res, Heal: heal, Observed: minority}
	t.Logf("%d confirmed (%d attempted), %d consumed, %d lost, %d duplicates; longest gap in confirms %s; healed %s after the repair (fault lasted %s)",
		res.Confirmed, res.Attempted, res.Consumed, len(res.Lost), res.Duplicates, res.MaxGap.Round(10*time.Millisecond),
		heal.Round(100*time.Millisecond), repaired.Sub(start).Round(100*time.Millisecond))
	if minority != "" {
		t.Logf("during the fault: %s", minority)
	}
	for _, e := range load.Pub.Events() {
		if e.At.After(start) {
			t.Logf("  publisher at +%s: %s", e.At.Sub(start).Round(10*time.Millisecond), e.What)
		}
	}
	switch {
	case len(res.Lost) == 0:
	case c.mirroredLoss != "" && s.cfg.HAMode == config.HAModeMirrored:
		t.Logf("%d confirmed messages were never consumed, e.g. %v: RabbitMQ's own limit, not this stack's: %s", len(res.Lost), res.Lost[:min(5, len(res.Lost))], c.mirroredLoss)
		row.Observed += fmt.Sprintf("; %d confirmed lost: RabbitMQ's own limit (classic mirrored queues, see the notes)", len(res.Lost))
	default:
		t.Errorf("%d confirmed messages were never consumed, e.g. %v", len(res.Lost), res.Lost[:min(5, len(res.Lost))])
	}
	return row
}

// partitionNode disconnects node i from the stack's network for
// partitionHold and checks that it stops serving writes as its line
// defines: pause_minority stops RabbitMQ on a Mnesia line; on Khepri a
// metadata write on the minority cannot commit.
func partitionNode(t *testing.T, s faultStack, i int) (minority string, repair func()) {
	name := s.node(i)
	ip := harness.Plan(t, s.cfg).Nodes[i].Spec.IP
	pid := harness.MustDocker(t, "inspect", "-f", "{{.State.Pid}}", name)
	harness.MustDocker(t, "network", "disconnect", s.cfg.Prefix, name)
	cut := time.Now()
	// The node's hostname resolves to its address, which left with the
	// network: put the address on its loopback, so its own CLI (the probe
	// below) still reaches it. Nothing else can reach it there.
	loopback := func(op string) {
		if out, err := hostCommand("nsenter", "-t", pid, "-n", "ip", "addr", op, ip+"/32", "dev", "lo"); err != nil {
			t.Fatalf("ip addr %s %s on %s's loopback: %v: %s", op, ip, name, err, out)
		}
	}
	loopback("add")
	repair = func() {
		if held := time.Since(cut); held < partitionHold {
			time.Sleep(partitionHold - held)
		}
		loopback("del")
		harness.MustDocker(t, "network", "connect", "--ip", ip, s.cfg.Prefix, name)
	}
	if s.cfg.Khepri() {
		// A write that needs the Raft majority cannot commit. It is not
		// refused either: like any Raft request that timed out, it may still
		// commit once the partition heals, so the cleanup says which.
		t.Cleanup(func() {
			vhosts, _ := rabbitmqctl(s.node(2), 10*time.Second, "list_vhosts")
			t.Logf("after the heal, the cut-off node's timed-out add_vhost %s", map[bool]string{true: "was committed", false: "was dropped"}[slices.Contains(strings.Fields(vhosts), "partition-probe")])
			_, _ = rabbitmqctl(s.node(0), 10*time.Second, "delete_vhost", "partition-probe")
		})
		out, err := rabbitmqctl(name, 15*time.Second, "add_vhost", "partition-probe")
		if err == nil {
			t.Errorf("%s, cut off, committed a metadata write: %s", name, out)
			return "committed a metadata write", repair
		}
		t.Logf("%s, cut off: add_vhost failed %s after the cut: %v", name, time.Since(cut).Round(100*time.Millisecond), err)
		return fmt.Sprintf("a metadata write did not commit in %s (Khepri: no Raft majority)", time.Since(cut).Round(time.Second)), repair
	}
	// The partition watch (cluster.sh, Mnesia lines) says in the node's
	// log (the script's stderr, which harness.Logs reads) when it restarted
	// the node's application. Each partition case cuts off another node.
	t.Cleanup(func() {
		t.Logf("%s's partition watch: %d restart(s) of its application", name, strings.Count(harness.Logs(t, name), "partition watch: restarted"))
	})
	// pause_minority: RabbitMQ stops on the cut-off node once it sees
	// every peer down, and says so in its log (the node's own CLI is no
	// witness: it may not reach a node in the middle of pausing). Measured,
	// not asserted: the cut-off node is unreachable, so it serves no client
	// either way. The loss check is what must hold.
	var logs string
	paused := time.Duration(0)
	for ; time.Since(cut) < partitionHold && paused == 0; time.Sleep(500 * time.Millisecond) {
		logs, _ = harness.Docker(context.Background(), nil, "logs", "--since", cut.Format(time.RFC3339Nano), name)
		paused = pausedAt(logs, cut)
	}
	seen := strings.Count(logs, "down: net_tick_timeout")
	if paused == 0 {
		t.Logf("%s did not pause within the %s hold; it saw %d of %d peers time out. Its log since the cut:\n%s", name, partitionHold, seen, s.cfg.Nodes-1, logs)
		return fmt.Sprintf("did not pause within the hold (saw %d of %d peers time out)", seen, s.cfg.Nodes-1), repair
	}
	return fmt.Sprintf("paused %s after the cut (pause_minority)", paused.Round(100*time.Millisecond)), repair
}

// pausedAt is when, after cut, a node's log says pause_minority paused it,
// or 0.
func pausedAt(logs string, cut time.Time) time.Duration {
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "Cluster minority/secondary status detected") || len(l) < 32 {
			continue
		}
		if at, err := time.Parse("2006-01-02 15:04:05.999999-07:00", l[:32]); err == nil && at.After(cut) {
			return at.Sub(cut)
		}
	}
	return 0
}

// rabbitmqctl runs rabbitmqctl -q in a node's container, given timeout.
func rabbitmqctl(container string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(timeout.Seconds()))
	return harness.Docker(ctx, nil, append([]string{"exec", container, "rabbitmqctl", "-q", "-t", secs}, args...)...)
}

// isolateHAProxyFromNode2 drops every packet from HAProxy to node 2 (a
// blackhole route in HAProxy's network namespace, set from the host) for
// partitionHold: HAProxy marks node 2 down and sends to the others, and
// the cluster itself stays whole.
func isolateHAProxyFromNode2(t *testing.T, s faultStack) (minority string, repair func()) {
	route := blackhole(t, s.haproxy, harness.Plan(t, s.cfg).Nodes[2].Spec.IP)
	route("add")
	cut := time.Now()
	var down time.Duration
	for time.Since(cut) < partitionHold {
		if st, err := statsServerStates(plan.EndpointsOf(s.cfg).Stats, s.cfg.StatsUser); err == nil && st[s.node(2)] == "DOWN" && down == 0 {
			down = time.Since(cut)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if down == 0 {
		t.Errorf("HAProxy did not mark %s down while cut off from it", s.node(2))
		return "HAProxy never marked node 2 down", func() { route("del") }
	}
	return fmt.Sprintf("HAProxy marked node 2 down %s after the cut", down.Round(100*time.Millisecond)), func() { route("del") }
}

// blackhole returns what adds ("add") or removes ("del") blackhole routes
// to the given addresses in a container's network namespace, set from the
// host: every packet from the container to them is dropped.
func blackhole(t *testing.T, container string, ips ...string) func(op string) {
	pid := harness.MustDocker(t, "inspect", "-f", "{{.State.Pid}}", container)
	return func(op string) {
		for _, ip := range ips {
			if out, err := hostCommand("nsenter", "-t", pid, "-n", "ip", "route", op, "blackhole", ip+"/32"); err != nil {
				t.Fatalf("ip route %s blackhole %s in %s's namespace: %v: %s", op, ip, container, err, out)
			}
		}
	}
}

// clientsOnTheMinority cuts node 1 off from its peers, and only from them,
// for partitionHold: blackhole routes both ways between node 1 and each
// other node, so HAProxy and the clients still reach it. The case's load
// is connected straight to node 1, so it publishes on the minority side.
// What the minority confirms must survive: a quorum queue confirms only
// what a majority wrote, so on node 1 confirms stop; pause_minority stops
// a Mnesia node that sees its peers gone.
func clientsOnTheMinority(t *testing.T, s faultStack) (string, func()) {
	nodes := harness.Plan(t, s.cfg).Nodes
	cuts := []func(string){blackhole(t, s.node(1), nodes[0].Spec.IP, nodes[2].Spec.IP),
		blackhole(t, s.node(0), nodes[1].Spec.IP), blackhole(t, s.node(2), nodes[1].Spec.IP)}
	for _, c := range cuts {
		c("add")
	}
	cut := time.Now()
	before, _, _ := s.load.Pub.Stats()
	repair := func() {
		for _, c := range cuts {
			c("del")
		}
	}
	// Confirms from the minority: those in flight at the cut come at once;
	// after a second, any further one was confirmed by node 1 alone.
	time.Sleep(time.Second)
	settled, _, _ := s.load.Pub.Stats()
	paused := time.Duration(0)
	for time.Since(cut) < partitionHold {
		if paused == 0 && !s.cfg.Khepri() {
			logs, _ := harness.Docker(context.Background(), nil, "logs", "--since", cut.Format(time.RFC3339Nano), s.node(1))
			paused = pausedAt(logs, cut)
		}
		time.Sleep(500 * time.Millisecond)
	}
	during, _, _ := s.load.Pub.Stats()
	what := fmt.Sprintf("node 1 confirmed %d in the first second of the cut and %d in the %s after it", settled-before, during-settled, partitionHold-time.Second)
	switch {
	case s.cfg.Khepri():
		what += " (Khepri: no pause)"
	case paused > 0:
		what += fmt.Sprintf("; paused %s after the cut (pause_minority)", paused.Round(100*time.Millisecond))
	default:
		what += "; did not pause within the hold"
	}
	if s.cfg.HAMode == config.HAModeQuorum && during > settled {
		t.Errorf("node 1, cut off from its peers, confirmed %d messages to a quorum queue after the cut's first second", during-settled)
	}
	return what, repair
}

// killHAProxy kills HAProxy's process from the host, as a crash would: the
// restart policy brings the container back.
func killHAProxy(t *testing.T, s faultStack) (string, func()) {
	pid := harness.MustDocker(t, "inspect", "-f", "{{.State.Pid}}", s.haproxy)
	if out, err := hostCommand("kill", "-KILL", pid); err != nil {
		t.Fatalf("kill HAProxy (pid %s): %v: %s", pid, err, out)
	}
	return "", func() {}
}

// stallHold is how long the stalled node stays paused.
const stallHold = 60 * time.Second

// stalledStart stops node 2 cleanly and starts it again, frozen (docker
// pause) the moment it starts, for stallHold: a node whose start is
// delayed. The others must keep the cluster and serve meanwhile; the node
// joins when it comes.
func stalledStart(t *testing.T, s faultStack) (string, func()) {
	name := s.node(2)
	harness.MustDocker(t, "stop", "-t", "60", name)
	harness.MustDocker(t, "start", name)
	harness.MustDocker(t, "pause", name)
	paused := time.Now()
	confirmed, _, _ := s.load.Pub.Stats()
	// The others serve: the load goes on through HAProxy, and the cluster
	// without node 2 accepts metadata writes.
	time.Sleep(stallHold / 2)
	if out, err := rabbitmqctl(s.node(0), 20*time.Second, "add_vhost", "stall-probe"); err != nil {
		t.Errorf("the cluster without the stalled %s refused a metadata write: %v: %s", name, err, out)
	}
	_, _ = rabbitmqctl(s.node(0), 20*time.Second, "delete_vhost", "stall-probe")
	states, _ := statsServerStates(plan.EndpointsOf(s.cfg).Stats, s.cfg.StatsUser)
	if left := stallHold - time.Since(paused); left > 0 {
		time.Sleep(left)
	}
	during, _, _ := s.load.Pub.Stats()
	if during-confirmed < 100 {
		t.Errorf("only %d confirms in the %s node 2 was stalled: the others did not serve", during-confirmed, stallHold)
	}
	return fmt.Sprintf("%d confirms while node 2 was stalled for %s; HAProxy had it %s; a metadata write committed without it", during-confirmed, stallHold, orDash(states[name])),
		func() { harness.MustDocker(t, "unpause", name) }
}

// hostCommand runs a command on the test's host.
func hostCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// awaitHealed waits until HAProxy is healthy and every node runs, sees
// every node running, passes its health check and is UP in HAProxy, and
// returns how long that took.
func awaitHealed(t *testing.T, s faultStack, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var why, last string
	for time.Since(start) < timeout {
		if why = unhealed(s); why == "" {
			return time.Since(start)
		}
		if why != last {
			t.Logf("  at +%s: %s", time.Since(start).Round(100*time.Millisecond), why)
			last = why
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("not healed %s after the repair: %s", timeout, why)
	return 0
}

// unhealed says what is not healed yet, or "".
func unhealed(s faultStack) string {
	health := func(name string) string {
		out, _ := harness.Docker(context.Background(), nil, "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", name)
		return out
	}
	if h := health(s.haproxy); h != "running healthy" {
		return "HAProxy is " + h
	}
	states, err := statsServerStates(plan.EndpointsOf(s.cfg).Stats, s.cfg.StatsUser)
	if err != nil {
		return "HAProxy's stats page: " + err.Error()
	}
	for i := range s.cfg.Nodes {
		name := s.node(i)
		if h := health(name); h != "running healthy" {
			return name + " is " + h
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := harness.ClusterStatusOf(ctx, name)
		cancel()
		if err != nil || len(st.RunningNodes) != s.cfg.Nodes {
			return fmt.Sprintf("%s sees running nodes %v (%v)", name, st.RunningNodes, err)
		}
		if states[name] != "UP" {
			return fmt.Sprintf("HAProxy has %s %s", name, states[name])
		}
	}
	return ""
}

// Markers of the generated part of docs/RELIABILITY.md; the notes outside
// them are written by hand and kept.
const (
	reliabilityBegin = "<!-- generated by make reliability: begin -->"
	reliabilityEnd   = "<!-- generated by make reliability: end -->"
)

// reliabilityDocument returns docs/RELIABILITY.md (old) with its generated
// part replaced by gen.
func reliabilityDocument(old, gen string) string {
	gen = reliabilityBegin + "\n" + gen + reliabilityEnd
	i, j := strings.Index(old, reliabilityBegin), strings.Index(old, reliabilityEnd)
	if i < 0 || j < i {
		return "# Reliability: faults beyond a crash\n\n" + gen + "\n"
	}
	return old[:i] + gen + old[j+len(reliabilityEnd):]
}

// reliabilityMarkdown is the generated part of docs/RELIABILITY.md: one
// table per line, with the command and the machine it ran on.
func reliabilityMarkdown(lines []harness.Line, rows map[string][]faultRow, machine string, at time.Time) string {
	var b strings.Builder
	b.WriteString("Generated by `make reliability` (`go test ./tests -run TestIntegrationReliability -args -reliability.lines=all -reliability.report=...`), between these markers; the notes after them are written by hand.\n\n")
	fmt.Fprintf(&b, "Run on %s, %s.\n\n", at.UTC().Format("2006-01-02 15:04 MST"), machine)
	b.WriteString("Each case runs under load: a publisher with confirms (persistent messages, one in flight, 5 ms apart) and a consumer with manual acks, both through HAProxy, on a fresh queue of the line's HA mode. " +
		"Every message carries a unique ID; **lost** counts the confirmed IDs the consumer never received, **duplicates** the deliveries beyond an ID's first. " +
		"The **longest gap** is the longest time between two confirms from the fault on. " +
		"**Heal** is the time from the fault's end (the network reconnected, the route removed; for HAProxy, the kill or restart itself) until HAProxy is healthy and every node runs, sees every node running, passes its health check and is UP in HAProxy. " +
		"Each case is also a test (`TestIntegrationReliability`) that fails on any loss, on a heal slower than " + healBudget.String() + ", or on publishing that does not resume within " + resumeBudget.String() + ".\n\n" +
		fmt.Sprintf("The stack is the line's, from the stack's own specs, with its defaults (net_ticktime %d s) except two settings for the disk case: node 2 keeps its data on a %d MB ext4 volume (a loop-mounted file), and `diskFreeLimitMb` is %d.\n", config.DefaultNetTicktime, diskVolumeMB, diskLimitMB))
	for _, l := range lines {
		fmt.Fprintf(&b, "\n## %s\n\n", l.Name)
		b.WriteString("| case | confirmed | consumed | lost | duplicates | longest gap | heal | observed during the fault |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range rows[l.Name] {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %.1f s | %.1f s | %s |\n", r.Case, r.Confirmed, r.Consumed, len(r.Lost), r.Duplicates,
				r.MaxGap.Seconds(), r.Heal.Seconds(), orDash(r.Observed))
		}
		if len(rows[l.Name]) < len(faultCases) {
			fmt.Fprintf(&b, "\n%d of %d cases finished on this line; the test log says why.\n", len(rows[l.Name]), len(faultCases))
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// machine describes the host for the report.
func machine() string {
	kernel, _ := hostCommand("uname", "-r")
	docker, _ := harness.Docker(context.Background(), nil, "version", "-f", "{{.Server.Version}}")
	return fmt.Sprintf("Linux %s, %d cores, Docker Engine %s", kernel, runtime.NumCPU(), docker)
}

// TestReliabilityMarkdown checks the report's table against known rows.
func TestPausedAt(t *testing.T) {
	cut := time.Date(2026, 12, 3, 16, 54, 0, 0, time.UTC)
	logs := "2026-12-03 16:54:15.571945+00:00 [info] <0.495.0> node 'rabbit@n-0' down: net_tick_timeout\n" +
		"2026-12-03 16:54:15.574875+00:00 [warning] <0.495.0> Cluster minority/secondary status detected - awaiting recovery\n"
	if got, want := pausedAt(logs, cut), 15574875*time.Microsecond; got != want {
		t.Errorf("pausedAt = %s, want %s", got, want)
	}
	if got := pausedAt(strings.SplitN(logs, "\n", 2)[0], cut); got != 0 {
		t.Errorf("pausedAt without the pause = %s, want 0", got)
	}
}

func TestReliabilityMarkdown(t *testing.T) {
	rows := map[string][]faultRow{"4.3-quorum": {{Case: "HAProxy restarted (docker restart)", LoadResult: harness.LoadResult{
		Confirmed: 900, Consumed: 901, Lost: []string{"q-7"}, Duplicates: 2, MaxGap: 2345 * time.Millisecond}, Heal: 3210 * time.Millisecond}}}
	md := reliabilityMarkdown(harness.Lines[2:], rows, "a test machine", time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	for _, want := range []string{
		"Run on 2026-12-03 12:00 UTC, a test machine.",
		"## 4.3-quorum",
		"| HAProxy restarted (docker restart) | 900 | 901 | 1 | 2 | 2.3 s | 3.2 s | - |",
		fmt.Sprintf("1 of %d cases finished", len(faultCases)),
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// A new report replaces the generated part and keeps the notes.
	doc := reliabilityDocument("# R\n\nintro\n"+reliabilityBegin+"\nold table\n"+reliabilityEnd+"\n\n## Notes\nkept\n", md)
	if strings.Contains(doc, "old table") || !strings.Contains(doc, "## Notes\nkept") || !strings.HasPrefix(doc, "# R\n\nintro\n"+reliabilityBegin) || !strings.Contains(doc, md) {
		t.Errorf("document:\n%s", doc)
	}
	if fresh := reliabilityDocument("", md); !strings.HasPrefix(fresh, "# Reliability") || !strings.Contains(fresh, reliabilityEnd) {
		t.Errorf("fresh document:\n%s", fresh)
	}
}
