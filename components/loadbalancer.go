package components

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// LoadBalancerArgs are what HAProxy needs from the other components.
type LoadBalancerArgs struct {
	// Image is the HAProxy image reference.
	Image   string
	Plan    plan.HAProxy
	Network pulumi.StringInput
	// ServerPEM is the PKI's crt bundle for AMQPS.
	ServerPEM pulumi.StringInput
	// StartTimeoutSeconds bounds the wait for the container to be healthy.
	StartTimeoutSeconds int
}

// LoadBalancer is HAProxy: AMQP and AMQPS over every node, the management
// UI/API over every node, and the stats page.
type LoadBalancer struct {
	pulumi.ResourceState

	// Container is the HAProxy container.
	Container *docker.Container
	// ConfigInstalled is true once the config job installed the current
	// haproxy.cfg and bundle, and an error if it failed.
	ConfigInstalled pulumi.BoolOutput `pulumi:"configInstalled"`
}

// NewLoadBalancer creates the HAProxy image and container.
func NewLoadBalancer(ctx *pulumi.Context, name string, args *LoadBalancerArgs, opts ...pulumi.ResourceOption) (*LoadBalancer, error) {
	lb := &LoadBalancer{}
	if err := ctx.RegisterComponentResource(typePrefix+"LoadBalancer", name, lb, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(lb)
	image, err := docker.NewRemoteImage(ctx, name+"-image", &docker.RemoteImageArgs{
		Name:        pulumi.String(args.Image),
		KeepLocally: pulumi.Bool(true),
	}, parent)
	if err != nil {
		return nil, wrap("HAProxy image", err)
	}
	job := args.Plan.ConfigJob
	volume, err := docker.NewVolume(ctx, name+"-conf", &docker.VolumeArgs{
		Name:   pulumi.String(args.Plan.Volume),
		Labels: volumeLabels(job.Labels),
	}, parent)
	if err != nil {
		return nil, wrap(args.Plan.Volume, err)
	}

	// The config job installs haproxy.cfg and the bundle into HAProxy's
	// volume and exits; Pulumi waits for it (attach). A renewed certificate
	// or a new node list replaces the job, not HAProxy, which reloads on its
	// own when the files change.
	// A failed install fails the update: nothing else would notice, as a
	// running HAProxy keeps serving the old files.
	configJob, installed, err := newAttachedJob(ctx, name+"-config-job", "HAProxy config job", job,
		containerInputs{image: image.ImageId, network: args.Network, volume: volume.Name,
			content: map[string]pulumi.StringInput{plan.CertBundlePath: args.ServerPEM}}, parent)
	if err != nil {
		return nil, err
	}
	lb.ConfigInstalled = installed

	// HAProxy starts together with the nodes, not after them: it is healthy
	// once a node answers through it (plan's HAProxy health check), so its
	// wait overlaps theirs instead of following it.
	a := containerArgs(args.Plan.Spec, containerInputs{image: image.ImageId, network: args.Network, volume: volume.Name})
	a.Wait = pulumi.Bool(true)
	a.WaitTimeout = pulumi.Int(args.StartTimeoutSeconds)
	lb.Container, err = docker.NewContainer(ctx, name, a, parent, pulumi.DependsOn([]pulumi.Resource{configJob}))
	if err != nil {
		return nil, wrap("HAProxy container", err)
	}
	return lb, ctx.RegisterResourceOutputs(lb, pulumi.Map{"configInstalled": lb.ConfigInstalled})
}
