package config

import "strconv"

// Key documents one config key. Keys is the single source of truth for the
// key names, their types, defaults and descriptions: Pulumi.yaml's schema and
// the README's config reference are checked against it by tests.
type Key struct {
	Name    string
	Type    string // string, integer, boolean or array, as in Pulumi.yaml
	Default string // the default as a YAML/JSON scalar or array; "" means derived
	// Secret keys are required and must be set with --secret. The program
	// checks both, with every other rule: Pulumi.yaml gives them an empty
	// default and no `secret: true`, because Pulumi's own checks of those
	// would stop the run first and hide every other problem.
	Secret      bool
	Description string
}

// Key names.
const (
	KeyPrefix           = "prefix"
	KeyNodes            = "nodes"
	KeyNodeTypes        = "nodeTypes"
	KeyNodeIPs          = "nodeIPs"
	KeySubnet           = "subnet"
	KeyGateway          = "gateway"
	KeyHAProxyIP        = "haproxyIP"
	KeyRabbitMQImage    = "rabbitmqImage"
	KeyHAProxyImage     = "haproxyImage"
	KeyHAMode           = "haMode"
	KeyQuorumGroupSize  = "quorumGroupSize"
	KeyHostIP           = "hostIP"
	KeyAMQPPort         = "amqpPort"
	KeyAMQPSPort        = "amqpsPort"
	KeyStatsPort        = "statsPort"
	KeyManagementPort   = "managementPort"
	KeyNodeAMQPPortBase = "nodeAmqpPortBase"
	KeyMetricsPortBase  = "metricsPortBase"
	KeyMemoryLimitMB    = "memoryLimitMb"
	KeyNetTicktime      = "netTicktimeSeconds"
	KeyStartTimeout     = "startTimeoutSeconds"
	KeyDiskFreeLimitMB  = "diskFreeLimitMb"
	KeyRestartPolicy    = "restartPolicy"
	KeyRetainVolumes    = "retainVolumes"
	KeyRollingReplace   = "rollingReplace"
	KeyAllowUpgrade     = "allowUnsupportedUpgrade"
	KeyAdminUser        = "adminUser"
	KeyStatsUser        = "statsUser"
	KeyVHosts           = "vhosts"
	KeyUsers            = "users"
	KeyTLSDNSNames      = "tlsDnsNames"
	KeyTLSIPAddresses   = "tlsIpAddresses"
	KeyTLSKeyAlgorithm  = "tlsKeyAlgorithm"
	KeyTLSValidityHours = "tlsValidityHours"
	KeyTLSEarlyRenewal  = "tlsEarlyRenewalHours"
	KeyTLSClientCACert  = "tlsClientCaCert"
	KeyMigrateFrom      = "migrateFrom"
	KeyPlatform         = "platform"
	KeySwarmNodes       = "swarmNodes"
	KeySwarmColocate    = "swarmAllowColocation"
	KeyHAProxyPublish   = "haproxyPublishMode"
	KeyErlangCookie     = "erlangCookie"
	KeyAdminPassword    = "adminPassword"
	KeyStatsPassword    = "statsPassword"
)

// Default values that other packages and tests refer to.
const (
	// DefaultRabbitMQImage is an official management tag of the current
	// release line, 4.3 (Khepri).
	DefaultRabbitMQImage = "rabbitmq:4.3-management"
	// DefaultHAProxyImage is the current HAProxy LTS line's official tag.
	DefaultHAProxyImage = "haproxy:3.2"
	// DefaultSubnet is the recipe's bridge subnet.
	DefaultSubnet = "10.9.0.0/16"
	// DefaultNetTicktime is the net_ticktime the nodes run with.
	DefaultNetTicktime = 15
	// DefaultStartTimeout is how long, in seconds, `pulumi up` waits for a
	// container to be healthy.
	DefaultStartTimeout = 360
	// DefaultHostIP keeps every published port off external interfaces.
	DefaultHostIP = "127.0.0.1"
)

// Keys lists every config key, in the order the README documents them.
var Keys = []Key{
	{KeyPrefix, "string", "", false, "Prefix of every Docker object name (containers, network, volumes). Default: <project>-<stack>, so stacks on one host never collide."},
	{KeyNodes, "integer", "3", false, "Number of RabbitMQ nodes: odd, 1 to 9, so a majority survives the loss of a minority."},
	{KeyNodeTypes, "array", "[]", false, "Per-node type, disc or ram, by index; missing entries are disc. Node 0 is always disc. RAM nodes are deprecated upstream."},
	{KeyNodeIPs, "array", "[]", false, "Per-node static IPv4 address, by index; missing entries are derived from the subnet (.10, .11, ...)."},
	{KeySubnet, "string", DefaultSubnet, false, "IPv4 subnet of the bridge network. Give each stack on one host its own."},
	{KeyGateway, "string", "", false, "Gateway of the bridge network. Default: the subnet's first address."},
	{KeyHAProxyIP, "string", "", false, "Static IPv4 address of HAProxy. Default: the subnet's second address."},
	{KeyRabbitMQImage, "string", DefaultRabbitMQImage, false, "RabbitMQ image with the official image's contract. Its tag's major.minor drives HA-mode and upgrade validation."},
	{KeyHAProxyImage, "string", DefaultHAProxyImage, false, "HAProxy image with the official image's contract."},
	{KeyHAMode, "string", "", false, "quorum (quorum queues by default, RabbitMQ 3.13+ and 4.x) or mirrored (the ha-all policy, 3.x only). Default: quorum, or mirrored for an image tag older than 3.13."},
	{KeyQuorumGroupSize, "integer", "0", false, "haMode quorum: the members every quorum queue keeps (the policy's target-group-size): odd, 1 to nodes. RabbitMQ grows queues to it after a scale-up or a node back on an empty volume, and a scale-down moves the leaving nodes' members first. 0: nodes, at most 7 (RabbitMQ advises no more)."},
	{KeyHostIP, "string", DefaultHostIP, false, "Host address every published port binds to."},
	{KeyAMQPPort, "integer", "56729", false, "Host port of AMQP through HAProxy."},
	{KeyAMQPSPort, "integer", "56671", false, "Host port of AMQPS (TLS terminated at HAProxy)."},
	{KeyStatsPort, "integer", "51080", false, "Host port of the HAProxy stats page."},
	{KeyManagementPort, "integer", "55672", false, "Host port of the management UI/API, balanced over the nodes by HAProxy."},
	{KeyNodeAMQPPortBase, "integer", "56720", false, "Host port of node 0's direct AMQP listener; node i gets this plus i."},
	{KeyMetricsPortBase, "integer", "56780", false, "Host port of node 0's Prometheus endpoint (rabbitmq_prometheus, :15692 in the container); node i gets this plus i."},
	{KeyMemoryLimitMB, "integer", "512", false, "Memory limit of each node container, in MiB (at least 256). The memory alarm rises at 0.48 of it: 0.6 of the limit less a fifth kept for the Erlang VM."},
	{KeyDiskFreeLimitMB, "integer", "0", false, "Free disk space, in MB, below which a node raises its disk alarm and blocks every publisher in the cluster (RabbitMQ's disk_free_limit), at least 50. 0: the node's memory limit, the least RabbitMQ's production checklist advises."},
	{KeyNetTicktime, "integer", strconv.Itoa(DefaultNetTicktime), false, "Erlang's net_ticktime, in seconds (5 to 120): a node cut off from the others is seen as down after 0.75 to 1.25 times this. Erlang's default, 60, leaves a 30 s partition unseen: pause_minority never pauses, and a queue leader on the cut-off node keeps its clients waiting."},
	{KeyStartTimeout, "integer", strconv.Itoa(DefaultStartTimeout), false, "How long, in seconds (30 to 3600), `pulumi up` waits for each new or replaced container, a node or HAProxy, to be healthy, and a rolling replacement for each node; past it, up fails and names the container. A late node is still joined when it comes."},
	{KeyRestartPolicy, "string", "unless-stopped", false, "Docker restart policy of every container: no, on-failure, always or unless-stopped."},
	{KeyRetainVolumes, "boolean", "false", false, "Keep node data volumes when nodes are removed or the stack is destroyed."},
	{KeyRollingReplace, "boolean", "true", false, "Replace node containers one at a time when a change re-creates them (image, rabbitmq.conf, uploads): each is drained first, and the next waits until it is healthy again. Uses resource hooks, so `pulumi destroy` needs --run-program. false replaces them all at once."},
	{KeyAllowUpgrade, "boolean", "false", false, "Allow a rabbitmqImage change that RabbitMQ does not support in place: a downgrade, or a path not in RabbitMQ's upgrade matrix (3.10 to 4.0, 4.1 to 4.3). For those who know better; back up first."},
	{KeyAdminUser, "string", "admin", false, "Administrator user that replaces guest; pulumi-rabbitmq connects as this user."},
	{KeyStatsUser, "string", "admin", false, "User of the HAProxy stats page."},
	{KeyVHosts, "array", `["/"]`, false, "Virtual hosts to create. \"/\" always exists."},
	{KeyUsers, "array", "[]", false, "Application users: objects {name, password, tags, permissions: [{vhost, configure, write, read}]}. Set with --secret --path, e.g. users[0].password."},
	{KeyTLSDNSNames, "array", `["localhost"]`, false, "DNS SANs of the HAProxy server certificate."},
	{KeyTLSIPAddresses, "array", `["127.0.0.1"]`, false, "IP SANs of the HAProxy server certificate."},
	{KeyTLSKeyAlgorithm, "string", KeyECDSA, false, "Key algorithm of the CA and server keys: ECDSA (P-256) or RSA (3072 bits)."},
	{KeyTLSValidityHours, "integer", "8760", false, "Validity of the server certificate, in hours. The CA lives ten times as long."},
	{KeyTLSEarlyRenewal, "integer", "720", false, "Hours before expiry at which `pulumi up` renews the server certificate."},
	{KeyTLSClientCACert, "string", "", false, "Mutual TLS: PEM of the CA certificate(s) whose client certificates HAProxy's AMQPS port requires. Empty: no client certificate is asked for."},
	{KeyMigrateFrom, "object", "", false, "Blue-green move from an old cluster (3.x, classic mirrored queues): {managementUrl, amqpUrl, user, password, vhosts, keepClassic, network}. The stack imports the old vhosts' definitions (queues become quorum queues, except keepClassic's \"vhost/queue\" entries) and shovels every moved queue's messages here, acknowledged on confirm; network, where set, is a Docker network of the old cluster that the nodes join. Set with --secret --path, e.g. migrateFrom.password. Remove it after the cut-over: the shovels go with it. See the RUNBOOK."},
	{KeyPlatform, "string", PlatformDocker, false, "Where the stack runs: docker (one Docker host: a bridge network and containers) or swarm (a Docker Swarm of several hosts: an overlay network and one service per node, placed by swarmNodes; the docker provider's docker:host names the manager). See the README, More than one host."},
	{KeySwarmNodes, "array", "[]", false, "platform swarm: the Swarm node each RabbitMQ node runs on, by index, one entry per node: a hostname (node.hostname==h) or label=value (node.labels.label==value). A node's data volume lives on that host, so the entry pins it there. Two RabbitMQ nodes on one Swarm node are refused unless swarmAllowColocation."},
	{KeySwarmColocate, "boolean", "false", false, "platform swarm: allow two RabbitMQ nodes on one Swarm node. Losing that host then loses both, and a 3-node cluster its majority."},
	{KeyHAProxyPublish, "string", PublishHost, false, "platform swarm: how HAProxy, which runs on every Swarm node, publishes its ports: host (each host's own ports, the default) or ingress (Swarm's routing mesh)."},
	{KeyErlangCookie, "string", "", true, "Required secret. Shared Erlang cookie: 20 to 255 letters and digits."},
	{KeyAdminPassword, "string", "", true, "Required secret. Password of adminUser (at least 12 characters)."},
	{KeyStatsPassword, "string", "", true, "Required secret. Password of the HAProxy stats page (at least 12 characters)."},
}
