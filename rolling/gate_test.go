package rolling

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
)

// world is a fake Docker: containers by name, and the drains run in them.
type world struct {
	mu         sync.Mutex
	containers map[string]dockerapi.Container
	drains     []string
	drainCode  int
	serial     int
	// minHealthy is the fewest healthy configured nodes seen at any change.
	minHealthy int
	nodes      []string
	// lastReplaced are the nodes whose AfterCreate reported the last
	// replacement of the run.
	lastReplaced []string
}

func newWorld(nodes ...string) *world {
	w := &world{containers: map[string]dockerapi.Container{}, nodes: nodes, minHealthy: len(nodes)}
	for _, n := range nodes {
		w.containers[n] = w.fresh(true)
	}
	return w
}

func (w *world) fresh(healthy bool) dockerapi.Container {
	w.serial++
	c := dockerapi.Container{Exists: true, ID: fmt.Sprint("id-", w.serial), Running: true, Health: "starting"}
	if healthy {
		c.Health = "healthy"
	}
	return c
}

func (w *world) Inspect(_ context.Context, name string) (dockerapi.Container, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.containers[name], nil
}

func (w *world) Exec(_ context.Context, name string, cmd []string) (int, string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drains = append(w.drains, name)
	if w.drainCode != 0 {
		return w.drainCode, "Error: quorum queue q would lose its quorum", nil
	}
	c := w.containers[name]
	c.Health = "unhealthy" // drained: the AMQP listener is closed
	w.set(name, c)
	return 0, "", nil
}

// set changes a container and keeps count of the healthy nodes.
func (w *world) set(name string, c dockerapi.Container) {
	w.containers[name] = c
	healthy := 0
	for _, n := range w.nodes {
		if w.containers[n].Healthy() {
			healthy++
		}
	}
	w.minHealthy = min(w.minHealthy, healthy)
}

// setState gives a node's container a run state and a health status.
func (w *world) setState(name string, running bool, health string) {
	c := w.containers[name]
	c.Running, c.Health = running, health
	w.set(name, c)
}

// replace is what Pulumi does to one node in a delete-before-create
// replacement, hooks included: the new container takes boot to be healthy.
func (w *world) replace(t *testing.T, g *Gate, name string, boot time.Duration) error {
	if err := g.BeforeDelete(context.Background(), name); err != nil {
		return err
	}
	w.mu.Lock()
	w.set(name, dockerapi.Container{})
	w.mu.Unlock()
	g.AfterDelete(name)
	g.BeforeCreate(name)
	w.mu.Lock()
	c := w.fresh(false)
	w.set(name, c)
	w.mu.Unlock()
	time.Sleep(boot)
	w.mu.Lock()
	c.Health = "healthy"
	w.set(name, c)
	w.mu.Unlock()
	if g.AfterCreate(name) {
		w.mu.Lock()
		w.lastReplaced = append(w.lastReplaced, name)
		w.mu.Unlock()
	}
	return nil
}

func settings(nodes ...string) Settings {
	return Settings{Nodes: nodes, Drain: []string{"drain"}, Timeout: 5 * time.Second, Grace: 300 * time.Millisecond, Poll: 5 * time.Millisecond}
}

func TestReplacesOneNodeAtATime(t *testing.T) {
	nodes := []string{"n0", "n1", "n2"}
	w := newWorld(nodes...)
	var logs []string
	var logMu sync.Mutex
	s := settings(nodes...)
	s.Log = func(m string) { logMu.Lock(); logs = append(logs, m); logMu.Unlock() }
	g := New(w, s)

	// Pulumi replaces independent resources in parallel.
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.replace(t, g, n, 50*time.Millisecond)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if w.minHealthy != len(nodes)-1 {
		t.Errorf("at one point only %d of %d nodes were healthy", w.minHealthy, len(nodes))
	}
	slices.Sort(w.drains)
	if !slices.Equal(w.drains, nodes) {
		t.Errorf("drained %v, want each node once", w.drains)
	}
	// The leaders settle once, after the last node is back: a settle in
	// between would hold back the next replacement's create.
	if len(w.lastReplaced) != 1 {
		t.Errorf("AfterCreate reported the last replacement for %v, want exactly one node", w.lastReplaced)
	}
	if joined := strings.Join(logs, "\n"); !strings.Contains(joined, "drained in") {
		t.Errorf("no drain logged:\n%s", joined)
	}
}

func TestRemovedNodesAreNotWaitedFor(t *testing.T) {
	// A scale-down from 3 to 1: n1 and n2 are deleted and not re-created.
	w := newWorld("n0", "n1", "n2")
	g := New(w, settings("n0"))
	start := time.Now()
	for _, n := range []string{"n1", "n2"} {
		if err := g.BeforeDelete(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		w.set(n, dockerapi.Container{})
		w.mu.Unlock()
		g.AfterDelete(n)
	}
	if !slices.Equal(w.drains, []string{"n1", "n2"}) {
		t.Errorf("drained %v", w.drains)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
}

func TestAStoppedNodeThatIsNotRecreatedIsLetGoAfterTheGrace(t *testing.T) {
	// A destroy that HAProxy's hook did not announce: n0 goes, nothing
	// re-creates it, and n1 may go after the grace.
	w := newWorld("n0", "n1")
	s := settings("n0", "n1")
	g := New(w, s)
	if err := g.BeforeDelete(context.Background(), "n0"); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.set("n0", dockerapi.Container{})
	w.mu.Unlock()
	g.AfterDelete("n0")
	start := time.Now()
	if err := g.BeforeDelete(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < s.Grace || d > s.Grace+time.Second {
		t.Errorf("n1 went after %s, want the grace (%s)", d, s.Grace)
	}
}

func TestRefusesWhileANodeIsMissing(t *testing.T) {
	w := newWorld("n0", "n1", "n2")
	w.set("n1", dockerapi.Container{}) // removed by hand, and Pulumi does not know
	g := New(w, settings("n0", "n1", "n2"))
	err := g.BeforeDelete(context.Background(), "n0")
	if err == nil || !strings.Contains(err.Error(), "node n1 is missing, so n0 must not be stopped") ||
		!strings.Contains(err.Error(), "pulumi refresh") {
		t.Fatalf("err = %v", err)
	}
	if len(w.drains) != 0 {
		t.Errorf("drained %v", w.drains)
	}
}

func TestRefusesWhileANodeIsUnhealthy(t *testing.T) {
	w := newWorld("n0", "n1", "n2")
	w.setState("n2", true, "unhealthy")
	s := settings("n0", "n1", "n2")
	s.Timeout = 200 * time.Millisecond
	err := New(w, s).BeforeDelete(context.Background(), "n0")
	if err == nil || !strings.Contains(err.Error(), "n2 is still not healthy after 200ms (last seen: running, unhealthy), so n0 is left running") {
		t.Fatalf("err = %v", err)
	}
}

func TestAFailedDrainStopsTheReplacement(t *testing.T) {
	w := newWorld("n0", "n1", "n2")
	w.drainCode = 1
	err := New(w, settings("n0", "n1", "n2")).BeforeDelete(context.Background(), "n1")
	if err == nil || !strings.Contains(err.Error(), "drain n1 exited with 1; the node is left running") ||
		!strings.Contains(err.Error(), "would lose its quorum") {
		t.Fatalf("err = %v", err)
	}
}

func TestAnUnhealthyNodeIsStoppedWithoutADrain(t *testing.T) {
	w := newWorld("n0", "n1", "n2")
	w.setState("n1", false, "")
	if err := New(w, settings("n0", "n1", "n2")).BeforeDelete(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	if len(w.drains) != 0 {
		t.Errorf("drained %v", w.drains)
	}
}

func TestUncheckedLetsEveryNodeGoAtOnce(t *testing.T) {
	w := newWorld("n0", "n1", "n2")
	w.setState("n2", true, "unhealthy")
	g := New(w, settings("n0", "n1", "n2"))
	g.Unchecked("destroy")
	for _, n := range []string{"n0", "n1", "n2"} {
		if err := g.BeforeDelete(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.drains) != 0 {
		t.Errorf("drained %v", w.drains)
	}
}

// TestNoWaitWhenNoOtherNodeRuns: after a first up that failed before any
// node started (a host port taken), every node container exists, created
// but never started. Waiting for the others would only time out; there is
// no service to keep up, so every node goes at once.
func TestNoWaitWhenNoOtherNodeRuns(t *testing.T) {
	w := newWorld("n0", "n1", "n2")
	for _, n := range []string{"n0", "n1", "n2"} {
		w.setState(n, false, "")
	}
	s := settings("n0", "n1", "n2")
	s.Timeout = time.Second
	g := New(w, s)
	for _, n := range []string{"n0", "n1", "n2"} {
		start := time.Now()
		if err := g.BeforeDelete(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s waited %s", n, d)
		}
	}
	if len(w.drains) != 0 {
		t.Errorf("drained %v", w.drains)
	}
	// One running node is enough to keep the gate.
	w2 := newWorld("n0", "n1", "n2")
	w2.setState("n0", false, "")
	w2.setState("n1", true, "unhealthy")
	s.Timeout = 200 * time.Millisecond
	if err := New(w2, s).BeforeDelete(context.Background(), "n2"); err == nil {
		t.Error("a running but unhealthy node was not waited for")
	}
}
