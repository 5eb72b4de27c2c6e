// Package config loads, defaults and validates the stack configuration.
//
// Loading, defaulting and validation are three separate steps, each a plain
// function a test can call without the Pulumi engine:
//
//	raw   := FromContext(ctx)        // the stack's config and which keys are secret
//	cfg, err := Load(raw, project, stack) // parse + defaults + Validate, every error at once
//
// Every problem is reported with the key, the value and the rule, and all of
// them are reported together, before any resource is created.
package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// HA modes.
const (
	// HAModeMirrored is classic mirrored queues through the ha-all policy
	// (RabbitMQ 3.x only; 4.0 removed classic mirroring).
	HAModeMirrored = "mirrored"
	// HAModeQuorum makes quorum the default queue type (RabbitMQ 3.13+ and 4.x).
	HAModeQuorum = "quorum"
)

// Platforms: where the stack runs.
const (
	// PlatformDocker is one Docker host: a bridge network and containers.
	PlatformDocker = "docker"
	// PlatformSwarm is a Docker Swarm: an overlay network and services.
	PlatformSwarm = "swarm"
)

// HAProxy publish modes on Swarm.
const (
	// PublishHost publishes on the ports of each host that runs HAProxy.
	PublishHost = "host"
	// PublishIngress publishes through Swarm's routing mesh.
	PublishIngress = "ingress"
)

// Node types, as in `rabbitmqctl join_cluster [--ram]`.
const (
	NodeDisc = "disc"
	NodeRAM  = "ram"
)

// TLS key algorithms accepted by pulumi-tls.
const (
	KeyECDSA = "ECDSA"
	KeyRSA   = "RSA"
)

// MaxNodes bounds the cluster size: RabbitMQ recommends 3, 5 or 7 nodes, and
// the join step probes at most this many peers by name.
const MaxNodes = 9

// Config is the validated, defaulted stack configuration.
type Config struct {
	// Prefix names every Docker object, so stacks on one host never collide.
	Prefix string
	// Nodes is the RabbitMQ node count.
	Nodes int
	// NodeTypes holds disc or ram per node; always Nodes long after Load.
	NodeTypes []string
	// NodeIPs holds each node's static IP; always Nodes long after Load.
	NodeIPs []netip.Addr
	// Subnet is the bridge network's IPv4 subnet.
	Subnet netip.Prefix
	// Gateway is the bridge network's gateway.
	Gateway netip.Addr
	// HAProxyIP is HAProxy's static IP.
	HAProxyIP netip.Addr

	// RabbitMQImage and HAProxyImage are image references.
	RabbitMQImage string
	HAProxyImage  string
	// RabbitMQVersion is the major.minor the RabbitMQ image tag names, if any.
	RabbitMQVersion Version
	// HAMode is HAModeMirrored or HAModeQuorum.
	HAMode string
	// QuorumGroupSize is the member count every quorum queue is kept at
	// (haMode quorum only; 0 otherwise).
	QuorumGroupSize int

	// HostIP is the host address every published port binds to.
	HostIP netip.Addr
	// Ports are the host ports.
	Ports Ports

	// MemoryLimitMB is each node's memory limit.
	MemoryLimitMB int
	// DiskFreeLimitMB is the free disk space below which a node raises its
	// disk alarm.
	DiskFreeLimitMB int
	// NetTicktimeSeconds is Erlang's net_ticktime on every node.
	NetTicktimeSeconds int
	// StartTimeoutSeconds bounds how long `pulumi up` waits for a new or
	// replaced container to be healthy.
	StartTimeoutSeconds int
	// RestartPolicy is the Docker restart policy of every container.
	RestartPolicy string
	// RetainVolumes keeps the node volumes on destroy and on scale-down.
	RetainVolumes bool
	// RollingReplace replaces node containers one at a time.
	RollingReplace bool
	// AllowUnsupportedUpgrade lifts the version guard (CheckUpgrade).
	AllowUnsupportedUpgrade bool

	// AdminUser replaces guest; StatsUser guards the HAProxy stats page.
	AdminUser string
	StatsUser string
	// VHosts are the virtual hosts to create ("/" exists already).
	VHosts []string
	// Users are the application users.
	Users []User
	// MigrateFrom is the old cluster of a blue-green move; nil, none.
	MigrateFrom *MigrateFrom

	// TLS configures the generated CA and server certificate.
	TLS TLS

	// Platform is PlatformDocker or PlatformSwarm.
	Platform string
	// Swarm places the nodes on a Swarm (PlatformSwarm only).
	Swarm Swarm

	// Secrets holds the secret values, in plain text for validation only;
	// components wrap each in pulumi.ToSecret before use.
	Secrets Secrets
}

// Ports are the published host ports.
type Ports struct {
	AMQP, AMQPS, Stats, Management int
	// NodeAMQPBase is node 0's direct AMQP port; node i gets NodeAMQPBase+i.
	NodeAMQPBase int
	// MetricsBase is node 0's Prometheus port; node i gets MetricsBase+i.
	MetricsBase int
}

// NodeAMQP returns node i's direct AMQP host port.
func (p Ports) NodeAMQP(i int) int { return p.NodeAMQPBase + i }

// Metrics returns node i's Prometheus host port.
func (p Ports) Metrics(i int) int { return p.MetricsBase + i }

// Swarm is where a Swarm stack's containers run.
type Swarm struct {
	// Nodes holds each RabbitMQ node's Swarm node: a hostname, or
	// label=value; always Nodes long after Load on PlatformSwarm.
	Nodes []string
	// AllowColocation allows two RabbitMQ nodes on one Swarm node.
	AllowColocation bool
	// PublishMode is how HAProxy publishes its ports: PublishHost or
	// PublishIngress.
	PublishMode string
}

// IsSwarm reports whether the stack runs on a Docker Swarm.
func (c *Config) IsSwarm() bool { return c.Platform == PlatformSwarm }

// TLS configures the PKI.
type TLS struct {
	DNSNames          []string
	IPAddresses       []string
	KeyAlgorithm      string
	ValidityHours     int
	EarlyRenewalHours int
	// ClientCACert is the PEM bundle of the CAs whose client certificates
	// AMQPS requires (mutual TLS); empty, none is asked for.
	ClientCACert string
}

// Secrets are the secret config values.
type Secrets struct {
	ErlangCookie  string
	AdminPassword string
	StatsPassword string
}

// User is an application user.
type User struct {
	Name        string       `json:"name"`
	Password    string       `json:"password"`
	Tags        []string     `json:"tags,omitempty"`
	Permissions []Permission `json:"permissions,omitempty"`
}

// Permission grants a user access to one vhost, as regular expressions.
type Permission struct {
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// Version is a RabbitMQ major.minor release series.
type Version struct{ Major, Minor int }

// The versions that gate features, each named once.
var (
	// MinVersion is the oldest RabbitMQ the stack runs: 3.8 brought
	// rabbitmqctl await_startup, which the join step waits with.
	MinVersion = Version{3, 8}
	// QuorumDefaultSince brought default_queue_type, which haMode quorum sets.
	QuorumDefaultSince = Version{3, 13}
	// MirroringRemovedIn removed classic queue mirroring (haMode mirrored).
	MirroringRemovedIn = Version{4, 0}
	// DiscoveryByUptimeSince is the first line seen here whose peer
	// discovery joins the longest-running candidate, the node itself
	// included (3.10's never picks itself; 3.13 is not measured).
	DiscoveryByUptimeSince = Version{4, 0}
	// KhepriOnlySince keeps metadata in Khepri alone: no Mnesia, no RAM nodes.
	KhepriOnlySince = Version{4, 3}
)

// Known reports whether the version was read from a tag.
func (v Version) Known() bool { return v.Major > 0 }

// AtLeast reports whether v is o or newer.
func (v Version) AtLeast(o Version) bool {
	return v.Major > o.Major || (v.Major == o.Major && v.Minor >= o.Minor)
}

func (v Version) String() string {
	if !v.Known() {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// tagVersion matches the leading major.minor of a tag: 3.13-management, 4.0.5, 3.10-local.
var tagVersion = regexp.MustCompile(`^(\d+)\.(\d+)`)

// ImageVersion reads the release series from an image reference's tag.
// A reference without a version tag (latest, a digest) gives the zero Version.
func ImageVersion(ref string) Version { return ParseVersion(imageTag(ref)) }

// imageTag returns the tag of name[:tag][@digest], or "".
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	slash, colon := strings.LastIndex(ref, "/"), strings.LastIndex(ref, ":")
	if colon <= slash {
		return ""
	}
	return ref[colon+1:]
}
