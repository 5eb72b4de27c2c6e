package harness

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The ID-based check, as Jepsen's queue checkers count: every message
// carries a unique ID, and every confirmed ID must be consumed afterwards.
// A queue depth proves nothing: stored but unconfirmed messages can hide
// lost confirmed ones.

// PublishIDs publishes n persistent messages to a durable queue, the i-th
// with MessageId prefix-i, and returns the IDs the broker confirmed.
func PublishIDs(t testing.TB, conn *amqp.Connection, queue, prefix string, n int, args amqp.Table) []string {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		t.Fatalf("declare %s: %v", queue, err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type pending struct {
		id string
		dc *amqp.DeferredConfirmation
	}
	sent := make([]pending, 0, n)
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			MessageId:    id,
			Body:         []byte(id),
		})
		if err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		sent = append(sent, pending{id, dc})
	}
	var confirmed []string
	for _, p := range sent {
		if ok, err := p.dc.WaitContext(ctx); err == nil && ok {
			confirmed = append(confirmed, p.id)
		}
	}
	return confirmed
}

// Consumed counts the deliveries of each message ID.
type Consumed map[string]int

// ConsumeIDs takes messages from a queue through rawURL, acking each, until
// every one of ids arrived, or the queue stayed empty for quiet, or timeout
// passed. It reconnects while the queue is unavailable (a mirrored queue
// waiting for its leader, a quorum queue electing one). It waits for the
// IDs themselves, not for as many IDs: a message whose confirm never came
// may still be stored, and would otherwise stand in for a confirmed one.
func ConsumeIDs(t testing.TB, rawURL, queue string, ids []string, quiet, timeout time.Duration) Consumed {
	t.Helper()
	got := Consumed{}
	missing := make(map[string]bool, len(ids))
	for _, id := range ids {
		missing[id] = true
	}
	deadline := time.Now().Add(timeout)
	var emptySince time.Time
	for time.Now().Before(deadline) && len(missing) > 0 {
		conn, err := amqp.Dial(rawURL)
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		ch, err := conn.Channel()
		for err == nil && len(missing) > 0 && time.Now().Before(deadline) {
			var d amqp.Delivery
			var ok bool
			d, ok, err = ch.Get(queue, false)
			switch {
			case err != nil:
			case ok:
				emptySince = time.Time{}
				got[d.MessageId]++
				delete(missing, d.MessageId)
				err = d.Ack(false)
			case emptySince.IsZero():
				emptySince = time.Now()
			case time.Since(emptySince) > quiet:
				conn.Close()
				return got
			default:
				time.Sleep(200 * time.Millisecond)
			}
		}
		conn.Close()
		if err != nil {
			time.Sleep(500 * time.Millisecond)
		}
	}
	return got
}

// Check returns the confirmed IDs that were never consumed, and how many
// deliveries beyond the first any ID had.
func (c Consumed) Check(confirmed []string) (lost []string, duplicates int) {
	for _, id := range confirmed {
		if c[id] == 0 {
			lost = append(lost, id)
		}
	}
	for _, n := range c {
		if n > 1 {
			duplicates += n - 1
		}
	}
	sort.Strings(lost)
	return lost, duplicates
}
