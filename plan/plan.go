// Package plan is the whole stack as data: which objects exist, with which
// names, IPs, volumes, files, ports and labels. It is pure (no Pulumi, no
// Docker SDK): plan.New(cfg) is the one place that knows names and counts,
// and its readers only interpret it. Package components turns it into
// Pulumi resources; internal/harness runs it with the docker CLI for the
// plugin-free tests and the bench.
package plan

import (
	"strconv"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// Plan is one stack.
type Plan struct {
	Prefix string
	// Swarm: the stack runs as Swarm services over several hosts
	// (swarm.go), not as containers on one.
	Swarm   bool
	Network Network
	// Nodes are the configured nodes, in order; node 0 seeds the cluster.
	Nodes []Node
	// ForgetJob forgets the members that are no longer configured.
	ForgetJob ContainerSpec
	HAProxy   HAProxy
	Endpoints Endpoints
	Broker    Broker
}

// Network is the user-defined bridge network. Its gateway is explicit (left
// to Docker it comes back filled in and shows as a diff), and the dynamic
// addresses stay out of the lower half, where the static IPs are.
type Network struct {
	Name, Subnet, Gateway, IPRange string
	// Driver is bridge on one host, overlay on Swarm.
	Driver string
	Labels map[string]string
}

// Node is one RabbitMQ node.
type Node struct {
	Index int
	Names
	IP string
	// Type is disc or ram.
	Type string
	// AMQPPort and MetricsPort are its direct host ports.
	AMQPPort, MetricsPort int
	Spec                  ContainerSpec
}

// HAProxy is the load balancer, its config job and the volume they share.
type HAProxy struct {
	Spec ContainerSpec
	// ConfigJob installs haproxy.cfg and the certificate bundle into Volume.
	// Its bundle (CertBundlePath) is empty here: the PKI provides it.
	ConfigJob ContainerSpec
	Volume    string
}

// Broker is the settings applied through the management API.
type Broker struct {
	// VHosts are the vhosts, "/" first; each gets Policy.
	VHosts []string
	Policy Policy
}

// CertBundlePath is where the config job finds the certificate bundle.
var CertBundlePath = render.Staged(render.HAProxyCertPath)

// ClientCABundlePath is where the config job finds the client CA bundle
// (mutual TLS, tlsClientCaCert).
var ClientCABundlePath = render.Staged(render.HAProxyClientCAPath)

// Node container settings.
const (
	// DataPath is the official image's data directory (and HOME).
	DataPath = "/var/lib/rabbitmq"
	// healthInterval is short because the check is cheap (a file test and a
	// TCP connect, no Erlang VM) and `pulumi up` waits on it.
	healthInterval = time.Second
	healthTimeout  = 5 * time.Second
	healthRetries  = 3
	// nodeStartPeriod covers a join that backs off while the seed boots.
	nodeStartPeriod = 5 * time.Minute
	// haproxyStartPeriod is the nodes': HAProxy starts with them, and is
	// healthy once one of them answers through it.
	haproxyStartPeriod = nodeStartPeriod
)

// erlArgs stop the Erlang schedulers from busy-waiting when idle. Several
// nodes share the host's cores, and spinning schedulers steal each other's
// CPU, most of all while they boot together. See
// https://www.rabbitmq.com/docs/runtime#busy-waiting
const erlArgs = "+sbwt none +sbwtdcpu none +sbwtdio none"

// nodeHealth passes once the cluster script has joined the node (ReadyFile)
// while AMQP still accepts connections.
var nodeHealth = []string{"CMD", "bash", "-c", "test -f " + render.ReadyFile + " && exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(render.AMQPPort)}

// haproxyHealth passes once a RabbitMQ node answers HTTP through HAProxy's
// management frontend (any status: no credentials are sent). HAProxy starts
// together with the nodes, and the broker settings go through that
// frontend, so `pulumi up` applies them only after this passes: HAProxy
// routes only to nodes it has not seen fail, and the nodes are healthy
// by then. A listening frontend alone would pass with every node down.
var haproxyHealth = []string{"CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(render.ManagementPort) +
	` && printf 'GET /api/overview HTTP/1.0\r\n\r\n' >&3 && read -r -t 4 status <&3 && [[ $status == HTTP/* ]]`}

// New returns the plan of a validated config.
func New(cfg *config.Config) (*Plan, error) {
	files, err := nodeFilesOf(cfg)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Prefix: cfg.Prefix,
		Network: Network{
			Name: cfg.Prefix, Subnet: cfg.Subnet.String(), Gateway: cfg.Gateway.String(),
			IPRange: cfg.DynamicRange().String(), Driver: DriverBridge, Labels: labels(cfg.Prefix, "", nil),
		},
		Swarm:     cfg.IsSwarm(),
		Endpoints: EndpointsOf(cfg),
		Broker:    Broker{VHosts: VHostsOf(cfg), Policy: PolicyFor(cfg)},
	}
	var members []string
	for i := 0; i < cfg.Nodes; i++ {
		n, err := node(cfg, files, i)
		if err != nil {
			return nil, err
		}
		p.Nodes = append(p.Nodes, n)
		members = append(members, n.Erlang)
	}
	p.ForgetJob = ContainerSpec{
		Name:    forgetJobName(cfg.Prefix),
		Command: render.ForgetCommand(members),
		// The script and the cookie, not the admin credentials.
		Files:   []FileSpec{files.Script, files.Cookie},
		Restart: RestartNever,
		Labels:  labels(cfg.Prefix, RoleJob, nil),
	}
	if p.HAProxy, err = haproxy(cfg, p.Nodes); err != nil {
		return nil, err
	}
	if cfg.IsSwarm() {
		if err := onSwarm(cfg, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Containers returns the configured nodes' container names, in order.
func (p *Plan) Containers() []string {
	out := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		out[i] = n.Container
	}
	return out
}

// nodeFiles are the files every RabbitMQ container of the stack gets.
type nodeFiles struct {
	// Script is the cluster script: the join step, drain and forget.
	Script FileSpec
	// Cookie is the shared Erlang cookie.
	Cookie FileSpec
	// Credentials are the admin user's, in a conf.d file.
	Credentials FileSpec
}

func nodeFilesOf(cfg *config.Config) (nodeFiles, error) {
	script, err := render.ClusterScript(render.ClusterData{
		Seed:       NodeNames(cfg.Prefix, 0).Erlang,
		PeerPrefix: PeerPrefix(cfg.Prefix),
		MaxNodes:   config.MaxNodes,
		SeedFirst:  cfg.SeedStartsFirst(),
		// Khepri is Raft: its minority cannot diverge.
		PartitionWatch: !cfg.Khepri(),
		DistTLS:        cfg.IsSwarm(),
	})
	if err != nil {
		return nodeFiles{}, err
	}
	secrets, err := render.SecretsConf(render.SecretsData{AdminUser: cfg.AdminUser, AdminPassword: cfg.Secrets.AdminPassword})
	if err != nil {
		return nodeFiles{}, err
	}
	return nodeFiles{
		Script:      FileSpec{Path: render.ScriptPath, Content: script, Mode: ModeExecutable},
		Cookie:      FileSpec{Path: render.CookieUploadPath, Content: cfg.Secrets.ErlangCookie, Mode: ModeSecret, Secret: true},
		Credentials: FileSpec{Path: render.SecretsConfPath, Content: secrets, Mode: ModeSecret, Secret: true},
	}, nil
}

// node returns node i. Node 0 seeds the cluster; every other node joins it.
func node(cfg *config.Config, files nodeFiles, i int) (Node, error) {
	names := NodeNames(cfg.Prefix, i)
	seed := ""
	if i > 0 {
		seed = NodeNames(cfg.Prefix, 0).Erlang
	}
	conf, err := render.RabbitMQConf(render.RabbitMQData{
		Node:             names.Erlang,
		Seed:             seed,
		NodeType:         cfg.NodeTypes[i],
		Quorum:           cfg.HAMode == config.HAModeQuorum,
		Mnesia:           !cfg.Khepri(),
		MemoryLimitBytes: int64(cfg.MemoryLimitMB) << 20,
		DiskFreeLimitMB:  cfg.DiskFreeLimitMB,
		NetTicktime:      cfg.NetTicktimeSeconds,
		TLS:              cfg.IsSwarm(),
	})
	if err != nil {
		return Node{}, err
	}
	n := Node{
		Index: i, Names: names, IP: cfg.NodeIPs[i].String(), Type: cfg.NodeTypes[i],
		AMQPPort: cfg.Ports.NodeAMQP(i), MetricsPort: cfg.Ports.Metrics(i),
	}
	host := cfg.HostIP.String()
	n.Spec = ContainerSpec{
		Name:     names.Container,
		Hostname: names.Container,
		Command:  render.NodeCommand(n.Type),
		IP:       n.IP,
		Ports: []PortSpec{
			{HostIP: host, Internal: render.AMQPPort, External: n.AMQPPort},
			{HostIP: host, Internal: render.PrometheusPort, External: n.MetricsPort},
		},
		Files: []FileSpec{
			{Path: render.RabbitMQConfPath, Content: conf, Mode: ModeReadable},
			{Path: render.EnabledPluginsPath, Content: pluginsOf(cfg), Mode: ModeReadable},
			files.Script, files.Cookie, files.Credentials,
		},
		Volume:     names.Volume,
		VolumePath: DataPath,
		Health: &HealthSpec{
			Test: nodeHealth, Interval: healthInterval, Timeout: healthTimeout,
			StartPeriod: nodeStartPeriod, Retries: healthRetries,
		},
		MemoryMB:           cfg.MemoryLimitMB,
		Restart:            cfg.RestartPolicy,
		StopTimeoutSeconds: render.StopTimeoutSeconds,
		Labels:             labels(cfg.Prefix, RoleNode, map[string]string{LabelNode: strconv.Itoa(i)}),
		Env:                map[string]string{"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erlArgs},
	}
	if m := cfg.MigrateFrom; m != nil && m.Network != "" {
		n.Spec.Networks = []string{m.Network}
	}
	return n, nil
}

// pluginsOf is the nodes' enabled_plugins: the shovel plugin too while
// the stack moves an old cluster (migrateFrom).
func pluginsOf(cfg *config.Config) string {
	if cfg.MigrateFrom != nil {
		return render.ShovelPlugins
	}
	return render.EnabledPlugins
}

// haproxy returns HAProxy and its config job. haproxy.cfg and the bundle
// are not HAProxy's files: the config job writes them into HAProxy's volume,
// and HAProxy reloads when they change, so neither a renewal nor a scale
// change re-creates the container. The job runs as root, so it can make them
// readable by the haproxy user alone: the config holds the stats password,
// the bundle the key.
func haproxy(cfg *config.Config, nodes []Node) (HAProxy, error) {
	clientCA := cfg.TLS.ClientCACert
	script, err := render.HAProxyScript(false, false)
	if err != nil {
		return HAProxy{}, err
	}
	jobScript, err := render.HAProxyScript(clientCA != "", false)
	if err != nil {
		return HAProxy{}, err
	}
	text, err := render.HAProxyConfig(haproxyData(cfg, nodes))
	if err != nil {
		return HAProxy{}, err
	}
	scriptFile := FileSpec{Path: render.HAProxyScriptPath, Content: script, Mode: ModeExecutable}
	jobFiles := []FileSpec{
		{Path: render.HAProxyScriptPath, Content: jobScript, Mode: ModeExecutable},
		{Path: render.Staged(render.HAProxyConfigPath), Content: text, Mode: ModeSecret, Secret: true},
		{Path: CertBundlePath, Mode: ModeSecret, Secret: true},
	}
	if clientCA != "" {
		// Public: it shows in a preview's diff.
		jobFiles = append(jobFiles, FileSpec{Path: ClientCABundlePath, Content: clientCA, Mode: ModeReadable})
	}
	volume := haproxyVolumeName(cfg.Prefix)
	host := cfg.HostIP.String()
	h := HAProxy{Volume: volume}
	h.Spec = ContainerSpec{
		Name:     haproxyName(cfg.Prefix),
		Hostname: haproxyName(cfg.Prefix),
		Command:  render.HAProxyCommand(),
		IP:       cfg.HAProxyIP.String(),
		Ports: []PortSpec{
			{HostIP: host, Internal: render.AMQPPort, External: cfg.Ports.AMQP},
			{HostIP: host, Internal: render.AMQPSPort, External: cfg.Ports.AMQPS},
			{HostIP: host, Internal: render.ManagementPort, External: cfg.Ports.Management},
			{HostIP: host, Internal: render.StatsPort, External: cfg.Ports.Stats},
		},
		Files:      []FileSpec{scriptFile},
		Volume:     volume,
		VolumePath: render.HAProxyConfDir,
		Health: &HealthSpec{
			Test: haproxyHealth, Interval: healthInterval, Timeout: healthTimeout,
			StartPeriod: haproxyStartPeriod, Retries: healthRetries,
		},
		Restart: cfg.RestartPolicy,
		Labels:  labels(cfg.Prefix, RoleHAProxy, nil),
	}
	h.ConfigJob = ContainerSpec{
		Name:       configJobName(cfg.Prefix),
		Command:    render.InstallCommand(),
		User:       "root",
		Files:      jobFiles,
		Volume:     volume,
		VolumePath: render.HAProxyConfDir,
		Restart:    RestartNever,
		Labels:     labels(cfg.Prefix, RoleJob, nil),
	}
	return h, nil
}

// haproxyData is the haproxy.cfg data: every node by name and IP.
func haproxyData(cfg *config.Config, nodes []Node) render.HAProxyData {
	d := render.HAProxyData{StatsUser: cfg.StatsUser, StatsPassword: cfg.Secrets.StatsPassword}
	if cfg.TLS.ClientCACert != "" {
		d.ClientCADigest = render.Digest(cfg.TLS.ClientCACert)
	}
	for _, n := range nodes {
		d.Nodes = append(d.Nodes, render.Backend{Name: n.Container, IP: n.IP})
	}
	return d
}
