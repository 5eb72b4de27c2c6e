package migrate

import (
	"net/url"
	"strings"
)

// Shovel is a dynamic shovel that empties one old queue into its new one.
type Shovel struct {
	// Name is the shovel's, on the new cluster, in the queue's vhost.
	Name, VHost string
	// SourceURI and DestinationURI are AMQP URIs with the vhost in their
	// path; the source carries the old cluster's credentials.
	SourceURI, DestinationURI string
	Queue                     string
	// AckMode is on-confirm: a message leaves the old queue only once the
	// new cluster confirmed it, so a failure anywhere repeats a message,
	// never loses one.
	AckMode string
	// Prefetch bounds the unacknowledged messages in flight.
	Prefetch int
}

// ShovelPrefix names every shovel this stack owns.
const ShovelPrefix = "rabbitmq-ha-migrate-"

// shovelPrefetch is the shovels' prefetch: enough to keep a link busy,
// little enough that a restart redelivers few.
const shovelPrefetch = 500

// Shovels are the shovels of a move: one per moved queue, from the old
// cluster (oldAMQP, with its credentials) to this one (newAMQP, local to
// the nodes, e.g. amqp:// for the node the shovel runs on).
func Shovels(m Move, oldAMQP, newAMQP string) []Shovel {
	var out []Shovel
	for _, q := range m.Queues {
		out = append(out, Shovel{
			Name: ShovelPrefix + q.Name, VHost: q.VHost,
			SourceURI: WithVHost(oldAMQP, q.VHost), DestinationURI: WithVHost(newAMQP, q.VHost),
			Queue: q.Name, AckMode: "on-confirm", Prefetch: shovelPrefetch,
		})
	}
	return out
}

// WithVHost puts vhost in an AMQP URI's path, escaped as the AMQP URI
// spec requires ("/" is "%2F"); the rest of the URI is kept.
func WithVHost(uri, vhost string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri // validated before: never here
	}
	u.Path = "/" + vhost
	u.RawPath = "/" + strings.ReplaceAll(url.PathEscape(vhost), "/", "%2F")
	return u.String()
}
