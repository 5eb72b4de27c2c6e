package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"

	"github.com/rabbitmq-ha/rabbitmq-ha/components"
	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// TestIntegrationE2ESwarm runs the real program, through the Automation
// API, on a Swarm of three simulated hosts, one node on each: `pulumi up`
// against the manager (the provider's docker:host), AMQP and AMQPS through
// HAProxy on every host verified against the exported CA, a direct node
// endpoint over AMQPS, a whole host killed under load with nothing
// confirmed lost, an idempotent preview, and destroy, which leaves nothing
// of the stack on the Swarm.
func TestIntegrationE2ESwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs `pulumi up`; skipped under -short")
	}
	cli := pulumiCLI(t)
	line := harness.Lines[lineIndex("4.3-quorum")]
	const prefix = "rmqha-e2e-swarm"
	hosts := harness.StartSwarm(t, prefix, 3, 52490, line.Image, line.HAProxy)
	var names, ips []string
	for _, h := range hosts.Hosts {
		names, ips = append(names, h.Name), append(ips, h.IP)
	}
	values := harness.TestValues(prefix, line.Image, "10.244.2.0/24", 52500)
	values[config.KeyHAProxyImage] = line.HAProxy
	values[config.KeyPlatform] = config.PlatformSwarm
	values[config.KeySwarmNodes] = `["` + strings.Join(names, `","`) + `"]`
	values[config.KeyHostIP] = hosts.Hosts[0].IP
	values[config.KeyTLSIPAddresses] = `["` + strings.Join(ips, `","`) + `"]`
	st, err := harness.InlineStack(context.Background(), components.Program, cli, "e2e-swarm", t.TempDir(), values, harness.TestSecrets())
	if err != nil {
		t.Fatal(err)
	}
	// The provider's own config names the Swarm's manager.
	if err := st.SetConfig(context.Background(), "docker:host", auto.ConfigValue{Value: hosts.Endpoint}); err != nil {
		t.Fatal(err)
	}
	s := e2eStack{Stack: st, prefix: prefix}
	t.Cleanup(func() { hosts.RemoveStack(context.Background(), prefix) })

	res := s.up(t)
	cfg := harness.TestConfig(t, prefix, line.Image, "10.244.2.0/24", 52500, map[string]string{
		config.KeyHAProxyImage: line.HAProxy, config.KeyPlatform: config.PlatformSwarm,
		config.KeySwarmNodes: values[config.KeySwarmNodes], config.KeyHostIP: values[config.KeyHostIP],
		config.KeyTLSIPAddresses: values[config.KeyTLSIPAddresses],
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(fmt.Sprint(res.Outputs["caCertPem"].Value))) {
		t.Fatalf("caCertPem is not a PEM certificate: %v", res.Outputs["caCertPem"].Value)
	}
	for _, h := range hosts.Hosts {
		for _, u := range []string{
			fmt.Sprintf("amqp://%s:%s@%s:%d/", cfg.AdminUser, harness.TestAdminPassword, h.IP, cfg.Ports.AMQP),
			fmt.Sprintf("amqps://%s:%s@%s:%d/", cfg.AdminUser, harness.TestAdminPassword, h.IP, cfg.Ports.AMQPS),
		} {
			conn := harness.Dial(t, u, &tls.Config{RootCAs: pool, ServerName: h.IP}, time.Minute)
			_ = conn.Close()
		}
	}
	nodeEndpoints := fmt.Sprint(res.Outputs["nodeEndpoints"].Value)
	if !strings.Contains(nodeEndpoints, fmt.Sprintf("amqps://%s:%d/", names[1], cfg.Ports.NodeAMQP(1))) {
		t.Errorf("nodeEndpoints %s do not name node 1's host", nodeEndpoints)
	}
	// Node 1's direct endpoint, over AMQPS; a queue declared there has its
	// leader there (client-local), on host 2.
	const queue = "e2e-swarm-host-loss"
	conn := harness.Dial(t, fmt.Sprintf("amqps://%s:%s@%s:%d/", cfg.AdminUser, harness.TestAdminPassword, ips[1], cfg.Ports.NodeAMQP(1)),
		&tls.Config{RootCAs: pool, ServerName: names[1]}, time.Minute)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	s.expectNoChanges(t)

	// A whole host dies under load, with the queue's leader: nothing
	// confirmed is lost.
	url := fmt.Sprintf("amqp://%s:%s@%s:%d/", cfg.AdminUser, harness.TestAdminPassword, ips[0], cfg.Ports.AMQP)
	pub := harness.StartPacedPublisher(url, queue, 10*time.Millisecond)
	pub.WaitConfirmed(t, 300, time.Minute)
	pub.ResetGap()
	killed := time.Now()
	hosts.Hosts[1].Kill(t)
	before, _, _ := pub.Stats()
	budget := hostLossBudget(cfg)
	pub.WaitConfirmed(t, before+300, budget+time.Minute)
	_, _, gap := pub.Stats()
	t.Logf("host %s killed: the longest confirm gap through %s's HAProxy was %s; the publisher: %v", names[1], names[0], gap.Round(10*time.Millisecond), pub.Trace(killed))
	if gap > budget {
		t.Errorf("publishing stalled %s after the host loss, more than %s", gap, budget)
	}
	hosts.Hosts[1].Boot(t)
	confirmed, _ := pub.Stop()
	got := harness.ConsumeIDs(t, url, queue, pub.ConfirmedIDs(), 5*time.Second, 2*time.Minute)
	lost, dups := got.Check(pub.ConfirmedIDs())
	t.Logf("%d confirmed, %d lost, %d duplicates", confirmed, len(lost), dups)
	if len(lost) > 0 {
		t.Errorf("%d confirmed messages lost, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}

	// A rolling image replacement across the hosts under load: the node
	// services update one after another, each waiting for the one before
	// to run healthy, so no two nodes are ever down together.
	image := harness.RelabelImage(t, line.Image, line.Image+"-swarm-rolling")
	if err := hosts.LoadImages(image); err != nil {
		t.Fatal(err)
	}
	if err := st.SetConfig(context.Background(), "rabbitmq-ha:"+config.KeyRabbitMQImage, auto.ConfigValue{Value: image}); err != nil {
		t.Fatal(err)
	}
	const rollQueue = "e2e-swarm-rolling"
	roll := harness.StartPacedPublisher(url, rollQueue, 10*time.Millisecond)
	roll.WaitConfirmed(t, 200, time.Minute)
	roll.ResetGap()
	s.up(t)
	_, _, rollGap := roll.Stats()
	rolled, _ := roll.Stop()
	gotRoll := harness.ConsumeIDs(t, url, rollQueue, roll.ConfirmedIDs(), 5*time.Second, 2*time.Minute)
	lostRoll, dupsRoll := gotRoll.Check(roll.ConfirmedIDs())
	t.Logf("rolling image replacement under load: %d confirmed, %d lost, %d duplicates, longest confirm gap %s",
		rolled, len(lostRoll), dupsRoll, rollGap.Round(10*time.Millisecond))
	if len(lostRoll) > 0 {
		t.Errorf("%d confirmed messages lost in the rolling replacement, e.g. %v", len(lostRoll), lostRoll[:min(5, len(lostRoll))])
	}
	for i := range names {
		if img, _ := hosts.Docker(context.Background(), nil, "service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", plan.NodeNames(prefix, i).Container); !strings.HasPrefix(img, image) {
			t.Errorf("node %d's service runs %q after the replacement, want %s", i, img, image)
		}
	}
	s.expectNoChanges(t)

	// Scale 3 to 5 to 3, two nodes sharing hosts with others (allowed so),
	// under load: the new nodes join, and the removed ones are forgotten
	// by the forget job, once up has stopped them.
	mgmt := fmt.Sprintf("http://%s:%d", ips[0], cfg.Ports.Management)
	scale := harness.StartPacedPublisher(url, "e2e-swarm-scale", 10*time.Millisecond)
	scale.WaitConfirmed(t, 200, time.Minute)
	for _, n := range []int{5, 3} {
		entries := append(append([]string{}, names...), names[0], names[1])[:n]
		for k, v := range map[string]string{
			config.KeyNodes: fmt.Sprint(n), config.KeySwarmNodes: `["` + strings.Join(entries, `","`) + `"]`, config.KeySwarmColocate: "true",
		} {
			if err := st.SetConfig(context.Background(), "rabbitmq-ha:"+k, auto.ConfigValue{Value: v}); err != nil {
				t.Fatal(err)
			}
		}
		s.up(t)
		members := clusterMembers(t, mgmt, cfg.AdminUser, n, 3*time.Minute)
		t.Logf("scaled to %d: members %v", n, members)
	}
	scaled, _ := scale.Stop()
	gotScale := harness.ConsumeIDs(t, url, "e2e-swarm-scale", scale.ConfirmedIDs(), 5*time.Second, 2*time.Minute)
	if lostScale, _ := gotScale.Check(scale.ConfirmedIDs()); len(lostScale) > 0 {
		t.Errorf("%d of %d confirmed messages lost through the scale, e.g. %v", len(lostScale), scaled, lostScale[:min(5, len(lostScale))])
	}
	s.expectNoChanges(t)

	// A rotated secret: the stats password is in haproxy.cfg, a Swarm
	// secret. up creates its new version, moves HAProxy's service to it and
	// deletes the old one (Swarm refuses only while a service's current
	// spec names it); the stats page then takes the new password only.
	secrets := func() []string {
		out, _ := hosts.Docker(context.Background(), nil, "secret", "ls", "-q", "--filter", "label="+plan.LabelStack+"="+prefix)
		return strings.Fields(out)
	}
	secretsBefore := secrets()
	const rotated = "e2e-rotated-Stats0"
	if err := st.SetConfig(context.Background(), "rabbitmq-ha:"+config.KeyStatsPassword, auto.ConfigValue{Value: rotated, Secret: true}); err != nil {
		t.Fatal(err)
	}
	s.up(t)
	after := secrets()
	fresh := slices.DeleteFunc(slices.Clone(after), func(id string) bool { return slices.Contains(secretsBefore, id) })
	if len(after) != len(secretsBefore) || len(fresh) != 1 {
		t.Errorf("the stack's Swarm secrets after the rotation: %v, before it: %v; want as many, one of them new", after, secretsBefore)
	}
	statsCode := func(password string) int {
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d/", ips[0], cfg.Ports.Stats), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(cfg.StatsUser, password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var oldCode, newCode int
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(time.Second) {
		if oldCode, newCode = statsCode(harness.TestStatsPassword), statsCode(rotated); oldCode == http.StatusUnauthorized && newCode == http.StatusOK {
			break
		}
	}
	t.Logf("stats password rotated: the old one gets %d, the new one %d", oldCode, newCode)
	if oldCode != http.StatusUnauthorized || newCode != http.StatusOK {
		t.Errorf("after the rotation the stats page answers %d to the old password and %d to the new, want 401 and 200", oldCode, newCode)
	}
	s.expectNoChanges(t)

	start := time.Now()
	if _, err := s.Destroy(context.Background(), optdestroy.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	t.Logf("destroy took %s", time.Since(start).Round(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, kind := range []string{"service", "secret", "config", "network"} {
		if left, _ := hosts.Docker(ctx, nil, kind, "ls", "-q", "--filter", "label="+plan.LabelStack+"="+prefix); left != "" {
			t.Errorf("destroy left %ss on the Swarm: %s", kind, left)
		}
	}
}

// clusterMembers waits until the management API lists exactly want nodes,
// every one running, and returns their names.
func clusterMembers(t *testing.T, mgmt, user string, want int, timeout time.Duration) []string {
	t.Helper()
	var names []string
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(2 * time.Second) {
		req, err := http.NewRequest(http.MethodGet, mgmt+"/api/nodes?columns=name,running", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, harness.TestAdminPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var nodes []struct {
			Name    string `json:"name"`
			Running bool   `json:"running"`
		}
		err = json.NewDecoder(resp.Body).Decode(&nodes)
		resp.Body.Close()
		if err != nil {
			continue
		}
		names = names[:0]
		running := 0
		for _, n := range nodes {
			names = append(names, n.Name)
			if n.Running {
				running++
			}
		}
		if len(nodes) == want && running == want {
			return names
		}
	}
	t.Fatalf("the cluster did not have %d running members within %s: %v", want, timeout, names)
	return nil
}
