package components

import (
	"fmt"
	"net/url"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/rolling"
)

// Cluster is the whole stack: network, PKI, nodes, HAProxy and broker
// settings, with the endpoints applications need.
type Cluster struct {
	pulumi.ResourceState

	// AMQPURL is AMQP through HAProxy, without credentials.
	AMQPURL pulumi.StringOutput `pulumi:"amqpUrl"`
	// AMQPSURL is AMQPS through HAProxy; its host is a name in the certificate.
	AMQPSURL pulumi.StringOutput `pulumi:"amqpsUrl"`
	// AdminAMQPURL is AMQP through HAProxy as the admin user. Secret.
	AdminAMQPURL pulumi.StringOutput `pulumi:"adminAmqpUrl"`
	// NodeEndpoints are the nodes' direct AMQP URLs, for consumers.
	NodeEndpoints pulumi.StringArrayOutput `pulumi:"nodeEndpoints"`
	// MetricsEndpoints are the nodes' Prometheus URLs, to scrape.
	MetricsEndpoints pulumi.StringArrayOutput `pulumi:"metricsEndpoints"`
	// ManagementURL is the management UI/API through HAProxy.
	ManagementURL pulumi.StringOutput `pulumi:"managementUrl"`
	// StatsURL is the HAProxy stats page.
	StatsURL pulumi.StringOutput `pulumi:"statsUrl"`
	// CACertPEM is the CA that signs HAProxy's certificate.
	CACertPEM pulumi.StringOutput `pulumi:"caCertPem"`
	// NodeNames are the RabbitMQ node names.
	NodeNames pulumi.StringArrayOutput `pulumi:"nodeNames"`
	// AdminUser is the admin user's name.
	AdminUser pulumi.StringOutput `pulumi:"adminUser"`
	// HAMode is mirrored or quorum.
	HAMode pulumi.StringOutput `pulumi:"haMode"`
}

// NewCluster creates the stack from a validated config. With a Docker
// engine, node containers are replaced one at a time (package rolling);
// without one, all at once.
func NewCluster(ctx *pulumi.Context, name string, cfg *config.Config, docker rolling.Engine, opts ...pulumi.ResourceOption) (*Cluster, error) {
	c := &Cluster{}
	if err := ctx.RegisterComponentResource(typePrefix+"Cluster", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	network, err := NewNetwork(ctx, name+"-network", cfg, parent)
	if err != nil {
		return nil, err
	}
	pki, err := NewPKI(ctx, name+"-pki", cfg, parent)
	if err != nil {
		return nil, err
	}
	hooks, err := newRollingHooks(ctx, cfg, docker)
	if err != nil {
		return nil, wrap("rolling replacement hooks", err)
	}
	nodes, err := NewNodes(ctx, name+"-node", &NodesArgs{Config: cfg, Network: network.Name, Hooks: hooks.node}, parent)
	if err != nil {
		return nil, err
	}
	lb, err := NewLoadBalancer(ctx, name+"-haproxy", &LoadBalancerArgs{
		Config: cfg, Network: network.Name, ServerPEM: pki.ServerPEM, Nodes: nodes.Containers, Hooks: hooks.haproxy,
	}, parent)
	if err != nil {
		return nil, err
	}
	e := EndpointsOf(cfg)
	_, err = NewBroker(ctx, name+"-broker", &BrokerArgs{
		Config:        cfg,
		ManagementURL: pulumi.String(e.Management),
		DependsOn:     append(containerResources(nodes.Containers), lb.Container),
		PolicyHooks:   hooks.policy,
	}, parent)
	if err != nil {
		return nil, err
	}

	c.AMQPURL = pulumi.String(e.AMQP).ToStringOutput()
	c.AMQPSURL = pulumi.String(e.AMQPS).ToStringOutput()
	c.AdminAMQPURL = secret(e.withUser(e.AMQP, cfg.AdminUser, cfg.Secrets.AdminPassword))
	c.NodeEndpoints = pulumi.ToStringArray(e.Nodes).ToStringArrayOutput()
	c.MetricsEndpoints = pulumi.ToStringArray(e.Metrics).ToStringArrayOutput()
	c.ManagementURL = pulumi.String(e.Management).ToStringOutput()
	c.StatsURL = pulumi.String(e.Stats).ToStringOutput()
	c.CACertPEM = pki.CACertPEM
	c.NodeNames = nodes.Names
	c.AdminUser = pulumi.String(cfg.AdminUser).ToStringOutput()
	c.HAMode = pulumi.String(cfg.HAMode).ToStringOutput()
	return c, ctx.RegisterResourceOutputs(c, c.Outputs())
}

// Outputs returns the stack outputs, by name.
func (c *Cluster) Outputs() pulumi.Map {
	return pulumi.Map{
		"amqpUrl":          c.AMQPURL,
		"amqpsUrl":         c.AMQPSURL,
		"adminAmqpUrl":     c.AdminAMQPURL,
		"nodeEndpoints":    c.NodeEndpoints,
		"metricsEndpoints": c.MetricsEndpoints,
		"managementUrl":    c.ManagementURL,
		"statsUrl":         c.StatsURL,
		"caCertPem":        c.CACertPEM,
		"nodeNames":        c.NodeNames,
		"adminUser":        c.AdminUser,
		"haMode":           c.HAMode,
	}
}

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

// withUser adds credentials to a URL.
func (Endpoints) withUser(raw, user, password string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}
