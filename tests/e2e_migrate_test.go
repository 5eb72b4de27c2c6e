package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// TestIntegrationE2EMigrate is issue 17's proof, end to end: an old 3.10
// mirrored stack (from the stack's own specs) holds 10,000 persistent
// messages in 3 queues while a producer publishes to it with confirms; a
// 4.3 stack comes up through `pulumi up` with migrateFrom, and the
// producer moves to it midway. While the shovels run, an old node is
// killed and restarted. Every confirmed message is consumed on the new
// side, by ID; the old queues end empty, the new ones are quorum queues,
// an old user logs in with its old password, and `pulumi preview` shows no
// change. Then migrateFrom is removed (the cut-over's last step) and the
// shovels go.
func TestIntegrationE2EMigrate(t *testing.T) {
	i := lineIndex("4.3-quorum")
	if i < 0 {
		t.Fatalf("no 4.3-quorum line to move to (%s)", lineNames())
	}
	line43 := harness.Lines[i]
	oldLine := harness.Lines[0]
	oldCfg := oldLine.Config(t, "rmqha-e2e-migrate-old", 243, 51400, nil)
	oldHAProxy := harness.Plan(t, oldCfg).HAProxy.Spec.Name
	from, _ := json.Marshal(config.MigrateFrom{
		ManagementURL: plan.EndpointsOf(oldCfg).Management, AMQPURL: "amqp://" + oldHAProxy + ":5672",
		User: oldCfg.AdminUser, Password: harness.TestAdminPassword, VHosts: []string{"/"}, Network: oldCfg.Prefix,
	})
	prefix := "rmqha-e2e-migrate"
	s := startE2E(t, "e2e-migrate", prefix, line43, "10.244.2.0/24", 51600, nil, map[string]string{config.KeyMigrateFrom: string(from)})

	harness.RequireImages(t, oldLine.Image, oldLine.HAProxy)
	harness.RemoveStack(t, oldCfg.Prefix)
	t.Cleanup(func() { harness.RemoveStack(t, oldCfg.Prefix) })
	old := startFaultStack(t, oldLine, oldCfg, nil)
	// An application user of the old cluster, who must log in to the new
	// one with the same password.
	harness.MustDocker(t, "exec", old.node(0), "rabbitmqctl", "-q", "add_user", "legacy-app", movedPassword)
	harness.MustDocker(t, "exec", old.node(0), "rabbitmqctl", "-q", "set_permissions", "legacy-app", ".*", ".*", ".*")

	// 10,000 persistent messages in 3 queues, and a producer still at work.
	queues := []string{"orders", "invoices", "audit"}
	ids := map[string][]string{}
	conn := harness.Dial(t, old.amqp, nil, 30*time.Second)
	for i, q := range queues {
		n := 3333
		if i == 0 {
			n = 3334
		}
		ids[q] = harness.PublishIDs(t, conn, q, "old-"+q, n, nil)
	}
	conn.Close()
	producer := harness.StartPacedPublisher(old.amqp, "orders", 5*time.Millisecond)
	producer.WaitConfirmed(t, 100, 30*time.Second)

	// While the shovels run, the old cluster loses a node and gets it back:
	// killed the moment the move has begun, when a queue nobody else reads
	// (invoices) holds fewer ready messages than were published to it.
	var killed sync.WaitGroup
	killed.Add(1)
	published := len(ids["invoices"])
	go func() {
		defer killed.Done()
		watch, err := amqp.Dial(old.amqp)
		if err != nil {
			t.Errorf("the kill's watch: %v", err)
			return
		}
		defer watch.Close()
		ready := -1
		for start := time.Now(); time.Since(start) < 5*time.Minute; time.Sleep(20 * time.Millisecond) {
			if n, err := harness.ReadyMessages(watch, "invoices"); err == nil && n < published {
				ready = n
				break
			}
		}
		_, _ = harness.Docker(context.Background(), nil, "kill", old.node(1))
		t.Logf("killed the old %s while the shovels ran: invoices had %d of its %d messages ready", old.node(1), ready, published)
		time.Sleep(10 * time.Second)
		_, _ = harness.Docker(context.Background(), nil, "start", old.node(1))
	}()

	start := time.Now()
	s.up(t)
	t.Logf("up with migrateFrom took %s", time.Since(start).Round(time.Second))
	newStack := plan.WithUser(fmt.Sprintf("amqp://127.0.0.1:%d/", 51600), "admin", harness.TestAdminPassword)

	// The producer moves to the new cluster midway.
	oldConfirmed := func() []string { producer.Stop(); return producer.ConfirmedIDs() }()
	ids["orders"] = append(ids["orders"], oldConfirmed...)
	moved := harness.StartPacedPublisher(newStack, "orders", 5*time.Millisecond)
	moved.WaitConfirmed(t, 100, 30*time.Second)
	moved.Stop()
	ids["orders"] = append(ids["orders"], moved.ConfirmedIDs()...)
	killed.Wait()

	total, dups := 0, 0
	for _, q := range queues {
		got := harness.ConsumeIDs(t, newStack, q, ids[q], 30*time.Second, 5*time.Minute)
		lost, d := got.Check(ids[q])
		total += len(ids[q])
		dups += d
		t.Logf("%s: %d of %d confirmed messages consumed on the new side, %d duplicates", q, len(ids[q])-len(lost), len(ids[q]), d)
		if len(lost) > 0 {
			t.Errorf("%s: %d confirmed messages lost, e.g. %v", q, len(lost), lost[:min(5, len(lost))])
		}
	}
	t.Logf("moved and consumed %d confirmed messages in %s from the start of up; %d duplicates (at-least-once shovels)", total, time.Since(start).Round(time.Second), dups)

	// The old side empties. Not at once: a killed old node's mirrored queue
	// requeues what its shovel had in flight, copies the new side already
	// has (the duplicates above), and the shovel moves them again.
	drained := time.Now()
	left := oldLeft(t, old.node(0), queues)
	for ; left != "" && time.Since(drained) < 2*time.Minute; left = oldLeft(t, old.node(0), queues) {
		time.Sleep(time.Second)
	}
	if left != "" {
		t.Errorf("the old side is not empty 2 minutes after every confirmed message arrived: %s", left)
	} else {
		t.Logf("the old side was empty %s after every confirmed message arrived", time.Since(drained).Round(100*time.Millisecond))
	}
	typ := harness.MustDocker(t, "exec", plan.NodeNames(prefix, 0).Container, "rabbitmqctl", "-q", "list_queues", "name", "type", "--no-table-headers")
	for _, q := range queues {
		if !slices.Contains(strings.Split(typ, "\n"), q+"\tquorum") {
			t.Errorf("the new %s is not a quorum queue:\n%s", q, typ)
		}
	}
	if out, err := harness.Docker(context.Background(), nil, "exec", plan.NodeNames(prefix, 1).Container, "rabbitmqctl", "-q", "authenticate_user", "legacy-app", movedPassword); err != nil {
		t.Errorf("legacy-app cannot log in to the new cluster with its old password: %v: %s", err, out)
	}
	s.expectNoChanges(t)

	// The cut-over's last step: migrateFrom goes, and the shovels with it.
	if err := s.RemoveConfig(context.Background(), config.KeyMigrateFrom); err != nil {
		t.Fatal(err)
	}
	s.up(t)
	if out := harness.MustDocker(t, "exec", plan.NodeNames(prefix, 0).Container, "rabbitmqctl", "-q", "list_parameters", "--no-table-headers"); out != "" {
		t.Errorf("parameters left after migrateFrom was removed:\n%s", out)
	}
	s.expectNoChanges(t)
}

// oldLeft lists the moved queues that still hold messages on the old side,
// ready and unacknowledged, or "" when every one is empty.
func oldLeft(t *testing.T, node string, queues []string) string {
	t.Helper()
	out := harness.MustDocker(t, "exec", node, "rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged", "--formatter", "json")
	var rows []struct {
		Name    string
		Ready   int `json:"messages_ready"`
		Unacked int `json:"messages_unacknowledged"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("list_queues on the old side: %v: %s", err, out)
	}
	var left []string
	for _, r := range rows {
		if slices.Contains(queues, r.Name) && r.Ready+r.Unacked > 0 {
			left = append(left, fmt.Sprintf("%s: %d ready, %d unacknowledged", r.Name, r.Ready, r.Unacked))
		}
	}
	return strings.Join(left, "; ")
}
