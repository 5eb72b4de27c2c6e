package harness

import (
	"context"
	"sync"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Span is the time one node was out of service: from the moment its old
// container stopped being healthy to the moment its new one was healthy.
type Span struct {
	Node     string
	From, To time.Time
	Down     time.Duration
}

// NodeWatch samples the node containers through the Docker API.
type NodeWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	// MinRunning and MinHealthy are the fewest nodes seen running and
	// healthy at one look.
	MinRunning, MinHealthy int
	spans                  []Span
}

// WatchNodes looks at nodes 0..n-1 of a prefix every 100 ms until Stop.
func WatchNodes(docker *dockerapi.Docker, prefix string, n int) *NodeWatch {
	w := &NodeWatch{done: make(chan struct{}), MinRunning: n, MinHealthy: n}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		first := map[string]string{}     // the container ID at the start
		downAt := map[string]time.Time{} // when the original stopped being healthy
		wasHealthy := map[string]bool{}
		for {
			running, healthy := 0, 0
			for i := 0; i < n; i++ {
				name := plan.NodeNames(prefix, i).Container
				c, err := docker.Inspect(context.Background(), name)
				if err != nil {
					continue
				}
				if _, ok := first[name]; !ok {
					first[name] = c.ID
				}
				if c.Exists && c.Running {
					running++
				}
				if c.Healthy() {
					healthy++
				}
				_, isDown := downAt[name]
				switch {
				case !isDown && ((wasHealthy[name] && !c.Healthy()) || c.ID != first[name]):
					// Out of service: a healthy original turned unhealthy
					// (drained), or was replaced. A node still booting when
					// the watch starts is not counted as taken down.
					downAt[name] = time.Now()
				case isDown && c.Healthy() && c.ID != first[name] && !w.replaced(name):
					w.spans = append(w.spans, Span{Node: name, From: downAt[name], To: time.Now(), Down: time.Since(downAt[name])})
				}
				wasHealthy[name] = wasHealthy[name] || c.Healthy()
			}
			w.MinRunning = min(w.MinRunning, running)
			w.MinHealthy = min(w.MinHealthy, healthy)
			select {
			case <-w.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *NodeWatch) replaced(name string) bool {
	for _, s := range w.spans {
		if s.Node == name {
			return true
		}
	}
	return false
}

// Stop stops watching and returns the spans, in the order they ended.
func (w *NodeWatch) Stop() []Span {
	close(w.done)
	w.wg.Wait()
	return w.spans
}
