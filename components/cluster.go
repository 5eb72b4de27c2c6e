package components

import (
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/rolling"
)

// Cluster is the whole stack: network, PKI, nodes, HAProxy and broker
// settings, with the endpoints applications need.
type Cluster struct {
	pulumi.ResourceState

	// Outputs are the stack outputs, by name (stackOutputs).
	Outputs pulumi.Map
}

// NewCluster creates the stack from a validated config. With a Docker
// engine, node containers are replaced one at a time (package rolling);
// without one, all at once.
func NewCluster(ctx *pulumi.Context, name string, cfg *config.Config, docker rolling.Engine, opts ...pulumi.ResourceOption) (*Cluster, error) {
	p, err := plan.New(cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	if err := ctx.RegisterComponentResource(typePrefix+"Cluster", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	network, err := NewNetwork(ctx, name+"-network", p.Network, parent)
	if err != nil {
		return nil, err
	}
	pki, err := NewPKI(ctx, name+"-pki", cfg, parent)
	if err != nil {
		return nil, err
	}
	if p.Swarm {
		return c, c.onSwarm(ctx, name, cfg, p, network, pki)
	}
	hooks, err := newRollingHooks(ctx, cfg, p, docker)
	if err != nil {
		return nil, wrap("rolling replacement hooks", err)
	}
	nodes, err := NewNodes(ctx, name+"-node", &NodesArgs{Config: cfg, Plan: p, Network: network.Name, Hooks: hooks.node}, parent)
	if err != nil {
		return nil, err
	}
	lb, err := NewLoadBalancer(ctx, name+"-haproxy", &LoadBalancerArgs{
		Image: cfg.HAProxyImage, Plan: p.HAProxy, Network: network.Name, ServerPEM: pki.ServerPEM,
		StartTimeoutSeconds: cfg.StartTimeoutSeconds,
	}, parent)
	if err != nil {
		return nil, err
	}
	broker, err := NewBroker(ctx, name+"-broker", &BrokerArgs{
		Config:          cfg,
		Plan:            p.Broker,
		ManagementURL:   pulumi.String(p.Endpoints.Management),
		DependsOn:       append(containerResources(nodes.Containers), lb.Container),
		PolicyHooks:     hooks.policy,
		RootPolicyHooks: hooks.rootPolicy,
	}, parent)
	if err != nil {
		return nil, err
	}
	var migration *Migration
	if cfg.MigrateFrom != nil {
		migration, err = NewMigration(ctx, name+"-migration", &MigrationArgs{
			Config: cfg, Plan: p, ImageID: nodes.ImageID, Network: network.Name,
			Provider: broker.Provider, DependsOn: append(containerResources(nodes.Containers), lb.Container),
		}, parent)
		if err != nil {
			return nil, err
		}
	}
	c.Outputs = stackOutputs(cfg, p, pki, nodes.Names, migration)
	return c, ctx.RegisterResourceOutputs(c, c.Outputs)
}

// stackOutputs is the one list of the stack's outputs: a new output is
// added here, and nowhere else.
func stackOutputs(cfg *config.Config, p *plan.Plan, pki *PKI, nodeNames pulumi.StringArrayOutput, migration *Migration) pulumi.Map {
	e := p.Endpoints
	out := pulumi.Map{
		// AMQP through HAProxy, without credentials.
		"amqpUrl": pulumi.String(e.AMQP),
		// AMQPS through HAProxy; its host is a name in the certificate.
		"amqpsUrl": pulumi.String(e.AMQPS),
		// AMQP through HAProxy as the admin user. Secret.
		"adminAmqpUrl": secret(plan.WithUser(e.AMQP, cfg.AdminUser, cfg.Secrets.AdminPassword)),
		// The nodes' direct AMQP URLs, for consumers.
		"nodeEndpoints": pulumi.ToStringArray(e.Nodes),
		// The nodes' Prometheus URLs, to scrape.
		"metricsEndpoints": pulumi.ToStringArray(e.Metrics),
		// The management UI/API through HAProxy.
		"managementUrl": pulumi.String(e.Management),
		// The HAProxy stats page.
		"statsUrl": pulumi.String(e.Stats),
		// The CA that signs HAProxy's certificate.
		"caCertPem": pki.CACertPEM,
		// The RabbitMQ node names.
		"nodeNames": nodeNames,
		// The admin user's name.
		"adminUser": pulumi.String(cfg.AdminUser),
		// mirrored or quorum.
		"haMode": pulumi.String(cfg.HAMode),
	}
	if migration != nil {
		// The move's progress: each moved queue's depth on the old side.
		out["migrationRemaining"] = migration.Remaining
		// What the move dropped or changed, one line each.
		out["migrationChanges"] = migration.Changes
	}
	return out
}

// onSwarm builds the rest of the stack as Swarm services: the nodes one
// after another, HAProxy on every Swarm node, and the broker settings
// once both run. Node services replace one at a time by themselves (each
// waits for the one before), so no rolling hooks run on Swarm.
func (c *Cluster) onSwarm(ctx *pulumi.Context, name string, cfg *config.Config, p *plan.Plan, network *Network, pki *PKI) error {
	parent := pulumi.Parent(c)
	nodes, err := NewSwarmNodes(ctx, name+"-node", cfg, p, network.Name, pki, parent)
	if err != nil {
		return err
	}
	lb, err := NewSwarmLoadBalancer(ctx, name+"-haproxy", cfg, p, network.Name, pki, parent)
	if err != nil {
		return err
	}
	if _, err := NewBroker(ctx, name+"-broker", &BrokerArgs{
		Config:        cfg,
		Plan:          p.Broker,
		ManagementURL: awaitServing(ctx, p.Endpoints.Management, lb.ID(), time.Duration(cfg.StartTimeoutSeconds)*time.Second),
		DependsOn:     append(swarmResources(nodes.Services), lb),
	}, parent); err != nil {
		return err
	}
	c.Outputs = stackOutputs(cfg, p, pki, nodes.Names, nil)
	return ctx.RegisterResourceOutputs(c, c.Outputs)
}
