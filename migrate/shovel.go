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

// ReconnectSeconds is how long a shovel waits before it reconnects after
// losing either side (RabbitMQ's default is 1 s; a lost old node comes
// back slower than that, and each attempt is logged).
const ReconnectSeconds = 5

// Value is the shovel as RabbitMQ's runtime parameter (rabbitmqctl
// set_parameter shovel NAME VALUE, or PUT /api/parameters/shovel/...): the
// same settings the components give pulumi-rabbitmq's Shovel. Messages keep
// their properties and headers: a shovel republishes them as they are.
func (s Shovel) Value() map[string]any {
	return map[string]any{
		"src-protocol": "amqp091", "src-uri": s.SourceURI, "src-queue": s.Queue,
		"src-prefetch-count": s.Prefetch, "src-delete-after": "never",
		"dest-protocol": "amqp091", "dest-uri": s.DestinationURI, "dest-queue": s.Queue,
		"ack-mode": s.AckMode, "reconnect-delay": ReconnectSeconds,
		// No x-shovelled header: consumers see the message as published.
		"dest-add-forward-headers": false,
	}
}
