package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// restartOrder is a way a user's nodes get restarted: by `docker restart`,
// a host reboot that restarts containers in turn, restart policies.
type restartOrder struct {
	name string
	// sequence orders the nodes, given the queue's leader.
	sequence func(leader, n int) []int
	// together restarts them all at once instead of one after another.
	together bool
}

var restartOrders = []restartOrder{
	{"one-at-a-time", func(_, n int) []int { return upTo(n) }, false},
	{"all-at-once", func(_, n int) []int { return upTo(n) }, true},
	{"reverse", func(_, n int) []int { s := upTo(n); slices.Reverse(s); return s }, false},
	{"leader-last", func(leader, n int) []int {
		var s []int
		for _, i := range upTo(n) {
			if i != leader {
				s = append(s, i)
			}
		}
		return append(s, leader)
	}, false},
}

func upTo(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// restartRuns is how often each order runs per line: the loss it guards
// against is a race. RESTART_RUNS overrides it.
func restartRuns(t *testing.T) int {
	if s := os.Getenv("RESTART_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("RESTART_RUNS=%q: want a whole number of at least 1", s)
		}
		return n
	}
	return 2
}

// TestIntegrationRestartOrders restarts every node of a running cluster in
// each order of restartOrders, several times, on every supported line, and
// checks by message ID that no confirmed, persistent message on a durable
// queue is lost: the classic mirrored queue of 3.10 (ha-all with the
// stack's policy) and the quorum queues of 4.x alike. The declaring node
// rotates from run to run, and with it the queue's leader.
func TestIntegrationRestartOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ containers; skipped under -short")
	}
	parallelTest(t)
	runs := restartRuns(t)
	const messages = 500
	for _, line := range harness.Lines {
		t.Run(line.Name, func(t *testing.T) {
			parallelLine(t)
			harness.RequireImages(t, line.Image)
			cfg := line.Config(t, "rmqha-it-restart", 232, 47700, nil)
			harness.RemoveStack(t, cfg.Prefix)
			t.Cleanup(func() { harness.RemoveStack(t, cfg.Prefix) })
			startCluster(t, cfg, line.Image)
			harness.WaitRunning(t, plan.NodeNames(cfg.Prefix, 0).Container, cfg.Nodes, time.Minute)
			policy := plan.PolicyFor(cfg)
			harness.MustDocker(t, "exec", plan.NodeNames(cfg.Prefix, 0).Container, "rabbitmqctl", "-q", "set_policy", "--apply-to", policy.ApplyTo,
				policy.Name, policy.Pattern, policy.DefinitionJSON())
			endpoints := plan.EndpointsOf(cfg)
			direct := func(i int) string { return plan.WithUser(endpoints.Nodes[i], cfg.AdminUser, harness.TestAdminPassword) }

			var report []string
			for _, order := range restartOrders {
				for run := range runs {
					declarer := run % cfg.Nodes
					queue := fmt.Sprintf("restart-%s-%d", order.name, run)
					conn := harness.Dial(t, direct(declarer), nil, time.Minute)
					confirmed := harness.PublishIDs(t, conn, queue, queue, messages, nil)
					conn.Close()
					if len(confirmed) != messages {
						t.Fatalf("%s: %d of %d confirmed before the restart", queue, len(confirmed), messages)
					}
					leader := queueLeader(t, cfg, queue)
					sequence := order.sequence(leader, cfg.Nodes)

					start := time.Now()
					restartNodes(t, cfg, sequence, order.together)
					restarted := time.Since(start)
					for i := range cfg.Nodes {
						harness.WaitHealthy(t, plan.NodeNames(cfg.Prefix, i).Container, harness.StartTimeout)
					}
					harness.WaitRunning(t, plan.NodeNames(cfg.Prefix, 0).Container, cfg.Nodes, 2*time.Minute)
					healthy := time.Since(start)

					consumer := (declarer + 1) % cfg.Nodes
					got := harness.ConsumeIDs(t, direct(consumer), queue, confirmed, 15*time.Second, 3*time.Minute)
					served := time.Since(start)
					lost, dups := got.Check(confirmed)
					row := fmt.Sprintf("%-13s run %d: leader node-%d, order %v: %d confirmed, %d consumed, %d lost, %d duplicates; restart %.1fs, all healthy %.1fs, drained %.1fs",
						order.name, run+1, leader, sequence, len(confirmed), len(got), len(lost), dups,
						restarted.Seconds(), healthy.Seconds(), served.Seconds())
					t.Log(row)
					report = append(report, row)
					if len(lost) > 0 {
						t.Errorf("%s: %d confirmed messages lost, first %v\nleader's log:\n%s", queue, len(lost), lost[:min(5, len(lost))],
							harness.MustDocker(t, "logs", "--tail", "40", plan.NodeNames(cfg.Prefix, leader).Container))
					}
					deleteQueue(t, direct(consumer), queue)
				}
			}
			t.Logf("%s: %d orders x %d runs, %d messages each:\n%s", line.Name, len(restartOrders), runs, messages, strings.Join(report, "\n"))
		})
	}
}

// restartNodes restarts the nodes in sequence with `docker restart`: in one
// command, one after another with no wait (as a user would type it), or
// each in its own command at once.
func restartNodes(t *testing.T, cfg *config.Config, sequence []int, together bool) {
	t.Helper()
	names := make([]string, len(sequence))
	for k, i := range sequence {
		names[k] = plan.NodeNames(cfg.Prefix, i).Container
	}
	if !together {
		harness.MustDocker(t, append([]string{"restart"}, names...)...)
		return
	}
	eachAtOnce(t, "restart", names)
}

// eachAtOnce runs `docker VERB NAME` for every name, each in its own
// command, all at once: as a host's reboot or a Docker daemon's restart
// stops or starts them.
func eachAtOnce(t *testing.T, verb string, names []string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for k, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, errs[k] = harness.Docker(ctx, nil, verb, name)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// queueLeader returns the index of the node that leads a queue of vhost
// "/", as the management API of node 0 reports it (the classic queue's
// master, the quorum queue's leader).
func queueLeader(t *testing.T, cfg *config.Config, queue string) int {
	t.Helper()
	u := fmt.Sprintf("http://%s:15672/api/queues/%%2F/%s", cfg.NodeIPs[0], url.PathEscape(queue))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var q struct {
			Node string `json:"node"`
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.SetBasicAuth(cfg.AdminUser, harness.TestAdminPassword)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&q)
			resp.Body.Close()
		}
		for i := range cfg.Nodes {
			if q.Node == plan.NodeNames(cfg.Prefix, i).Erlang {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader of %s: node %q, err %v", queue, q.Node, err)
		}
		time.Sleep(time.Second)
	}
}

func deleteQueue(t *testing.T, rawURL, queue string) {
	t.Helper()
	conn := harness.Dial(t, rawURL, nil, time.Minute)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
		t.Fatalf("delete %s: %v", queue, err)
	}
}
