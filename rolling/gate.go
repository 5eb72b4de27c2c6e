// Package rolling replaces RabbitMQ node containers one at a time.
//
// Node containers have fixed names, IPs and volumes, so Pulumi replaces them
// delete-before-create, and it replaces independent resources in parallel:
// left alone, a new image or a changed upload would stop every node at once.
// The Gate is bound to the node containers as Pulumi resource hooks. Before
// a node is deleted it takes the gate's lock, waits until every other node is
// running and healthy (a replaced node only once its replacement is), and
// drains the node: the same steps as the RabbitMQ Kubernetes operator's
// preStop hook (see render's cluster.sh, mode drain). So the cluster never has
// fewer than N-1 nodes running, and the next node is not touched until the
// last one has rejoined.
package rolling

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
)

// Engine is what the gate needs of Docker.
type Engine interface {
	// Inspect reads a container by name; a missing one has Exists false.
	Inspect(ctx context.Context, name string) (dockerapi.Container, error)
	// Exec runs cmd in a container and returns its exit code and output.
	Exec(ctx context.Context, name string, cmd []string) (int, string, error)
}

// Settings tune a gate.
type Settings struct {
	// Nodes are the configured node containers' names, in order.
	Nodes []string
	// Drain is the command that takes a node out of service.
	Drain []string
	// Timeout bounds the wait for the other nodes, and the drain.
	Timeout time.Duration
	// Grace is how long a node the gate stopped may stay absent before the
	// gate decides it is not coming back in this update (a scale-down or a
	// destroy) rather than being re-created.
	Grace time.Duration
	// Poll is the interval between looks at Docker.
	Poll time.Duration
	// Log reports each decision.
	Log func(string)
	// QuorumGroupSize is the member count quorum queues are kept at; 0
	// (mirrored queues) leaves membership alone.
	QuorumGroupSize int
	// VHosts are the configured vhosts, whose quorum queues' membership
	// follows a scale change.
	VHosts []string
}

// Gate orders the deletion of node containers.
type Gate struct {
	engine Engine
	s      Settings

	// turn is held by the node being taken down, from the wait for the
	// others to the end of its drain.
	turn sync.Mutex

	mu sync.Mutex
	// stopped holds the container ID of each node the gate let go down, so
	// the old container is never mistaken for its replacement.
	stopped map[string]string
	// deleted is when each node the gate let go was deleted; creating says a
	// create of that node has started since.
	deleted  map[string]time.Time
	creating map[string]bool
	// created holds the nodes the gate let go whose replacement is up.
	created map[string]bool
	// pending counts the deletions inside BeforeDelete: waiting for their
	// turn, or taking it.
	pending int
	// unchecked is set when every node goes down at once on purpose: a
	// destroy, or a change that no two nodes survive together.
	unchecked string
}

// New returns a gate.
func New(engine Engine, s Settings) *Gate {
	if s.Poll == 0 {
		s.Poll = 250 * time.Millisecond
	}
	if s.Log == nil {
		s.Log = func(string) {}
	}
	return &Gate{
		engine: engine, s: s,
		stopped: map[string]string{}, deleted: map[string]time.Time{}, creating: map[string]bool{}, created: map[string]bool{},
	}
}

// Unchecked lifts the gate for the rest of this run: every later delete goes
// ahead at once, undrained. why is logged.
func (g *Gate) Unchecked(why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unchecked == "" {
		g.unchecked = why
		g.s.Log("nodes are no longer replaced one at a time: " + why)
	}
}

// BeforeDelete runs before a node container is deleted. It returns once the
// node may go: every other configured node is healthy and this node has been
// drained. An error stops the deletion, and so the update.
func (g *Gate) BeforeDelete(ctx context.Context, name string) error {
	if g.isUnchecked() {
		return nil
	}
	g.mu.Lock()
	g.pending++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.pending--
		g.mu.Unlock()
	}()
	g.turn.Lock()
	defer g.turn.Unlock()
	if g.isUnchecked() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.s.Timeout)
	defer cancel()
	if down, err := g.othersDown(ctx, name); err != nil {
		return err
	} else if down {
		// Nothing serves, so there is no availability to keep: a first up
		// that failed before any node started (a port taken), or a
		// cluster that is down. Waiting would only time out.
		g.Unchecked("no other node is running, so there is no service to keep up while nodes are replaced")
		return nil
	}
	start := time.Now()
	for _, other := range g.s.Nodes {
		if other == name {
			continue
		}
		if err := g.awaitNode(ctx, other, name); err != nil {
			return err
		}
	}
	self, err := g.engine.Inspect(ctx, name)
	if err != nil {
		return fmt.Errorf("rolling replacement: inspect %s: %w", name, err)
	}
	if waited := time.Since(start).Round(100 * time.Millisecond); waited > 0 {
		g.s.Log(fmt.Sprintf("%s: the other nodes are healthy (waited %s)", name, waited))
	}
	if g.s.QuorumGroupSize > 0 && len(g.s.Nodes) > 0 && !slices.Contains(g.s.Nodes, name) {
		// A scale-down: the node leaves for good. Every configured node
		// was just found healthy.
		if err := g.handOverMembers(ctx, name, g.s.Nodes[0]); err != nil {
			return fmt.Errorf("rolling replacement: %s leaves the cluster, but its quorum queue members could not be moved, so it is left running: %w", name, err)
		}
	}
	switch {
	case !self.Healthy():
		g.s.Log(name + ": not healthy, so not drained; stopping it")
	case slices.Equal(g.s.Nodes, []string{name}):
		g.s.Log(name + ": the only node; stopping it without a drain")
	default:
		t := time.Now()
		code, out, err := g.engine.Exec(ctx, name, g.s.Drain)
		if err != nil {
			return fmt.Errorf("rolling replacement: drain %s: %w", name, err)
		}
		if code != 0 {
			return fmt.Errorf("rolling replacement: drain %s exited with %d; the node is left running:\n%s",
				name, code, strings.TrimSpace(out))
		}
		g.s.Log(fmt.Sprintf("%s: drained in %s", name, time.Since(t).Round(100*time.Millisecond)))
	}
	g.mu.Lock()
	g.stopped[name] = self.ID
	delete(g.creating, name)
	g.mu.Unlock()
	return nil
}

// othersDown reports whether no configured node but name is running, and
// none is one the gate itself stopped in this run (those are on their way
// back, and are waited for). A single-node cluster has no others: it is
// not "down" by this rule.
func (g *Gate) othersDown(ctx context.Context, name string) (bool, error) {
	others := 0
	for _, other := range g.s.Nodes {
		if other == name {
			continue
		}
		others++
		g.mu.Lock()
		_, ours := g.stopped[other]
		g.mu.Unlock()
		if ours {
			return false, nil
		}
		c, err := g.engine.Inspect(ctx, other)
		if err != nil {
			return false, fmt.Errorf("rolling replacement: inspect %s: %w", other, err)
		}
		if c.Exists && c.Running {
			return false, nil
		}
	}
	return others > 0, nil
}

// AfterDelete runs after a node container is deleted.
func (g *Gate) AfterDelete(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deleted[name] = time.Now()
}

// AfterCreate runs after a node container is created (and healthy), and
// reports whether it was the last replacement of this run: the gate let it
// go, and no other node the gate let go, nor any deletion waiting for its
// turn, is still to come back. Work that follows a whole rolling replacement
// (the leaders' rebalance) runs then, and never in between: Pulumi starts
// the next replacement's create only once this hook has returned, and the
// gate takes a node missing for longer than Grace as removed.
func (g *Gate) AfterCreate(name string) (last bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.stopped[name]; !ok {
		return false
	}
	g.created[name] = true
	if g.pending > 0 {
		return false
	}
	for n := range g.stopped {
		if slices.Contains(g.s.Nodes, n) && !g.created[n] {
			return false
		}
	}
	return true
}

// Idle reports whether no deletion is inside BeforeDelete.
func (g *Gate) Idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending == 0
}

// Leaving reports whether name is not a configured node: a scale-down's.
func (g *Gate) Leaving(name string) bool { return !slices.Contains(g.s.Nodes, name) }

// BeforeCreate runs before a node container is created.
func (g *Gate) BeforeCreate(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.creating[name] = true
}

func (g *Gate) isUnchecked() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.unchecked != ""
}

// awaitNode waits until node is healthy, or is known not to be coming back.
func (g *Gate) awaitNode(ctx context.Context, node, deleting string) error {
	var last dockerapi.Container
	var absentSince time.Time
	for {
		c, err := g.engine.Inspect(ctx, node)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("rolling replacement: inspect %s: %w", node, err)
		}
		if err == nil {
			last = c
			g.mu.Lock()
			stoppedID, wasStopped := g.stopped[node]
			deletedAt, wasDeleted := g.deleted[node]
			creating := g.creating[node]
			unchecked := g.unchecked != ""
			g.mu.Unlock()
			switch {
			case unchecked:
				return nil
			case c.Exists && c.ID == stoppedID:
				// The old container, still stopping.
			case c.Healthy():
				return nil
			case !c.Exists && wasDeleted && !creating && time.Since(deletedAt) > g.s.Grace:
				// The gate let it go, and nothing re-creates it: a
				// scale-down or a destroy. It is not a node to wait for.
				return nil
			case !c.Exists && !wasStopped:
				// Missing, and not by the gate's doing: removed by hand.
				// Pulumi re-creates it only if it knows it is gone.
				if absentSince.IsZero() {
					absentSince = time.Now()
				} else if time.Since(absentSince) > g.s.Grace {
					return fmt.Errorf("rolling replacement: node %s is missing, so %s must not be stopped "+
						"(it would leave fewer than N-1 nodes); run `pulumi refresh` so Pulumi re-creates it, then `pulumi up`",
						node, deleting)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rolling replacement: %s is still not healthy after %s (last seen: %s), so %s is left running",
				node, g.s.Timeout, describe(last), deleting)
		case <-time.After(g.s.Poll):
		}
	}
}

func describe(c dockerapi.Container) string {
	if !c.Exists {
		return "no such container"
	}
	state := "stopped"
	if c.Running {
		state = "running"
	}
	if c.Health != "" {
		state += ", " + c.Health
	}
	return state
}
