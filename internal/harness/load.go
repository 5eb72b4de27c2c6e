package harness

import (
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Consumer consumes a durable queue with manual acks until stopped,
// reconnecting whenever its connection fails, and counts each message ID
// it was delivered: the other half of the ID-based check.
type Consumer struct {
	url, queue string
	stop, done chan struct{}

	mu       sync.Mutex
	got      Consumed
	sessions int
	lastErr  string
}

// StartConsumer starts consuming a queue (declared on connect, as the
// Publisher declares it).
func StartConsumer(url, queue string) *Consumer {
	c := &Consumer{url: url, queue: queue, stop: make(chan struct{}), done: make(chan struct{}), got: Consumed{}}
	go c.run()
	return c
}

func (c *Consumer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		if err := c.session(); err != "" {
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			select {
			case <-c.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// session consumes on one connection until it fails or the consumer stops.
func (c *Consumer) session() string {
	conn, err := amqp.DialConfig(c.url, amqp.Config{Properties: amqp.Table{"connection_name": c.queue + "-consumer"}})
	if err != nil {
		return "dial: " + err.Error()
	}
	defer func() { _ = conn.CloseDeadline(time.Now().Add(closeTimeout)) }()
	ch, err := conn.Channel()
	if err != nil {
		return "channel: " + err.Error()
	}
	if _, err := ch.QueueDeclare(c.queue, true, false, false, false, nil); err != nil {
		return "queue.declare: " + err.Error()
	}
	if err := ch.Qos(100, 0, false); err != nil {
		return "basic.qos: " + err.Error()
	}
	deliveries, err := ch.Consume(c.queue, "", false, false, false, false, nil)
	if err != nil {
		return "basic.consume: " + err.Error()
	}
	c.mu.Lock()
	c.sessions++
	c.mu.Unlock()
	for {
		select {
		case <-c.stop:
			return ""
		case d, ok := <-deliveries:
			if !ok {
				return "deliveries closed"
			}
			// Counted once acked: a delivery whose ack is lost with the
			// connection comes again, and then counts as a duplicate.
			if err := d.Ack(false); err != nil {
				return "ack: " + err.Error()
			}
			c.mu.Lock()
			c.got[d.MessageId]++
			c.mu.Unlock()
		}
	}
}

// Consumed returns the deliveries so far, by message ID.
func (c *Consumer) Consumed() Consumed {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(Consumed, len(c.got))
	for k, v := range c.got {
		out[k] = v
	}
	return out
}

// AwaitIDs waits until every one of ids was consumed, or timeout passes,
// and reports whether they all were.
func (c *Consumer) AwaitIDs(ids []string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if lost, _ := c.Consumed().Check(ids); len(lost) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops consuming and returns the deliveries by message ID.
func (c *Consumer) Stop() Consumed {
	close(c.stop)
	<-c.done
	return c.Consumed()
}

// Load is a publisher with confirms and a consumer on one queue: the load
// each fault case runs under.
type Load struct {
	Pub *Publisher
	Sub *Consumer
}

// StartLoad starts publishing (paced: pace after each confirm) and
// consuming a queue through url.
func StartLoad(url, queue string, pace time.Duration) *Load {
	return &Load{Pub: StartPacedPublisher(url, queue, pace), Sub: StartConsumer(url, queue)}
}

// LoadResult is what a load saw, counted by message ID.
type LoadResult struct {
	Confirmed, Attempted int
	// Consumed counts distinct IDs, Duplicates deliveries beyond an ID's first.
	Consumed, Duplicates int
	// Lost are the confirmed IDs never consumed.
	Lost []string
	// MaxGap is the longest time between two confirms since the last ResetGap.
	MaxGap time.Duration
}

// Finish stops the publisher, waits up to drain for the consumer to
// receive every confirmed ID, stops the consumer and counts.
func (l *Load) Finish(drain time.Duration) LoadResult {
	confirmed, attempted := l.Pub.Stop()
	_, _, gap := l.Pub.Stats()
	ids := l.Pub.ConfirmedIDs()
	l.Sub.AwaitIDs(ids, drain)
	got := l.Sub.Stop()
	lost, dups := got.Check(ids)
	return LoadResult{Confirmed: confirmed, Attempted: attempted, Consumed: len(got), Duplicates: dups, Lost: lost, MaxGap: gap}
}
