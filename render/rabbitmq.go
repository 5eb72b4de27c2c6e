package render

import (
	_ "embed"
	"fmt"
	"text/template"
)

var (
	//go:embed rabbitmq.conf.tmpl
	rabbitmqText     string
	rabbitmqTemplate = template.Must(template.New("rabbitmq.conf").Parse(rabbitmqText))

	//go:embed secrets.conf.tmpl
	secretsText     string
	secretsTemplate = template.Must(template.New("secrets.conf").Parse(secretsText))
)

// RabbitMQData is what one node's rabbitmq.conf is rendered from. It holds
// nothing about the other nodes, so scaling the cluster changes no existing
// node's file and re-creates no existing container.
type RabbitMQData struct {
	// Node is this node's name, rabbit@host.
	Node string
	// Seed is the node to join at boot; empty for the seed itself.
	Seed string
	// NodeType is disc or ram.
	NodeType string
	// Quorum makes quorum the default queue type.
	Quorum bool
	// Mnesia is set where Mnesia is the metadata store (before 4.3): only
	// there is a partition-handling strategy a setting.
	Mnesia bool
	// MemoryLimitBytes is the container's memory limit.
	MemoryLimitBytes int64
	// DiskFreeLimitMB is the free space below which the disk alarm rises.
	DiskFreeLimitMB int
	// NetTicktime is Erlang's net_ticktime, in seconds.
	NetTicktime int
	// TLS adds the AMQPS and management TLS listeners, with the node's
	// certificate (NodeTLSDir): what crosses hosts on Swarm.
	TLS bool
}

// MemoryHighWatermark is the share of the memory RabbitMQ is told it has
// (MemoryAvailableBytes) at which a node raises its memory alarm and
// blocks publishers.
const MemoryHighWatermark = 0.6

// MemoryAvailableBytes is the memory a node is told it has: its container's
// limit less the Erlang VM's headroom, a fifth of the limit or 2 GiB,
// whichever is less, as the RabbitMQ cluster operator does. The watermark
// only throttles publishers; a node goes on using memory past it while it
// delivers a backlog or deletes a queue, and with the watermark at 0.6 of
// the whole limit a 4.0 node was OOM-killed at 499 MB of its 512 MB
// (docs/RELIABILITY.md, the memory case).
func MemoryAvailableBytes(limit int64) int64 {
	const maxHeadroom = 2 << 30
	return limit - min(limit/5, maxHeadroom)
}

// MemoryWatermarkBytes is the memory alarm's threshold for a container
// limit, as RabbitMQ computes it from the rendered settings.
func MemoryWatermarkBytes(limit int64) int64 {
	return int64(float64(MemoryAvailableBytes(limit)) * MemoryHighWatermark)
}

// WALMaxSizeBytes is the size at which Ra's write-ahead log (quorum queues,
// Khepri) flushes to segment files: a quarter of the memory limit. Until it
// flushes, the log's entries stay in memory as well, so upstream advises a
// node at least 3, better 4, times this much memory; its default, 512 MiB,
// would need 2 GiB.
func WALMaxSizeBytes(limit int64) int64 { return limit / 4 }

// RabbitMQConf renders a node's rabbitmq.conf.
func RabbitMQConf(d RabbitMQData) (string, error) {
	return execute(rabbitmqTemplate, struct {
		RabbitMQData
		Header                                   string
		AMQPPort, ManagementPort, PrometheusPort int
		AMQPSPort, ManagementTLSPort             int
		NodeCAPath, NodeCertPath, NodeKeyPath    string
		Watermark                                float64
		MemoryAvailableBytes, WALMaxSizeBytes    int64
	}{RabbitMQData: d, Header: Header, AMQPPort: AMQPPort, ManagementPort: ManagementPort, PrometheusPort: PrometheusPort,
		AMQPSPort: AMQPSPort, ManagementTLSPort: ManagementTLSPort, NodeCAPath: NodeCAPath, NodeCertPath: NodeCertPath, NodeKeyPath: NodeKeyPath,
		Watermark: MemoryHighWatermark, MemoryAvailableBytes: MemoryAvailableBytes(d.MemoryLimitBytes), WALMaxSizeBytes: WALMaxSizeBytes(d.MemoryLimitBytes)})
}

// InterNodeTLSConfig is inter_node_tls.config: the Erlang distribution's
// TLS options, server and client side alike. Each side presents the
// nodes' certificate and verifies the other's against the stack's CA, so a
// peer without a certificate of this stack cannot connect, cookie or not.
func InterNodeTLSConfig() string {
	opts := fmt.Sprintf(`{cacertfile, %q}, {certfile, %q}, {keyfile, %q}, {secure_renegotiate, true}, {verify, verify_peer}`,
		NodeCAPath, NodeCertPath, NodeKeyPath)
	return "%% " + Header[2:] + "\n" +
		"%% The Erlang distribution over TLS: https://www.rabbitmq.com/docs/clustering-ssl\n" +
		"[{server, [" + opts + ", {fail_if_no_peer_cert, true}]},\n" +
		" {client, [" + opts + "]}].\n"
}

// SecretsData is what the secrets conf file is rendered from.
type SecretsData struct {
	AdminUser, AdminPassword string
}

// SecretsConf renders the conf.d file holding the admin credentials.
func SecretsConf(d SecretsData) (string, error) {
	return execute(secretsTemplate, struct {
		SecretsData
		Header string
	}{SecretsData: d, Header: Header})
}
