package components

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
)

// Network is the stack's user-defined bridge network. Docker's embedded DNS
// works on it (nodes find each other by name), and static IPs are allowed.
type Network struct {
	pulumi.ResourceState

	// Name is the Docker network's name.
	Name pulumi.StringOutput `pulumi:"name"`
}

// NewNetwork creates the bridge network with an explicit subnet and gateway
// (a gateway left to Docker comes back filled in and shows as a diff), and
// keeps the dynamic addresses out of the lower half, where the static IPs are.
func NewNetwork(ctx *pulumi.Context, name string, cfg *config.Config, opts ...pulumi.ResourceOption) (*Network, error) {
	n := &Network{}
	if err := ctx.RegisterComponentResource(typePrefix+"Network", name, n, opts...); err != nil {
		return nil, err
	}
	net, err := docker.NewNetwork(ctx, name, &docker.NetworkArgs{
		Name:   pulumi.String(cfg.Prefix),
		Driver: pulumi.String("bridge"),
		IpamConfigs: docker.NetworkIpamConfigArray{docker.NetworkIpamConfigArgs{
			Subnet:  pulumi.String(cfg.Subnet.String()),
			Gateway: pulumi.String(cfg.Gateway.String()),
			IpRange: pulumi.String(cfg.DynamicRange().String()),
		}},
		Labels: networkLabels(labels(cfg.Prefix, "", nil)),
	}, pulumi.Parent(n))
	if err != nil {
		return nil, wrap("network", err)
	}
	n.Name = net.Name
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{"name": n.Name})
}
