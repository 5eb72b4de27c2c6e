package tests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// The Docker daemon restart (issue 16, case 4) runs on a Docker host of its
// own, a container (images/dockerhost) whose daemon the test may restart.

const (
	// daemonBudget bounds the daemon's restart: its shutdown, which waits
	// for every container's stop (up to the longest stop timeout, 90 s for
	// the nodes, plus 5 s), and its start. 4.3 took 86 s here.
	daemonBudget = 2 * time.Minute
	// backlogSize is how many durable messages wait in a queue nobody
	// consumes across the restart.
	backlogSize = 500
)

// daemonRestart runs the line's stack on a Docker host of its own, then
// restarts that host's daemon under load: every container must come back
// by its restart policy, and the cluster must re-form with its durable
// messages.
func daemonRestart(t *testing.T, line harness.Line) faultRow {
	harness.RequireImages(t, harness.DockerHostImage)
	host := startDockerHost(t, "rmqha-it-dockerhost-"+strings.ReplaceAll(line.Name, ".", ""), line.Image, line.HAProxy)
	cfg := line.Config(t, "rmqha-it-daemon", 241, 50700, map[string]string{config.KeyHostIP: host.IP})
	s := startFaultStack(t, line, cfg, nil)

	// Durable messages nobody consumes until the cluster is back.
	backlog := harness.StartPublisher(s.amqp, "faults-daemon-backlog")
	backlog.WaitConfirmed(t, backlogSize, time.Minute)
	backlog.Stop()
	ids := backlog.ConfirmedIDs()
	before := containerStarts(t, cfg.Prefix)

	c := faultCase{name: daemonCaseName, fault: func(t *testing.T, s faultStack) (string, func()) {
		return host.restartDaemon(t), func() {}
	}}
	row := runFault(t, s, c, "faults-daemon")

	restarted := restartedSince(t, before, containerStarts(t, cfg.Prefix))
	got := harness.ConsumeIDs(t, s.amqp, "faults-daemon-backlog", ids, 10*time.Second, 2*time.Minute)
	lost, _ := got.Check(ids)
	if len(lost) > 0 {
		t.Errorf("%d of the %d durable messages that waited across the restart were lost, e.g. %v", len(lost), len(ids), lost[:min(5, len(lost))])
	}
	row.Observed += fmt.Sprintf("; %d of %d containers came back by their restart policy; %d of %d durable messages that waited in a queue across the restart were there after it",
		restarted, len(before), len(ids)-len(lost), len(ids))
	return row
}

// dockerHost is a Docker host in a container whose daemon the test may
// restart; the test's docker CLI points at it (DOCKER_HOST).
type dockerHost struct{ harness.Host }

// startDockerHost starts a Docker host, loads images into it, and points
// the test's docker CLI (DOCKER_HOST) at it until the test ends.
func startDockerHost(t *testing.T, name string, images ...string) dockerHost {
	h := harness.StartHost(t, name, "", "", images...)
	t.Setenv("DOCKER_HOST", h.Endpoint)
	return dockerHost{h}
}

// restartDaemon stops the host's dockerd (SIGTERM, as systemctl restart
// does), which stops every container, and waits for the daemon that the
// host's entrypoint starts again.
func (h dockerHost) restartDaemon(t *testing.T) string {
	if out, err := h.Outer(context.Background(), "exec", h.Name, "pkill", "-TERM", "-x", "dockerd"); err != nil {
		t.Fatalf("pkill dockerd in %s: %v: %s", h.Name, err, out)
	}
	stopped := time.Now()
	// Gone first (its shutdown stops the containers), then back.
	for time.Since(stopped) < daemonBudget && h.Answers() {
		time.Sleep(100 * time.Millisecond)
	}
	gone := time.Since(stopped)
	if !h.AwaitDaemon(daemonBudget) {
		t.Fatalf("the Docker daemon of %s was not back %s after SIGTERM: %s", h.Name, daemonBudget, h.Log())
	}
	return fmt.Sprintf("the daemon (SIGTERM) shut down in %s and answered again %s after the signal",
		gone.Round(100*time.Millisecond), time.Since(stopped).Round(100*time.Millisecond))
}

// containerStarts maps each of a stack's running containers that has a
// restart policy (the nodes and HAProxy, not the one-shot jobs) to its
// start time.
func containerStarts(t *testing.T, prefix string) map[string]string {
	out := map[string]string{}
	ids := strings.Fields(harness.MustDocker(t, "ps", "-q", "--filter", "label="+plan.LabelStack+"="+prefix))
	for _, id := range ids {
		f := strings.Fields(harness.MustDocker(t, "inspect", "-f", "{{.Name}} {{.State.StartedAt}} {{.HostConfig.RestartPolicy.Name}}", id))
		if len(f) == 3 && f[2] != "no" {
			out[strings.TrimPrefix(f[0], "/")] = f[1]
		}
	}
	return out
}

// restartedSince fails the test for each container in before whose start
// time is unchanged in after, and returns how many did restart.
func restartedSince(t *testing.T, before, after map[string]string) int {
	restarted := 0
	for name, started := range before {
		if after[name] == started {
			t.Errorf("%s did not restart with the daemon (started %s)", name, started)
			continue
		}
		restarted++
	}
	return restarted
}

// TestIntegrationE2EDaemonRestart runs the real program, through the
// Automation API, against a Docker host of its own and restarts that
// host's daemon: every container comes back by its restart policy, the
// cluster re-forms, and `pulumi preview` shows no change, before and after
// `pulumi refresh`. Then a scale-up whose new node stalls at its start:
// past a short startTimeoutSeconds, `pulumi up` fails on that node and
// says so; within the default, it waits for it.
func TestIntegrationE2EDaemonRestart(t *testing.T) {
	for _, line := range selectLines(t, "reliability.lines", *reliabilityLines) {
		t.Run(line.Name, func(t *testing.T) { e2eDaemonRestart(t, line) })
	}
}

func e2eDaemonRestart(t *testing.T, line harness.Line) {
	if testing.Short() {
		t.Skip("end-to-end test: runs `pulumi up`; skipped under -short")
	}
	pulumiCLI(t) // skips, naming what is missing, before the host starts
	harness.RequireImages(t, harness.DockerHostImage)
	host := startDockerHost(t, "rmqha-e2e-dockerhost-"+strings.ReplaceAll(line.Name, ".", ""), line.Image, line.HAProxy)
	prefix := "rmqha-e2e-daemon-" + strings.ReplaceAll(line.Name, ".", "")
	s := startE2E(t, "e2e-daemon-"+line.Name, prefix, line, fmt.Sprintf("10.236.%d.0/24", line.Net), 48900+100*line.Net,
		map[string]string{config.KeyHostIP: host.IP}, nil)
	s.up(t)
	nodes := plan.NodeNames(prefix, 0).Container
	before := containerStarts(t, prefix)
	t.Log(host.restartDaemon(t))
	for name := range before {
		harness.WaitHealthy(t, name, harness.StartTimeout)
	}
	harness.WaitRunning(t, nodes, 3, 2*time.Minute)
	restartedSince(t, before, containerStarts(t, prefix))
	s.expectNoChanges(t)
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh after the daemon restart: %v", err)
	}
	s.expectNoChanges(t)

	// A stalled start under `pulumi up`: node 4 is frozen (docker pause)
	// for stallHold each time a container of it is created. Scaled to 5
	// with a start timeout shorter than the stall, up fails on node 4
	// within the timeout, never hangs, and names the container and the
	// cause; the late node joins when it comes. The next up, with the
	// default timeout, waits for node 4's replacement, frozen as well.
	late := plan.NodeNames(prefix, 4).Container
	frozen := freezeEachNew(t, late, stallHold)
	set := func(key, value string) {
		if err := s.SetConfig(context.Background(), key, auto.ConfigValue{Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	const shortTimeout = 45
	set(config.KeyNodes, "5")
	set(config.KeyStartTimeout, strconv.Itoa(shortTimeout))
	start := time.Now()
	_, err := s.Up(context.Background(), optup.ProgressStreams(testWriter{t}))
	took := time.Since(start)
	switch {
	case err == nil:
		t.Errorf("up returned no error %s after it began, with %s frozen for %s and a start timeout of %d s", took.Round(time.Second), late, stallHold, shortTimeout)
	case !strings.Contains(err.Error(), "rabbitmq-node-4") || !strings.Contains(err.Error(), "container failed to be in healthy state"):
		t.Errorf("up failed without naming the container and the cause: %v", err)
	case took > shortTimeout*time.Second+time.Minute:
		t.Errorf("up failed %s after it began: more than a minute past its %d s start timeout", took.Round(time.Second), shortTimeout)
	default:
		t.Logf("up failed %s after it began, on a start timeout of %d s: %s", took.Round(time.Second), shortTimeout, lastLine(err.Error(), "container failed"))
	}
	if n := frozen(); n != 1 {
		t.Fatalf("%s was frozen %d times, want 1", late, n)
	}
	harness.WaitRunning(t, nodes, 5, 2*time.Minute)
	t.Logf("%s joined %s after up failed on it", late, time.Since(start.Add(took)).Round(time.Second))
	// The next up, with the default timeout, replaces the container that
	// failed (the provider keeps a failed create as one to replace); the
	// new one is frozen too, and up waits for it.
	if err := s.RemoveConfig(context.Background(), config.KeyStartTimeout); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	s.up(t)
	took = time.Since(start)
	if n := frozen(); n != 2 {
		t.Fatalf("%s was frozen %d times, want 2: the up after the failure did not replace it", late, n)
	}
	if took < stallHold {
		t.Errorf("up returned %s after it began, before the stalled %s could be healthy (stalled %s)", took.Round(time.Second), late, stallHold)
	}
	harness.WaitRunning(t, nodes, 5, 2*time.Minute)
	s.expectNoChanges(t)
	t.Logf("up with %s stalled for %s returned after %s (the nodes' start timeout: %d s)", late, stallHold, took.Round(time.Second), config.DefaultStartTimeout)
	if _, err := s.Destroy(context.Background(), optdestroy.RunProgram(true), optdestroy.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("destroy: %v", err)
	}
}

// freezeEachNew pauses each new container named name for hold, the moment
// it appears, until the test ends. It returns what says how many it froze,
// once none is frozen.
func freezeEachNew(t *testing.T, name string, hold time.Duration) func() int {
	var (
		mu      sync.Mutex
		frozen  int
		holding bool
	)
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		seen := ""
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			id, _ := harness.Docker(context.Background(), nil, "ps", "-q", "--filter", "name=^/"+name+"$")
			if id == "" || id == seen {
				continue
			}
			seen = id
			mu.Lock()
			holding = true
			mu.Unlock()
			_, _ = harness.Docker(context.Background(), nil, "pause", id)
			time.Sleep(hold)
			_, _ = harness.Docker(context.Background(), nil, "unpause", id)
			mu.Lock()
			holding = false
			frozen++
			mu.Unlock()
		}
	}()
	return func() int {
		for {
			mu.Lock()
			h, n := holding, frozen
			mu.Unlock()
			if !h {
				return n
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// lastLine is the last line of text that contains substr, or text.
func lastLine(text, substr string) string {
	lines := strings.Split(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return strings.TrimSpace(lines[i])
		}
	}
	return text
}
