package components

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Network is the stack's user-defined network: a bridge on one host, an
// overlay across a Swarm's hosts. Docker's embedded DNS
// works on it (nodes find each other by name), and static IPs are allowed.
type Network struct {
	pulumi.ResourceState

	// Name is the Docker network's name.
	Name pulumi.StringOutput `pulumi:"name"`
}

// NewNetwork creates the plan's network.
func NewNetwork(ctx *pulumi.Context, name string, p plan.Network, opts ...pulumi.ResourceOption) (*Network, error) {
	n := &Network{}
	if err := ctx.RegisterComponentResource(typePrefix+"Network", name, n, opts...); err != nil {
		return nil, err
	}
	net, err := docker.NewNetwork(ctx, name, &docker.NetworkArgs{
		Name:   pulumi.String(p.Name),
		Driver: pulumi.String(p.Driver),
		IpamConfigs: docker.NetworkIpamConfigArray{docker.NetworkIpamConfigArgs{
			Subnet:  pulumi.String(p.Subnet),
			Gateway: pulumi.String(p.Gateway),
			IpRange: pulumi.String(p.IPRange),
		}},
		Labels: networkLabels(p.Labels),
		// On Swarm, attachable: a container of one host (a test's client, a
		// user's debugging shell) may join the overlay too.
		Attachable: pulumi.Bool(p.Driver == plan.DriverOverlay),
	}, pulumi.Parent(n))
	if err != nil {
		return nil, wrap("network", err)
	}
	n.Name = net.Name
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{"name": n.Name})
}
