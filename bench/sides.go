package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/components"
	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Where each side runs: subnets and ports of their own, so neither collides
// with the other, a dev stack or the harness.
const (
	baselineProject = "rmqha-baseline"
	baselineNet     = "10.232"
	baselinePrefix  = "4" // ports 46729 (AMQP), 46671 (AMQPS), 4672x (nodes)
	oursPrefix      = "rmqha-bench"
	oursSubnet      = "10.233.0.0/24"
	oursPortBase    = 48000
	floorPrefix     = "rmqha-floor"
	floorPortBase   = 45672
	readyTimeout    = 5 * time.Minute
)

// baseline is the docker-compose recipe in bench/baseline, on a line's
// images: RAM nodes where the line has them, disc nodes on 4.3, and the
// line's HA policy set by hand as the recipe's one manual step.
type baseline struct {
	dir  string
	cert testpki.PKI
	line harness.Line
}

// linePolicy is the HA policy of a line, as the stack sets it on 3 nodes.
func linePolicy(line harness.Line) plan.Policy {
	return plan.PolicyFor(&config.Config{HAMode: line.HAMode, QuorumGroupSize: 3})
}

func newBaseline(cert testpki.PKI, line harness.Line) *baseline {
	dir, err := os.MkdirTemp("", "rmqha-baseline-")
	if err != nil {
		lg.Fatal(err)
	}
	for _, f := range []string{"docker-compose.yml", "haproxy.cfg", "node0-entrypoint.sh", "cluster-entrypoint.sh"} {
		b, err := os.ReadFile(filepath.Join("bench", "baseline", f))
		if err != nil {
			lg.Fatal(err)
		}
		must(os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	must(os.WriteFile(filepath.Join(dir, "erlang.cookie"), []byte(harness.TestCookie), 0o644))
	must(os.WriteFile(filepath.Join(dir, "server.pem"), []byte(cert.ServerPEM), 0o644))
	return &baseline{dir: dir, cert: cert, line: line}
}

// compose runs docker-compose (Debian's package) on the recipe, with the
// subnet and ports moved off the recipe's.
func (b *baseline) compose(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-compose", append([]string{"-p", baselineProject, "-f", filepath.Join(b.dir, "docker-compose.yml")}, args...)...)
	cmd.Env = append(os.Environ(), "BASELINE_NET="+baselineNet, "BASELINE_PORT_PREFIX="+baselinePrefix,
		"RABBITMQ_IMAGE="+b.line.Image, "HAPROXY_IMAGE="+b.line.HAProxy)
	if !(&config.Config{RabbitMQVersion: config.ImageVersion(b.line.Image)}).RAMNodesSupported() {
		cmd.Env = append(cmd.Env, "JOIN_FLAGS=--disc")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker-compose %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (b *baseline) endpoints() endpoints {
	e := endpoints{
		prefix: baselineProject,
		amqp:   "amqp://guest:guest@127.0.0.1:" + baselinePrefix + "6729/",
		amqps:  "amqps://guest:guest@localhost:" + baselinePrefix + "6671/",
		// The recipe publishes node 0's management port only.
		management: "http://guest:guest@127.0.0.1:" + baselinePrefix + "5672",
		tls:        &tls.Config{RootCAs: b.cert.Pool, ServerName: "localhost"},
	}
	for i := range 3 {
		e.nodes = append(e.nodes, fmt.Sprintf("%s_rmqha_node%d_1", baselineProject, i))
		e.members = append(e.members, fmt.Sprintf("rabbit@rmqha_node%d", i))
		e.direct = append(e.direct, fmt.Sprintf("amqp://guest:guest@127.0.0.1:%s672%d/", baselinePrefix, i))
	}
	return e
}

// upUntilReady runs `compose up` and the recipe's one manual step, the HA
// policy by rabbitmqctl, until the cluster is ready.
func (b *baseline) upUntilReady() (time.Duration, error) {
	start := time.Now()
	if err := b.compose("up", "-d"); err != nil {
		return 0, err
	}
	e := b.endpoints()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	p := linePolicy(b.line)
	for {
		_, err := harness.Docker(ctx, nil, "exec", e.nodes[0], "rabbitmqctl", "-q", "set_policy", "--apply-to", p.ApplyTo, p.Name, p.Pattern, p.DefinitionJSON())
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("set_policy: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := ready(ctx, e, p.Name); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (b *baseline) down() {
	if err := b.compose("down", "-v", "--remove-orphans"); err != nil {
		lg.Printf("baseline down: %v", err)
	}
}

// ours is the stack, through the Automation API with the program compiled
// into this binary.
type ours struct {
	stack auto.Stack
	res   auto.UpResult
	line  harness.Line
	// trace is the last up's timeline.
	trace timeline
}

func newOurs(line harness.Line, extraSecrets map[string]string) (*ours, string) {
	cli, missing := harness.PulumiMissing(".")
	if len(missing) > 0 {
		return nil, "needs " + strings.Join(missing, "; ")
	}
	abs, _ := filepath.Abs(cli)
	state, err := os.MkdirTemp("", "rmqha-bench-state-")
	if err != nil {
		lg.Fatal(err)
	}
	values := harness.TestValues(oursPrefix, line.Image, oursSubnet, oursPortBase)
	values[config.KeyHAProxyImage] = line.HAProxy
	values[config.KeyHAMode] = line.HAMode
	secrets := harness.TestSecrets()
	for k, v := range extraSecrets {
		secrets[k] = v
	}
	s, err := harness.InlineStack(context.Background(), components.Program, abs, "bench-"+line.Name, state, values, secrets)
	if err != nil {
		lg.Fatal(err)
	}
	return &ours{stack: s, line: line}, ""
}

// upUntilReady runs `pulumi up` on an empty stack until the cluster is ready.
func (o *ours) upUntilReady() (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	start := time.Now()
	rec := newRecorder(start)
	res, err := o.stack.Up(ctx, optup.EventStreams(rec.events))
	if err != nil {
		return 0, err
	}
	upAt := time.Since(start)
	o.res = res
	e := o.endpoints()
	if err := ready(ctx, e, linePolicy(o.line).Name); err != nil {
		return 0, err
	}
	readyAt := time.Since(start)
	// The last run's trace is the one reported.
	if o.trace, err = rec.timeline(ctx, o.stack, upAt, readyAt, e.nodes); err != nil {
		return 0, fmt.Errorf("trace: %w", err)
	}
	return readyAt, nil
}

// up runs `pulumi up`, keeping its outputs.
func (o *ours) up() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	res, err := o.stack.Up(ctx)
	o.res = res
	return err
}

func (o *ours) endpoints() endpoints {
	out := func(k string) string { return o.res.Outputs[k].Value.(string) }
	admin := func(u string) string { return plan.WithUser(u, "admin", harness.TestAdminPassword) }
	e := endpoints{
		prefix:     oursPrefix,
		amqp:       admin(out("amqpUrl")),
		amqps:      admin(out("amqpsUrl")),
		management: admin(out("managementUrl")),
		tls:        &tls.Config{RootCAs: caPool([]byte(out("caCertPem"))), ServerName: "localhost"},
	}
	for i, u := range o.res.Outputs["nodeEndpoints"].Value.([]any) {
		names := plan.NodeNames(oursPrefix, i)
		e.nodes = append(e.nodes, names.Container)
		e.members = append(e.members, names.Erlang)
		e.direct = append(e.direct, admin(u.(string)))
	}
	return e
}

// preview times a `pulumi preview` of the up-to-date stack and counts its changes.
func (o *ours) preview() (time.Duration, int) {
	start := time.Now()
	res, err := o.stack.Preview(context.Background(), optpreview.Diff())
	if err != nil {
		lg.Fatalf("preview: %v", err)
	}
	d, n := time.Since(start), 0
	for op, c := range res.ChangeSummary {
		if op != apitype.OpSame {
			n += c
		}
	}
	return d, n
}

func (o *ours) destroy() {
	if _, err := o.stack.Destroy(context.Background(), optdestroy.RunProgram(true)); err != nil {
		lg.Fatalf("destroy: %v", err)
	}
}

func must(err error) {
	if err != nil {
		lg.Fatal(err)
	}
}

// floor boots 3 nodes of the line's image with plain `docker run`, in
// parallel, unclustered, and returns how long until all three accept AMQP:
// what no orchestration can beat on this machine.
func floor(line harness.Line) (time.Duration, error) {
	floorDown()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	start := time.Now()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			port := fmt.Sprintf("127.0.0.1:%d:5672", floorPortBase+i)
			if _, err := harness.Docker(ctx, nil, "run", "-d", "--name", fmt.Sprintf("%s-%d", floorPrefix, i), "-p", port, line.Image); err != nil {
				errs <- err
				return
			}
			for {
				if c, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", floorPortBase+i)); err == nil {
					c.Close()
					errs <- nil
					return
				}
				if ctx.Err() != nil {
					errs <- fmt.Errorf("floor node %d: no AMQP within %s", i, readyTimeout)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func floorDown() {
	for i := range 3 {
		_, _ = harness.Docker(context.Background(), nil, "rm", "-f", "-v", fmt.Sprintf("%s-%d", floorPrefix, i))
	}
}
