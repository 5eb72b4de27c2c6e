package plan

import "fmt"

// Names is everything one node is called. NodeNames is the one place that
// knows the scheme; the cluster script finds its peers by the same scheme
// through PeerPrefix.
type Names struct {
	// Container is the node's container name and hostname: <prefix>-node-<i>.
	Container string
	// Erlang is its RabbitMQ node name: rabbit@<container>.
	Erlang string
	// Volume is its data volume: <container>-data.
	Volume string
}

// NodeNames returns node i's names in the stack with this prefix.
func NodeNames(prefix string, i int) Names {
	c := fmt.Sprintf("%s%d", PeerPrefix(prefix), i)
	return Names{Container: c, Erlang: "rabbit@" + c, Volume: c + "-data"}
}

// PeerPrefix is a node's hostname without its index: "<prefix>-node-".
func PeerPrefix(prefix string) string { return prefix + "-node-" }

// Names of the stack's other objects.
func haproxyName(prefix string) string       { return prefix + "-haproxy" }
func haproxyVolumeName(prefix string) string { return prefix + "-haproxy-conf" }
func configJobName(prefix string) string     { return prefix + "-haproxy-config-job" }
func migrationJobName(prefix string) string  { return prefix + "-migration-job" }
func forgetJobName(prefix string) string     { return prefix + "-forget-job" }
