package plan

import (
	"slices"
	"strings"
	"testing"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// TestSwarm: the Swarm plan is the one-host plan with each node pinned to
// its host, no static IPs, TLS on everything that crosses hosts, and
// HAProxy installing its own files.
func TestSwarm(t *testing.T) {
	t.Parallel()
	cfg := load(t, map[string]string{config.KeyPlatform: config.PlatformSwarm, config.KeySwarmNodes: `["h1","h2","zone=c"]`})
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	one, err := New(load(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Swarm || p.Network.Driver != DriverOverlay || one.Network.Driver != DriverBridge {
		t.Errorf("network: swarm %v %+v, one host %+v", p.Swarm, p.Network, one.Network)
	}
	wantPlace := []string{"node.hostname==h1", "node.hostname==h2", "node.labels.zone==c"}
	for i, n := range p.Nodes {
		s := n.Spec
		if s.Placement != wantPlace[i] || s.IP != "" || n.IP != "" {
			t.Errorf("node %d: placement %q, IP %q/%q", i, s.Placement, s.IP, n.IP)
		}
		if s.Name != one.Nodes[i].Spec.Name || s.Hostname != one.Nodes[i].Spec.Hostname || s.Volume != one.Nodes[i].Spec.Volume {
			t.Errorf("node %d: names changed: %s/%s/%s", i, s.Name, s.Hostname, s.Volume)
		}
		if len(s.Ports) != 2 || s.Ports[0].Internal != render.AMQPSPort || s.Ports[0].External != cfg.Ports.NodeAMQP(i) || s.Ports[1].Internal != render.PrometheusPort {
			t.Errorf("node %d ports: %+v", i, s.Ports)
		}
		for _, path := range []string{NodeCAFile, NodeCertFile, NodeKeyFile, render.DistOptFilePath} {
			if !slices.Contains(pathsOf(s), path) {
				t.Errorf("node %d lacks %s", i, path)
			}
		}
		for _, f := range s.Files {
			switch f.Path {
			case NodeKeyFile, render.SecretsConfPath:
				if !f.Secret || f.UID != render.RabbitMQUID || f.Mode != ModeSecret {
					t.Errorf("node %d: %s is %+v, want a secret of rabbitmq's alone", i, f.Path, f)
				}
			case render.CookieUploadPath:
				if !f.Secret || f.UID != "" {
					t.Errorf("node %d: the cookie is %+v, want root's secret (the script installs it)", i, f)
				}
			}
		}
		if !strings.Contains(file(t, s, render.RabbitMQConfPath), "listeners.ssl.default = 5671") ||
			!strings.Contains(file(t, s, render.ScriptPath), "rabbitmqctl -q -n \"$node\" eval") {
			t.Errorf("node %d: no TLS listener, or a script that asks through erl_call", i)
		}
		if !strings.Contains(s.Env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"], render.DistErlArgs) || s.Env["RABBITMQ_CTL_ERL_ARGS"] != render.DistErlArgs {
			t.Errorf("node %d env: %v", i, s.Env)
		}
	}
	// The one-host plan is untouched by any of it.
	for _, n := range one.Nodes {
		if n.Spec.Placement != "" || slices.Contains(pathsOf(n.Spec), NodeKeyFile) || strings.Contains(file(t, n.Spec, render.RabbitMQConfPath), "ssl") {
			t.Errorf("one host: %s has Swarm settings", n.Spec.Name)
		}
	}
	h := p.HAProxy
	if h.Spec.Volume != "" || h.ConfigJob.Name != "" || h.Spec.User != "root" || !slices.Equal(h.Spec.Command, render.ServeCommand()) {
		t.Errorf("HAProxy on Swarm: %+v, job %q", h.Spec, h.ConfigJob.Name)
	}
	cfgText := file(t, h.Spec, render.Staged(render.HAProxyConfigPath))
	if !strings.Contains(cfgText, "server "+p.Nodes[2].Container+" "+p.Nodes[2].Container+":5671") {
		t.Errorf("haproxy.cfg does not reach node 2 by name over AMQPS:\n%s", cfgText)
	}
	five, err := New(load(t, map[string]string{config.KeyPlatform: config.PlatformSwarm, config.KeyNodes: "5",
		config.KeySwarmNodes: `["h1","h2","zone=c","h4","h5"]`}))
	if err != nil {
		t.Fatal(err)
	}
	if file(t, five.HAProxy.Spec, render.Staged(render.HAProxyConfigPath)) != cfgText {
		t.Error("a scale changes haproxy.cfg on Swarm: its secret would be replaced, and Swarm refuses to delete the old one")
	}
	if !slices.Contains(pathsOf(h.Spec), HAProxyNodeCAFile) || !slices.Contains(pathsOf(h.Spec), CertBundlePath) {
		t.Errorf("HAProxy files: %v", pathsOf(h.Spec))
	}
	fj := p.ForgetJob
	if !slices.Contains(pathsOf(fj), NodeKeyFile) || fj.Env["RABBITMQ_CTL_ERL_ARGS"] != render.DistErlArgs || fj.Restart != RestartNever {
		t.Errorf("the forget job cannot speak TLS distribution, or restarts: %v %v %q", pathsOf(fj), fj.Env, fj.Restart)
	}
	e := p.Endpoints
	if e.Nodes[0] != "amqps://h1:56720/" || e.Nodes[2] != "amqps://127.0.0.1:56722/" || e.Metrics[1] != "http://h2:56781/metrics" {
		t.Errorf("endpoints: %v %v", e.Nodes, e.Metrics)
	}
	c := NodeCertificateOf(cfg)
	for _, name := range []string{"h1", "h2", "localhost", NodeNames(cfg.Prefix, 0).Container, NodeNames(cfg.Prefix, config.MaxNodes-1).Container} {
		if !slices.Contains(c.DNSNames, name) {
			t.Errorf("the node certificate lacks %s: %v", name, c.DNSNames)
		}
	}
}
