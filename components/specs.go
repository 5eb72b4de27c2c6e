package components

import (
	"strconv"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// ContainerSpec is everything about a container that does not depend on
// another resource's outputs: plain data, from pure functions of the config.
// The components turn it into docker.ContainerArgs; the plugin-free
// integration tests run the very same spec with the docker CLI, so they test
// the stack's own files, commands and settings.
type ContainerSpec struct {
	Name     string
	Hostname string
	Command  []string
	// User overrides the image's user when set.
	User  string
	IP    string
	Ports []PortSpec
	Files []FileSpec
	// Volume is mounted at VolumePath when set.
	Volume, VolumePath string
	Health             *HealthSpec
	MemoryMB           int
	Restart            string
	StopTimeoutSeconds int
	Labels             map[string]string
	// Env holds plain settings only; secrets are files.
	Env map[string]string
}

// PortSpec publishes a container port on a host address.
type PortSpec struct {
	HostIP             string
	Internal, External int
}

// FileSpec is a file uploaded before the container starts.
type FileSpec struct {
	Path, Content, Mode string
	// Secret marks content that must stay secret in Pulumi state.
	Secret bool
}

// HealthSpec is a Docker healthcheck.
type HealthSpec struct {
	Test                           []string
	Interval, Timeout, StartPeriod string
	Retries                        int
}

// Node container settings.
const (
	// dataPath is the official image's data directory (and HOME).
	dataPath = "/var/lib/rabbitmq"
	// healthInterval is short because the check is cheap (a file test and a
	// TCP connect, no Erlang VM) and `pulumi up` waits on it.
	healthInterval = "1s"
	healthTimeout  = "5s"
	healthRetries  = 3
	// healthStartPeriod covers a join that backs off while the seed boots.
	healthStartPeriod = "5m0s"
)

// Logging: json-file (what `docker logs` reads) with rotation, so a chatty
// node never fills the disk.
const logDriver = "json-file"

var logOpts = map[string]string{"max-size": "10m", "max-file": "3"}

// erlArgs stop the Erlang schedulers from busy-waiting when idle. Several
// nodes share the host's cores, and spinning schedulers steal each other's
// CPU, most of all while they boot together. See
// https://www.rabbitmq.com/docs/runtime#busy-waiting
const erlArgs = "+sbwt none +sbwtdcpu none +sbwtdio none"

// healthTest passes once the cluster script has joined the node (ReadyFile)
// while AMQP still accepts connections.
var healthTest = []string{"CMD", "bash", "-c", "test -f " + render.ReadyFile + " && exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(render.AMQPPort)}

// NodeSpec returns node i's container.
func NodeSpec(cfg *config.Config, i int) (ContainerSpec, error) {
	shared, err := nodeSharedFiles(cfg)
	if err != nil {
		return ContainerSpec{}, err
	}
	conf, err := render.RabbitMQConf(render.RabbitMQData{
		Node:             cfg.ErlangNodeName(i),
		Seed:             seedOf(cfg, i),
		NodeType:         cfg.NodeTypes[i],
		Quorum:           cfg.HAMode == config.HAModeQuorum,
		Mnesia:           !cfg.Khepri(),
		MemoryLimitBytes: int64(cfg.MemoryLimitMB) << 20,
	})
	if err != nil {
		return ContainerSpec{}, err
	}
	host := cfg.NodeName(i)
	return ContainerSpec{
		Name:     host,
		Hostname: host,
		Command:  render.NodeCommand(cfg.NodeTypes[i]),
		IP:       cfg.NodeIPs[i].String(),
		Ports: []PortSpec{
			{HostIP: cfg.HostIP.String(), Internal: render.AMQPPort, External: cfg.Ports.NodeAMQP(i)},
			{HostIP: cfg.HostIP.String(), Internal: render.PrometheusPort, External: cfg.Ports.Metrics(i)},
		},
		Files: append([]FileSpec{
			{Path: render.RabbitMQConfPath, Content: conf, Mode: "0644"},
			{Path: render.EnabledPluginsPath, Content: render.EnabledPlugins, Mode: "0644"},
		}, shared...),
		Volume:     VolumeName(cfg, i),
		VolumePath: dataPath,
		Health: &HealthSpec{
			Test: healthTest, Interval: healthInterval, Timeout: healthTimeout,
			StartPeriod: healthStartPeriod, Retries: healthRetries,
		},
		MemoryMB:           cfg.MemoryLimitMB,
		Restart:            cfg.RestartPolicy,
		StopTimeoutSeconds: render.StopTimeoutSeconds,
		Labels:             labels(cfg.Prefix, RoleNode, map[string]string{LabelNode: strconv.Itoa(i)}),
		Env:                map[string]string{"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erlArgs},
	}, nil
}

// VolumeName is node i's data volume.
func VolumeName(cfg *config.Config, i int) string { return cfg.NodeName(i) + "-data" }

// ForgetJobSpec returns the job that forgets scaled-down nodes.
func ForgetJobSpec(cfg *config.Config) (ContainerSpec, error) {
	shared, err := nodeSharedFiles(cfg)
	if err != nil {
		return ContainerSpec{}, err
	}
	var names []string
	for i := 0; i < cfg.Nodes; i++ {
		names = append(names, cfg.ErlangNodeName(i))
	}
	return ContainerSpec{
		Name:    cfg.Prefix + "-forget-job",
		Command: render.ForgetCommand(names),
		Files:   shared[:2], // the script and the cookie, not the admin credentials
		Restart: "no",
		Labels:  labels(cfg.Prefix, RoleJob, nil),
	}, nil
}

// nodeSharedFiles are the files every RabbitMQ container gets: the cluster
// script, the cookie and the admin credentials, in that order.
func nodeSharedFiles(cfg *config.Config) ([]FileSpec, error) {
	script, err := render.ClusterScript(render.ClusterData{
		Seed:       cfg.ErlangNodeName(0),
		PeerPrefix: cfg.Prefix + "-node-",
		MaxNodes:   config.MaxNodes,
	})
	if err != nil {
		return nil, err
	}
	secrets, err := render.SecretsConf(render.SecretsData{AdminUser: cfg.AdminUser, AdminPassword: cfg.Secrets.AdminPassword})
	if err != nil {
		return nil, err
	}
	return []FileSpec{
		{Path: render.ScriptPath, Content: script, Mode: "0755"},
		{Path: render.CookieUploadPath, Content: cfg.Secrets.ErlangCookie, Mode: "0400", Secret: true},
		{Path: render.SecretsConfPath, Content: secrets, Mode: "0400", Secret: true},
	}, nil
}

// HAProxySpec returns HAProxy's container. Its haproxy.cfg and certificate
// bundle are not its files: the config job writes them into HAProxy's volume,
// and HAProxy reloads when they change, so neither a renewal nor a scale
// change re-creates the container.
func HAProxySpec(cfg *config.Config) (ContainerSpec, error) {
	script, err := render.HAProxyScript()
	if err != nil {
		return ContainerSpec{}, err
	}
	host := cfg.HostIP.String()
	return ContainerSpec{
		Name:     cfg.Prefix + "-haproxy",
		Hostname: cfg.Prefix + "-haproxy",
		Command:  render.HAProxyCommand(),
		IP:       cfg.HAProxyIP.String(),
		Ports: []PortSpec{
			{host, render.AMQPPort, cfg.Ports.AMQP},
			{host, render.AMQPSPort, cfg.Ports.AMQPS},
			{host, render.ManagementPort, cfg.Ports.Management},
			{host, render.StatsPort, cfg.Ports.Stats},
		},
		Files:      []FileSpec{{Path: render.HAProxyScriptPath, Content: script, Mode: "0755"}},
		Volume:     HAProxyVolumeName(cfg),
		VolumePath: render.HAProxyConfDir,
		// Healthy once the management frontend listens: the broker settings
		// go through it, so `pulumi up` waits for this.
		Health: &HealthSpec{
			Test:     []string{"CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(render.ManagementPort)},
			Interval: healthInterval, Timeout: healthTimeout, StartPeriod: "1m0s", Retries: healthRetries,
		},
		Restart: cfg.RestartPolicy,
		Labels:  labels(cfg.Prefix, RoleHAProxy, nil),
	}, nil
}

// HAProxyVolumeName is the volume that holds HAProxy's live haproxy.cfg and
// certificate bundle.
func HAProxyVolumeName(cfg *config.Config) string { return cfg.Prefix + "-haproxy-conf" }

// HAProxyConfigJobSpec returns the job that installs haproxy.cfg and the
// certificate bundle into HAProxy's volume. It runs as root, so it can make
// them readable by the haproxy user alone: the config holds the stats
// password, the bundle the key. The bundle comes from the PKI, so it is
// passed in: certPEM is an output in Pulumi, a test's own PEM in the
// integration tests.
func HAProxyConfigJobSpec(cfg *config.Config, certPEM string) (ContainerSpec, error) {
	text, err := render.HAProxyConfig(HAProxyData(cfg))
	if err != nil {
		return ContainerSpec{}, err
	}
	script, err := render.HAProxyScript()
	if err != nil {
		return ContainerSpec{}, err
	}
	return ContainerSpec{
		Name:    cfg.Prefix + "-haproxy-config-job",
		Command: render.InstallCommand(),
		User:    "root",
		Files: []FileSpec{
			{Path: render.HAProxyScriptPath, Content: script, Mode: "0755"},
			{Path: render.Staged(render.HAProxyConfigPath), Content: text, Mode: "0400", Secret: true},
			{Path: render.Staged(render.HAProxyCertPath), Content: certPEM, Mode: "0400", Secret: true},
		},
		Volume:     HAProxyVolumeName(cfg),
		VolumePath: render.HAProxyConfDir,
		Restart:    "no",
		Labels:     labels(cfg.Prefix, RoleJob, nil),
	}, nil
}

// HAProxyData is the haproxy.cfg data of a config: every node by name and IP.
func HAProxyData(cfg *config.Config) render.HAProxyData {
	d := render.HAProxyData{StatsUser: cfg.StatsUser, StatsPassword: cfg.Secrets.StatsPassword}
	for i := 0; i < cfg.Nodes; i++ {
		d.Nodes = append(d.Nodes, render.Backend{Name: cfg.NodeName(i), IP: cfg.NodeIPs[i].String()})
	}
	return d
}

// seedOf returns the node node i joins at boot: node 0 for every other node.
func seedOf(cfg *config.Config, i int) string {
	if i == 0 {
		return ""
	}
	return cfg.ErlangNodeName(0)
}

// containerArgs turns a spec into the provider's inputs. The other arguments
// carry what depends on other resources: the image, the network, the volume,
// and file contents by path.
func containerArgs(s ContainerSpec, image, network pulumi.StringInput, volume pulumi.StringInput, content map[string]pulumi.StringInput) *docker.ContainerArgs {
	a := &docker.ContainerArgs{
		Name:    pulumi.String(s.Name),
		Image:   image,
		Restart: pulumi.String(s.Restart),
		Labels:  containerLabels(s.Labels),
	}
	if s.Hostname != "" {
		a.Hostname = pulumi.String(s.Hostname)
	}
	if s.User != "" {
		a.User = pulumi.String(s.User)
	}
	if len(s.Command) > 0 {
		a.Command = pulumi.ToStringArray(s.Command)
	}
	netArgs := docker.ContainerNetworksAdvancedArgs{Name: network}
	if s.IP != "" {
		netArgs.Ipv4Address = pulumi.String(s.IP)
	}
	a.NetworksAdvanced = docker.ContainerNetworksAdvancedArray{netArgs}
	var ports docker.ContainerPortArray
	for _, p := range s.Ports {
		// Protocol and IP are always explicit: left empty they come back from
		// Docker filled in, and every `pulumi preview` would show a diff.
		ports = append(ports, docker.ContainerPortArgs{
			Internal: pulumi.Int(p.Internal),
			External: pulumi.Int(p.External),
			Ip:       pulumi.String(p.HostIP),
			Protocol: pulumi.String("tcp"),
		})
	}
	if len(ports) > 0 {
		a.Ports = ports
	}
	var uploads docker.ContainerUploadArray
	for _, f := range s.Files {
		var c pulumi.StringInput = pulumi.String(f.Content)
		if o, ok := content[f.Path]; ok {
			c = o
		} else if f.Secret {
			c = secret(f.Content)
		}
		uploads = append(uploads, docker.ContainerUploadArgs{
			File:        pulumi.String(f.Path),
			Content:     c,
			Permissions: pulumi.String(f.Mode),
		})
	}
	a.Uploads = uploads
	if s.Volume != "" {
		a.Volumes = docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
			VolumeName:    volume,
			ContainerPath: pulumi.String(s.VolumePath),
		}}
	}
	if h := s.Health; h != nil {
		a.Healthcheck = docker.ContainerHealthcheckArgs{
			Tests:       pulumi.ToStringArray(h.Test),
			Interval:    pulumi.String(h.Interval),
			Timeout:     pulumi.String(h.Timeout),
			StartPeriod: pulumi.String(h.StartPeriod),
			Retries:     pulumi.Int(h.Retries),
		}
	}
	if len(s.Env) > 0 {
		var env []string
		for _, k := range sortedKeys(s.Env) {
			env = append(env, k+"="+s.Env[k])
		}
		a.Envs = pulumi.ToStringArray(env)
	}
	if s.MemoryMB > 0 {
		// Swap equal to memory means no swap: a swapping broker stalls its
		// clients instead of raising its memory alarm.
		a.Memory = pulumi.Int(s.MemoryMB)
		a.MemorySwap = pulumi.Int(s.MemoryMB)
	}
	// The log driver and its rotation are explicit: left to the daemon's
	// defaults they come back filled in, and every preview shows a diff.
	a.LogDriver = pulumi.String(logDriver)
	a.LogOpts = pulumi.ToStringMap(logOpts)
	if s.StopTimeoutSeconds > 0 {
		a.StopTimeout = pulumi.Int(s.StopTimeoutSeconds)
		a.DestroyGraceSeconds = pulumi.Int(s.StopTimeoutSeconds)
	}
	return a
}
