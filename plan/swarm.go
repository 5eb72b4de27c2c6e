package plan

import (
	"slices"
	"strconv"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// Network drivers.
const (
	// DriverBridge is one host's user-defined bridge.
	DriverBridge = "bridge"
	// DriverOverlay spans a Swarm's hosts. It is not encrypted: measured
	// here, a TCP connect across nested hosts timed out on an overlay with
	// --opt encrypted and succeeded on a plain one, so what crosses hosts is
	// TLS of its own (the Erlang distribution, AMQPS, management).
	DriverOverlay = "overlay"
)

// The files the PKI provides on Swarm, by path: a spec holds them empty.
var (
	// NodeCAFile, NodeCertFile and NodeKeyFile are the nodes' TLS files.
	NodeCAFile, NodeCertFile, NodeKeyFile = render.NodeCAPath, render.NodeCertPath, render.NodeKeyPath
	// HAProxyNodeCAFile is the CA HAProxy verifies the nodes against, staged.
	HAProxyNodeCAFile = render.Staged(render.HAProxyNodeCAPath)
)

// NodeCertificate is the one certificate every node presents, to its peers
// (the distribution, both ways), to HAProxy and to direct consumers.
type NodeCertificate struct {
	DNSNames, IPAddresses []string
}

// NodeCertificateOf names every node hostname the stack may ever have, so
// a scale-up issues no new certificate, every Swarm host a node is pinned
// to by hostname, for the direct endpoints, and the configured names.
func NodeCertificateOf(cfg *config.Config) NodeCertificate {
	var names []string
	for i := 0; i < config.MaxNodes; i++ {
		names = append(names, NodeNames(cfg.Prefix, i).Container)
	}
	for _, e := range cfg.Swarm.Nodes {
		if h := config.SwarmHostname(e); h != "" {
			names = append(names, h)
		}
	}
	names = append(names, cfg.TLS.DNSNames...)
	slices.Sort(names)
	return NodeCertificate{DNSNames: slices.Compact(names), IPAddresses: cfg.TLS.IPAddresses}
}

// onSwarm turns a one-host plan into the Swarm one. The nodes keep their
// names, files, health check and volume, and gain a placement on their
// host; they lose their static IPs (Swarm assigns addresses, and the peers
// and HAProxy find each other by name), and what crosses hosts is TLS.
// HAProxy runs on every Swarm node, installs its own files (no config
// job: Swarm mounts them), and reaches the nodes by name over TLS.
func onSwarm(cfg *config.Config, p *Plan) error {
	p.Network.Driver = DriverOverlay
	distConf := FileSpec{Path: render.DistOptFilePath, Content: render.InterNodeTLSConfig(), Mode: ModeReadable}
	tlsFiles := []FileSpec{distConf,
		{Path: NodeCAFile, Mode: ModeReadable},
		{Path: NodeCertFile, Mode: ModeReadable},
		{Path: NodeKeyFile, Mode: ModeSecret, Secret: true, UID: render.RabbitMQUID}}
	// The forget job's CLI speaks the distribution over TLS too; it runs on
	// whichever host Swarm picks.
	p.ForgetJob.Files = append(slices.Clone(p.ForgetJob.Files), tlsFiles...)
	p.ForgetJob.Env = map[string]string{"RABBITMQ_CTL_ERL_ARGS": render.DistErlArgs}
	for i := range p.Nodes {
		n := &p.Nodes[i]
		s := &n.Spec
		n.IP, s.IP = "", ""
		s.Placement = config.SwarmConstraint(cfg.Swarm.Nodes[i])
		// Direct endpoints are AMQPS: a consumer's connection crosses hosts.
		s.Ports = []PortSpec{
			{Internal: render.AMQPSPort, External: cfg.Ports.NodeAMQP(i)},
			{Internal: render.PrometheusPort, External: cfg.Ports.Metrics(i)},
		}
		files := slices.Clone(s.Files)
		for j := range files {
			if files[j].Path == render.SecretsConfPath {
				files[j].UID = render.RabbitMQUID
			}
		}
		s.Files = append(files, tlsFiles...)
		s.Env = map[string]string{
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erlArgs + " " + render.DistErlArgs,
			// Every CLI call, the cluster script's and a user's docker exec.
			"RABBITMQ_CTL_ERL_ARGS": render.DistErlArgs,
		}
	}
	p.Endpoints = swarmEndpoints(cfg, p.Endpoints)

	// Every node the stack may ever have, by name: a name that does not
	// resolve leaves its server in maintenance until it does. So a scale
	// changes no byte of haproxy.cfg, and HAProxy, which serves every
	// client, is not updated (restarted on every host) for it.
	d := haproxyData(cfg, nil)
	for i := 0; i < config.MaxNodes; i++ {
		d.Nodes = append(d.Nodes, render.Backend{Name: NodeNames(cfg.Prefix, i).Container})
	}
	d.Swarm = true
	text, err := render.HAProxyConfig(d)
	if err != nil {
		return err
	}
	script, err := render.HAProxyScript(cfg.TLS.ClientCACert != "", true)
	if err != nil {
		return err
	}
	h := &p.HAProxy
	files := []FileSpec{
		{Path: render.HAProxyScriptPath, Content: script, Mode: ModeExecutable},
		{Path: render.Staged(render.HAProxyConfigPath), Content: text, Mode: ModeSecret, Secret: true},
		{Path: CertBundlePath, Mode: ModeSecret, Secret: true},
		{Path: HAProxyNodeCAFile, Mode: ModeReadable},
	}
	if ca := cfg.TLS.ClientCACert; ca != "" {
		files = append(files, FileSpec{Path: ClientCABundlePath, Content: ca, Mode: ModeReadable})
	}
	h.Spec.IP = ""
	h.Spec.User = "root"
	h.Spec.Command = render.ServeCommand()
	h.Spec.Files = files
	h.Spec.Volume, h.Spec.VolumePath, h.Volume = "", "", ""
	for j := range h.Spec.Ports {
		h.Spec.Ports[j].HostIP = ""
	}
	h.ConfigJob = ContainerSpec{}
	return nil
}

// swarmEndpoints: a node's direct endpoint is AMQPS on its host, named by
// its swarmNodes hostname (a label-placed node: hostIP, the address the
// other endpoints name).
func swarmEndpoints(cfg *config.Config, e Endpoints) Endpoints {
	host := cfg.HostIP.String()
	for i, entry := range cfg.Swarm.Nodes {
		h := config.SwarmHostname(entry)
		if h == "" {
			h = host
		}
		e.Nodes[i] = "amqps://" + h + ":" + strconv.Itoa(cfg.Ports.NodeAMQP(i)) + "/"
		e.Metrics[i] = "http://" + h + ":" + strconv.Itoa(cfg.Ports.Metrics(i)) + "/metrics"
	}
	return e
}

// SwarmRestart is a Docker restart policy as Swarm's restart condition
// (none, on-failure, any); another value is passed on for Swarm to refuse.
func SwarmRestart(policy string) string {
	switch policy {
	case RestartNever:
		return "none"
	case "always", "unless-stopped":
		return "any"
	}
	return policy
}
