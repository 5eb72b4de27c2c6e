// Command smoke proves that a running stack works, from its outputs alone:
//
//	pulumi stack output --json --show-secrets | go run ./smoke
//
// (`make smoke` runs it). It publishes persistent messages with publisher
// confirms through HAProxy over AMQP, and over AMQPS verified against the
// stack's exported CA, consumes every one of them from a node's direct
// endpoint, counting by message ID, and checks that each node's Prometheus
// endpoint serves RabbitMQ metrics. It prints each step and exits non-zero
// at the first thing that is off.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Outputs are the stack outputs smoke reads.
type Outputs struct {
	AMQPURL          string   `json:"amqpUrl"`
	AMQPSURL         string   `json:"amqpsUrl"`
	AdminAMQPURL     string   `json:"adminAmqpUrl"`
	CACertPEM        string   `json:"caCertPem"`
	NodeEndpoints    []string `json:"nodeEndpoints"`
	MetricsEndpoints []string `json:"metricsEndpoints"`
	HAMode           string   `json:"haMode"`
}

const perPath = 100

func main() {
	var out Outputs
	if err := json.NewDecoder(os.Stdin).Decode(&out); err != nil {
		fail("reading the stack outputs (pulumi stack output --json --show-secrets) from stdin: %v", err)
	}
	if err := run(out, os.Stdout); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "smoke: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func run(out Outputs, w io.Writer) error {
	if out.AdminAMQPURL == "" || len(out.NodeEndpoints) == 0 || out.CACertPEM == "" {
		return errors.New("the outputs lack adminAmqpUrl, nodeEndpoints or caCertPem: pass --show-secrets, and run `make up` first")
	}
	admin, err := url.Parse(out.AdminAMQPURL)
	if err != nil || admin.User == nil {
		return fmt.Errorf("adminAmqpUrl is not a URL with credentials (is it blinded? pass --show-secrets)")
	}
	withAdmin := func(raw string) (string, error) {
		u, err := url.Parse(raw)
		if err != nil {
			return "", err
		}
		u.User = admin.User
		return u.String(), nil
	}
	queue := fmt.Sprintf("smoke-%d", time.Now().UnixNano())
	fmt.Fprintf(w, "smoke: queue %s (durable; %s)\n", queue, out.HAMode)

	var confirmed []string
	amqpURL, err := withAdmin(out.AMQPURL)
	if err != nil {
		return err
	}
	ids, err := publish(amqpURL, nil, queue, "amqp")
	if err != nil {
		return fmt.Errorf("AMQP through HAProxy (%s): %w", out.AMQPURL, err)
	}
	fmt.Fprintf(w, "smoke: AMQP  through HAProxy %s: %d of %d persistent messages confirmed\n", out.AMQPURL, len(ids), perPath)
	confirmed = append(confirmed, ids...)

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(out.CACertPEM)) {
		return errors.New("caCertPem holds no certificate")
	}
	amqpsURL, err := withAdmin(out.AMQPSURL)
	if err != nil {
		return err
	}
	u, _ := url.Parse(out.AMQPSURL)
	ids, err = publish(amqpsURL, &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}, queue, "amqps")
	if err != nil {
		return fmt.Errorf("AMQPS through HAProxy (%s), verified against caCertPem: %w", out.AMQPSURL, err)
	}
	fmt.Fprintf(w, "smoke: AMQPS through HAProxy %s (certificate verified against caCertPem): %d of %d confirmed\n", out.AMQPSURL, len(ids), perPath)
	confirmed = append(confirmed, ids...)
	if len(confirmed) != 2*perPath {
		return fmt.Errorf("%d of %d messages confirmed", len(confirmed), 2*perPath)
	}

	node := out.NodeEndpoints[len(out.NodeEndpoints)-1]
	nodeURL, err := withAdmin(node)
	if err != nil {
		return err
	}
	got, err := consume(nodeURL, queue, len(confirmed))
	if err != nil {
		return fmt.Errorf("consuming from node %s: %w", node, err)
	}
	var missing []string
	for _, id := range confirmed {
		if got[id] == 0 {
			missing = append(missing, id)
		}
	}
	fmt.Fprintf(w, "smoke: consumed %d messages from node endpoint %s: %d confirmed IDs missing\n", len(got), node, len(missing))
	if len(missing) > 0 {
		return fmt.Errorf("%d confirmed messages never arrived, first %s", len(missing), missing[0])
	}

	for _, m := range out.MetricsEndpoints {
		n, err := scrape(m)
		if err != nil {
			return fmt.Errorf("metrics %s: %w", m, err)
		}
		fmt.Fprintf(w, "smoke: metrics %s: %d rabbitmq_ samples\n", m, n)
	}
	if len(out.MetricsEndpoints) != len(out.NodeEndpoints) {
		return fmt.Errorf("%d metrics endpoints for %d nodes", len(out.MetricsEndpoints), len(out.NodeEndpoints))
	}
	fmt.Fprintln(w, "smoke: OK")
	return nil
}

// publish declares the queue and publishes perPath persistent messages with
// confirms, returning the confirmed message IDs.
func publish(rawURL string, tlsConfig *tls.Config, queue, prefix string) ([]string, error) {
	conn, err := amqp.DialTLS(rawURL, tlsConfig)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("declare: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for i := range perPath {
		id := fmt.Sprintf("%s-%d", prefix, i)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: id, Body: []byte("smoke " + id),
		})
		if err != nil {
			return ids, err
		}
		ok, err := dc.WaitContext(ctx)
		if err != nil || !ok {
			return ids, fmt.Errorf("message %s not confirmed (ack %v, %v)", id, ok, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// consume takes want messages, acking each, then deletes the queue.
func consume(rawURL, queue string, want int) (map[string]int, error) {
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	got := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			return got, err
		}
		if !ok {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		got[d.MessageId]++
		if err := d.Ack(false); err != nil {
			return got, err
		}
	}
	if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
		return got, fmt.Errorf("delete %s: %w", queue, err)
	}
	return got, nil
}

// scrape fetches a Prometheus endpoint and counts its rabbitmq_ samples.
func scrape(rawURL string) (int, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(rawURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %s", resp.Status)
	}
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "rabbitmq_") {
			n++
		}
	}
	if n == 0 {
		return 0, errors.New("no rabbitmq_ metric in the response")
	}
	return n, nil
}
