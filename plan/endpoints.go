package plan

import (
	"fmt"
	"net/url"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
)

// Endpoints are the stack's URLs, as a client on the Docker host reaches them.
type Endpoints struct {
	AMQP, AMQPS, Management, Stats string
	// Nodes are the nodes' direct AMQP URLs; Metrics their Prometheus URLs.
	Nodes, Metrics []string
}

// EndpointsOf derives the endpoints from a config. A host IP of 0.0.0.0
// is reached through 127.0.0.1; AMQPS uses the certificate's first name, so
// clients that verify the server name succeed.
func EndpointsOf(cfg *config.Config) Endpoints {
	host := cfg.HostIP.String()
	if cfg.HostIP.IsUnspecified() {
		host = "127.0.0.1"
	}
	tlsHost := host
	if len(cfg.TLS.DNSNames) > 0 {
		tlsHost = cfg.TLS.DNSNames[0]
	} else if len(cfg.TLS.IPAddresses) > 0 {
		tlsHost = cfg.TLS.IPAddresses[0]
	}
	e := Endpoints{
		AMQP:       fmt.Sprintf("amqp://%s:%d/", host, cfg.Ports.AMQP),
		AMQPS:      fmt.Sprintf("amqps://%s:%d/", tlsHost, cfg.Ports.AMQPS),
		Management: fmt.Sprintf("http://%s:%d", host, cfg.Ports.Management),
		Stats:      fmt.Sprintf("http://%s:%d/", host, cfg.Ports.Stats),
	}
	for i := 0; i < cfg.Nodes; i++ {
		e.Nodes = append(e.Nodes, fmt.Sprintf("amqp://%s:%d/", host, cfg.Ports.NodeAMQP(i)))
		e.Metrics = append(e.Metrics, fmt.Sprintf("http://%s:%d/metrics", host, cfg.Ports.Metrics(i)))
	}
	return e
}

// WithUser adds credentials to a URL.
func WithUser(raw, user, password string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}
