package components

import (
	"fmt"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// NodesArgs are what the nodes need from the other components.
type NodesArgs struct {
	Config  *config.Config
	Plan    *plan.Plan
	Network pulumi.StringInput
	// Hooks are bound to every node container (rolling replacement).
	Hooks *pulumi.ResourceHookBinding
}

// Nodes is the RabbitMQ image, one volume and one container per node, and
// the forget job that removes scaled-down nodes from the cluster.
type Nodes struct {
	pulumi.ResourceState

	// Containers are the node containers, in node order.
	Containers []*docker.Container
	// Names are the RabbitMQ node names, rabbit@<prefix>-node-<i>.
	Names pulumi.StringArrayOutput `pulumi:"names"`
	// ImageID is the nodes' image, which the stack's jobs run too.
	ImageID pulumi.StringOutput
}

// NewNodes creates the nodes, all at once. Node 0 seeds the cluster; the
// others join it at boot through peer discovery, retrying while it boots, so
// the cluster forms in about one boot time, not one per node. Replacements
// go one node at a time, through the hooks.
func NewNodes(ctx *pulumi.Context, name string, args *NodesArgs, opts ...pulumi.ResourceOption) (*Nodes, error) {
	cfg := args.Config
	n := &Nodes{}
	if err := ctx.RegisterComponentResource(typePrefix+"Nodes", name, n, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(n)
	image, err := docker.NewRemoteImage(ctx, name+"-image", &docker.RemoteImageArgs{
		Name:        pulumi.String(cfg.RabbitMQImage),
		KeepLocally: pulumi.Bool(true),
	}, parent)
	if err != nil {
		return nil, wrap("RabbitMQ image", err)
	}

	n.ImageID = image.ImageId
	var names []string
	for i, node := range args.Plan.Nodes {
		spec := node.Spec
		volumeOpts := []pulumi.ResourceOption{parent}
		if cfg.RetainVolumes {
			volumeOpts = append(volumeOpts, pulumi.RetainOnDelete(true))
		}
		volume, err := docker.NewVolume(ctx, fmt.Sprintf("%s-data-%d", name, i), &docker.VolumeArgs{
			Name:   pulumi.String(spec.Volume),
			Labels: volumeLabels(spec.Labels),
		}, volumeOpts...)
		if err != nil {
			return nil, wrap(spec.Volume, err)
		}
		a := containerArgs(spec, containerInputs{image: image.ImageId, network: args.Network, volume: volume.Name})
		a.Wait = pulumi.Bool(true)
		a.WaitTimeout = pulumi.Int(cfg.StartTimeoutSeconds)
		c, err := docker.NewContainer(ctx, fmt.Sprintf("%s-%d", name, i), a, parent, pulumi.ResourceHooks(args.Hooks))
		if err != nil {
			return nil, wrap(spec.Name, err)
		}
		n.Containers = append(n.Containers, c)
		names = append(names, node.Erlang)
	}

	// The forget job: after the member list changes, forget the members that
	// are no longer configured. It runs in the background (no attach), since
	// Pulumi stops the removed nodes after it starts, and it may stay exited.
	a := containerArgs(args.Plan.ForgetJob, containerInputs{image: image.ImageId, network: args.Network})
	a.MustRun = pulumi.Bool(false)
	if _, err := docker.NewContainer(ctx, name+"-forget-job", a, parent,
		pulumi.DependsOn(containerResources(n.Containers)), pulumi.DeleteBeforeReplace(true)); err != nil {
		return nil, wrap("forget job", err)
	}
	n.Names = pulumi.ToStringArray(names).ToStringArrayOutput()
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{"names": n.Names})
}

func containerResources(cs []*docker.Container) []pulumi.Resource {
	out := make([]pulumi.Resource, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}
