package render

import (
	_ "embed"
	"fmt"
	"strconv"
	"text/template"
)

//go:embed cluster.sh.tmpl
var clusterText string

var clusterTemplate = template.Must(template.New("cluster.sh").Parse(clusterText))

// Join step tuning. See cluster.sh.tmpl for how they are used.
const (
	// JoinAttempts bounds the join retries: about 5 minutes with the backoff.
	JoinAttempts = 18
	// ForgetTimeoutSeconds bounds how long the forget job waits for removed
	// nodes to stop.
	ForgetTimeoutSeconds = 600
	// StopTimeoutSeconds is the node containers' stop timeout: how long
	// Docker waits after SIGTERM before it kills a node.
	StopTimeoutSeconds = 90
	// HandoverSeconds bounds the wait on SIGTERM for another node to hold a
	// synchronised copy of every queue this node leads; RabbitMQ then has
	// the rest of StopTimeoutSeconds to stop cleanly.
	HandoverSeconds = StopTimeoutSeconds - 30
	// PartitionCheckSeconds and PartitionGraceChecks pace the partition
	// watch of the Mnesia lines: a node on the minority side of a recorded
	// partition for this many checks in a row restarts its application.
	PartitionCheckSeconds = 5
	PartitionGraceChecks  = 3
)

// ClusterData is what the cluster script is rendered from. It is the same
// for every node: a node learns its own name from its hostname and its type
// from its command, so scaling changes no existing node.
type ClusterData struct {
	// Seed is the first node's name, rabbit@<prefix>-node-0.
	Seed string
	// PeerPrefix is the hostname of node i without i: "<prefix>-node-".
	PeerPrefix string
	// MaxNodes bounds the peer probe.
	MaxNodes int
	// SeedFirst: a fresh non-seed node starts RabbitMQ only after the
	// seed's container runs (config.Config.SeedStartsFirst).
	SeedFirst bool
	// PartitionWatch runs the partition watch: on the lines whose metadata
	// store is Mnesia, where a partition can outlast its cause.
	PartitionWatch bool
	// DistTLS: the nodes speak the Erlang distribution over TLS (Swarm),
	// so the script asks nodes through rabbitmqctl, not erl_call.
	DistTLS bool
}

// ClusterScript renders cluster.sh.
func ClusterScript(d ClusterData) (string, error) {
	if d.Seed == "" || d.PeerPrefix == "" || d.MaxNodes < 1 {
		return "", fmt.Errorf("render cluster.sh: incomplete data %+v", d)
	}
	return execute(clusterTemplate, struct {
		ClusterData
		Header                                                        string
		CookieFile, SecretsConf, ReadyFile                            string
		JoinAttempts, ForgetTimeoutSeconds, HandoverSeconds, AMQPPort int
		PartitionCheckSeconds, PartitionGraceChecks                   int
	}{
		ClusterData: d, Header: Header,
		CookieFile: CookieUploadPath, SecretsConf: SecretsConfPath, ReadyFile: ReadyFile,
		JoinAttempts: JoinAttempts, ForgetTimeoutSeconds: ForgetTimeoutSeconds, HandoverSeconds: HandoverSeconds, AMQPPort: AMQPPort,
		PartitionCheckSeconds: PartitionCheckSeconds, PartitionGraceChecks: PartitionGraceChecks,
	})
}

// NodeCommand is a node container's command.
func NodeCommand(nodeType string) []string { return []string{ScriptPath, "node", nodeType} }

// DrainCommand takes a node out of service before it is stopped, waiting
// at most seconds for each step.
func DrainCommand(seconds int) []string {
	return []string{ScriptPath, "drain", strconv.Itoa(seconds)}
}

// ForgetCommand is the forget job's command: forget every member but these.
func ForgetCommand(members []string) []string {
	return append([]string{ScriptPath, "forget-removed"}, members...)
}
