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
	// Hooks are bound to the HAProxy container (rolling replacement).
	Hooks *pulumi.ResourceHookBinding
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
	lb := &LoadBalancer{}
	if err := ctx.RegisterComponentResource(typePrefix+"LoadBalancer", name, lb, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(lb)
	image, err := docker.NewRemoteImage(ctx, name+"-image", &docker.RemoteImageArgs{
		Name:        pulumi.String(args.Config.HAProxyImage),
		KeepLocally: pulumi.Bool(true),
	}, parent)
	if err != nil {
		return nil, wrap("HAProxy image", err)
	}
	spec, err := HAProxySpec(args.Config, "")
	if err != nil {
		return nil, err
	}
	a := containerArgs(spec, image.ImageId, args.Network, nil, map[string]pulumi.StringInput{render.HAProxyCertPath: args.ServerPEM})
	a.Wait = pulumi.Bool(true)
	a.WaitTimeout = pulumi.Int(waitTimeoutSeconds)
	lb.Container, err = docker.NewContainer(ctx, name, a, parent, pulumi.DependsOn(containerResources(args.Nodes)),
		pulumi.ResourceHooks(args.Hooks))
	if err != nil {
		return nil, wrap("HAProxy container", err)
	}
	return lb, ctx.RegisterResourceOutputs(lb, pulumi.Map{})
}
