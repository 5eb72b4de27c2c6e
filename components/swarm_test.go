package components

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/render"
	"github.com/rabbitmq-ha/rabbitmq-ha/rolling"
)

// swarmValues is a Swarm stack of three nodes on three hosts.
var swarmValues = map[string]any{
	"rabbitmqImage": "rabbitmq:4.3-local",
	"platform":      "swarm",
	"swarmNodes":    `["h1","h2","h3"]`,
}

// TestSwarmProgram runs the real program on Swarm with mocks: an overlay
// network, one service per node pinned to its host and waiting for the one
// before it, HAProxy on every host, the secrets as Swarm secrets (root's or
// rabbitmq's, read-only), and no container at all.
func TestSwarmProgram(t *testing.T) {
	// A preview: an up would wait for HAProxy to answer (awaitServing).
	m, err := runWithOpen(fakeDocker{}.open, swarmValues, preview)
	if err != nil {
		t.Fatal(err)
	}
	for typ, n := range map[string]int{
		"docker:index/network:Network":                  1,
		"docker:index/service:Service":                  5, // 3 nodes, HAProxy, the forget job
		"docker:index/container:Container":              0,
		"docker:index/volume:Volume":                    0, // a service's mount makes its volume on its host
		"rabbitmq-ha:index:SwarmNodes":                  1,
		"tls:index/locallySignedCert:LocallySignedCert": 2, // HAProxy's, the nodes'
		"rabbitmq:index/policy:Policy":                  2,
	} {
		if got := len(m.byType(typ)); got != n {
			t.Errorf("%s: %d resources, want %d", typ, got, n)
		}
	}
	net := m.byType("docker:index/network:Network")[0]
	if str(t, net, "driver") != "overlay" || !net.inputs["attachable"].BoolValue() {
		t.Errorf("network: %v", net.inputs)
	}
	services := map[string]registered{}
	for _, s := range m.byType("docker:index/service:Service") {
		services[s.name] = s
	}
	var previous string
	for i, host := range []string{"h1", "h2", "h3"} {
		name := "rabbitmq-node-" + string(rune('0'+i))
		s, ok := services[name]
		if !ok {
			t.Fatalf("no service %s: %v", name, services)
		}
		task := s.inputs["taskSpec"].ObjectValue()
		constraints := task["placement"].ObjectValue()["constraints"].ArrayValue()
		if len(constraints) != 1 || constraints[0].StringValue() != "node.hostname=="+host {
			t.Errorf("%s: placement %v", name, constraints)
		}
		if mode := s.inputs["endpointSpec"].ObjectValue()["mode"].StringValue(); mode != "dnsrr" {
			t.Errorf("%s: endpoint mode %q, want dnsrr (its name resolves to its task while it runs)", name, mode)
		}
		replicas := s.inputs["mode"].ObjectValue()["replicated"].ObjectValue()["replicas"].NumberValue()
		update := s.inputs["updateConfig"].ObjectValue()
		if replicas != 1 || update["parallelism"].NumberValue() != 1 || update["order"].StringValue() != "stop-first" {
			t.Errorf("%s: %v replicas, update %v", name, replicas, update)
		}
		if _, ok := s.inputs["convergeConfig"]; !ok {
			t.Errorf("%s: no converge config: up would not wait for it to run healthy", name)
		}
		if previous != "" && !slices.ContainsFunc(s.deps, func(d string) bool { return strings.HasSuffix(d, "::"+previous) }) {
			t.Errorf("%s does not wait for %s: deps %v", name, previous, s.deps)
		}
		previous = name
		spec := task["containerSpec"].ObjectValue()
		env := spec["env"].ObjectValue()
		if !strings.Contains(env["RABBITMQ_CTL_ERL_ARGS"].StringValue(), "-proto_dist inet_tls") {
			t.Errorf("%s: env %v", name, env)
		}
		owners := map[string]string{}
		for _, sec := range spec["secrets"].ArrayValue() {
			o := sec.ObjectValue()
			owners[o["fileName"].StringValue()] = o["fileUid"].StringValue() + ":" + o["fileMode"].String()
		}
		for path, want := range map[string]string{
			render.CookieUploadPath: "0:{256}", render.SecretsConfPath: render.RabbitMQUID + ":{256}", render.NodeKeyPath: render.RabbitMQUID + ":{256}",
		} {
			if owners[path] != want {
				t.Errorf("%s: secret %s mounted %q, want %q (uid:mode 0400)", name, path, owners[path], want)
			}
		}
	}
	forget := services["rabbitmq-node-forget-job"]
	if _, ok := forget.inputs["convergeConfig"]; ok {
		t.Error("up waits for the forget job, which waits for the nodes up removes after it")
	}
	if c := forget.inputs["taskSpec"].ObjectValue()["restartPolicy"].ObjectValue()["condition"].StringValue(); c != "none" {
		t.Errorf("the forget job restarts on %q, want none (it runs once)", c)
	}
	if !slices.ContainsFunc(forget.deps, func(d string) bool { return strings.HasSuffix(d, "::rabbitmq-node-2") }) {
		t.Errorf("the forget job does not wait for the node services: %v", forget.deps)
	}
	h := services["rabbitmq-haproxy"]
	if !h.inputs["mode"].ObjectValue()["global"].BoolValue() {
		t.Errorf("HAProxy is not global: %v", h.inputs["mode"])
	}
	// The provider refuses a converge config on a global service.
	if _, ok := h.inputs["convergeConfig"]; ok {
		t.Errorf("HAProxy, a global service, has a converge config: %v", h.inputs["convergeConfig"])
	}
	for _, p := range h.inputs["endpointSpec"].ObjectValue()["ports"].ArrayValue() {
		if p.ObjectValue()["publishMode"].StringValue() != "host" {
			t.Errorf("HAProxy port %v is not published in host mode", p)
		}
	}
	// Every secret's data is secret in state, and no secret is a config.
	for _, s := range m.byType("docker:index/secret:Secret") {
		if d := s.inputs["data"]; !d.IsSecret() {
			t.Errorf("%s: data is not secret", s.name)
		}
	}
	// The provider names the secrets and configs, the resource's name and
	// "-" and 7 hex digits, within Swarm's 64 characters: a name given
	// would make a changed content's replacement delete the old object
	// first, which Swarm refuses while a service uses it.
	files := append(m.byType("docker:index/secret:Secret"), m.byType("docker:index/serviceConfig:ServiceConfig")...)
	if len(files) == 0 {
		t.Fatal("no Swarm secrets or configs")
	}
	for _, f := range files {
		if n, ok := f.inputs["name"]; ok {
			t.Errorf("%s is named %v: the provider must name it", f.name, n)
		}
		if len(f.name)+8 > 64 {
			t.Errorf("%s: %d characters; with the provider's suffix, more than Swarm's 64", f.name, len(f.name))
		}
	}
	for _, c := range m.byType("docker:index/serviceConfig:ServiceConfig") {
		for _, bad := range []string{"erlang.cookie", "secrets.conf", "node.key", "server.pem", "haproxy.cfg"} {
			if strings.HasSuffix(c.name, bad) {
				t.Errorf("%s is a config, not a secret", c.name)
			}
		}
	}
}

// fakeSwarm is a Swarm manager's API in unit tests: the node services'
// images by service name.
type fakeSwarm struct {
	fakeDocker
	images map[string]string
}

func (f fakeSwarm) ServiceImage(_ context.Context, name string) (string, error) {
	return f.images[name], nil
}

// TestSwarmVersionGuard: on Swarm the guard reads the node services' image
// tags from the manager, and refuses a path RabbitMQ does not support
// before anything is registered.
func TestSwarmVersionGuard(t *testing.T) {
	open := func(images map[string]string) OpenDocker {
		return func(string) (rolling.Engine, error) { return fakeSwarm{fakeDocker{}, images}, nil }
	}
	values := maps.Clone(swarmValues)
	m, err := runWithOpen(open(map[string]string{"rabbitmq-ha-dev-node-1": "rabbitmq:4.1-management"}), values, preview)
	if err == nil || !strings.Contains(err.Error(), "4.3 is upgraded to only from 4.2") || !strings.Contains(err.Error(), "service rabbitmq-ha-dev-node-1 runs rabbitmq:4.1-management") {
		t.Errorf("4.1 to 4.3 on Swarm: %v", err)
	}
	if err == nil && len(m.resources) > 0 || err != nil && len(m.resources) != 0 {
		t.Errorf("%d resources registered before the guard refused", len(m.resources))
	}
	if _, err := runWithOpen(open(map[string]string{"rabbitmq-ha-dev-node-0": "rabbitmq:4.2-management"}), values, preview); err != nil {
		t.Errorf("4.2 to 4.3 on Swarm refused: %v", err)
	}
}

// preview makes a mock run a preview.
func preview(ri *pulumi.RunInfo) { ri.DryRun = true }

func TestSwarmDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute: "5m", 90 * time.Second: "1m30s", time.Second: "1s", 2 * time.Hour: "2h", 500 * time.Millisecond: "500ms",
	} {
		if got := swarmDuration(d); got != want {
			t.Errorf("swarmDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestSwarmWithoutDockerAPI: a manager the program's own client cannot
// reach (docker:host ssh://, which the provider speaks and it does not)
// skips the version guard with a warning; it does not stop the up, as it
// must on one host, where the rolling replacement needs the connection.
func TestSwarmWithoutDockerAPI(t *testing.T) {
	unreachable := func(string) (rolling.Engine, error) { return nil, errors.New("ssh:// is not spoken here") }
	if _, err := runWithOpen(unreachable, swarmValues, preview); err != nil {
		t.Errorf("Swarm without the program's Docker connection: %v", err)
	}
	if _, err := runWithOpen(unreachable, map[string]any{"rabbitmqImage": "rabbitmq:4.3-local"}, preview); err == nil {
		t.Error("one host without the Docker connection the rolling replacement needs: no error")
	}
}
