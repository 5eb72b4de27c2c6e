package components

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// LoadBalancerArgs are what HAProxy needs from the other components.
type LoadBalancerArgs struct {
	Config  *config.Config
	Network pulumi.StringInput
	// ServerPEM is the PKI's crt bundle for AMQPS.
	ServerPEM pulumi.StringInput
	// Nodes are created first, so HAProxy starts with healthy backends.
	Nodes []*docker.Container
}

// LoadBalancer is HAProxy: AMQP and AMQPS over every node, the management
// UI/API over every node, and the stats page.
type LoadBalancer struct {
	pulumi.ResourceState

	// Container is the HAProxy container.
	Container *docker.Container
}

// NewLoadBalancer creates the HAProxy image and container.
func NewLoadBalancer(ctx *pulumi.Context, name string, args *LoadBalancerArgs, opts ...pulumi.ResourceOption) (*LoadBalancer, error) {
	cfg := args.Config
	lb := &LoadBalancer{}
	if err := ctx.RegisterComponentResource(typePrefix+"LoadBalancer", name, lb, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(lb)
	image, err := docker.NewRemoteImage(ctx, name+"-image", &docker.RemoteImageArgs{
		Name:        pulumi.String(cfg.HAProxyImage),
		KeepLocally: pulumi.Bool(true),
	}, parent)
	if err != nil {
		return nil, wrap("HAProxy image", err)
	}
	text, err := render.HAProxyConfig(HAProxyData(cfg))
	if err != nil {
		return nil, err
	}
	host := cfg.HostIP.String()
	lb.Container, err = docker.NewContainer(ctx, name, &docker.ContainerArgs{
		Name:     pulumi.String(cfg.Prefix + "-haproxy"),
		Hostname: pulumi.String(cfg.Prefix + "-haproxy"),
		Image:    image.ImageId,
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{docker.ContainerNetworksAdvancedArgs{
			Name:        args.Network,
			Ipv4Address: pulumi.String(cfg.HAProxyIP.String()),
		}},
		Ports: docker.ContainerPortArray{
			port(host, render.AMQPPort, cfg.Ports.AMQP),
			port(host, render.AMQPSPort, cfg.Ports.AMQPS),
			port(host, render.ManagementPort, cfg.Ports.Management),
			port(host, render.StatsPort, cfg.Ports.Stats),
		},
		Uploads: fileUploads{
			// The config holds the stats password and the bundle the key: both secret.
			{path: render.HAProxyConfigPath, content: secret(text), mode: "0644"},
			{path: render.HAProxyCertPath, content: args.ServerPEM, mode: "0644"},
		}.args(),
		Restart: pulumi.String(cfg.RestartPolicy),
		Labels:  containerLabels(labels(cfg.Prefix, RoleHAProxy, nil)),
	}, parent, pulumi.DependsOn(containerResources(args.Nodes)))
	if err != nil {
		return nil, wrap("HAProxy container", err)
	}
	return lb, ctx.RegisterResourceOutputs(lb, pulumi.Map{})
}

// HAProxyData is the haproxy.cfg data of a config: every node by name and IP.
func HAProxyData(cfg *config.Config) render.HAProxyData {
	d := render.HAProxyData{StatsUser: cfg.StatsUser, StatsPassword: cfg.Secrets.StatsPassword}
	for i := 0; i < cfg.Nodes; i++ {
		d.Nodes = append(d.Nodes, render.Backend{Name: cfg.NodeName(i), IP: cfg.NodeIPs[i].String()})
	}
	return d
}
