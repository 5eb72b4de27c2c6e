package components

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Logging: json-file (what `docker logs` reads) with rotation, so a chatty
// node never fills the disk.
const logDriver = "json-file"

var logOpts = map[string]string{"max-size": "10m", "max-file": "3"}

// containerInputs are what a container takes from other resources: the
// image, the network, the volume, and file contents by path.
type containerInputs struct {
	image, network, volume pulumi.StringInput
	content                map[string]pulumi.StringInput
}

// containerArgs turns a plan's container spec into the provider's inputs.
// Every optional setting is explicit where Docker would fill it in: left
// empty it comes back from Docker filled in, and every `pulumi preview`
// would show a diff.
func containerArgs(s plan.ContainerSpec, in containerInputs) *docker.ContainerArgs {
	a := &docker.ContainerArgs{
		Name:             pulumi.String(s.Name),
		Image:            in.image,
		Restart:          pulumi.String(s.Restart),
		Labels:           containerLabels(s.Labels),
		NetworksAdvanced: networkArgs(s, in.network),
		Ports:            portArgs(s.Ports),
		Uploads:          uploadArgs(s.Files, in.content),
		Volumes:          volumeArgs(s, in.volume),
		Healthcheck:      healthArgs(s.Health),
		Envs:             envArgs(s.Env),
		LogDriver:        pulumi.String(logDriver),
		LogOpts:          pulumi.ToStringMap(logOpts),
	}
	if s.Hostname != "" {
		a.Hostname = pulumi.String(s.Hostname)
	}
	if s.User != "" {
		a.User = pulumi.String(s.User)
	}
	if len(s.Command) > 0 {
		a.Command = pulumi.ToStringArray(s.Command)
	}
	if s.MemoryMB > 0 {
		// Swap equal to memory means no swap: a swapping broker stalls its
		// clients instead of raising its memory alarm.
		a.Memory = pulumi.Int(s.MemoryMB)
		a.MemorySwap = pulumi.Int(s.MemoryMB)
	}
	if s.StopTimeoutSeconds > 0 {
		a.StopTimeout = pulumi.Int(s.StopTimeoutSeconds)
		a.DestroyGraceSeconds = pulumi.Int(s.StopTimeoutSeconds)
	}
	return a
}

func networkArgs(s plan.ContainerSpec, network pulumi.StringInput) docker.ContainerNetworksAdvancedArray {
	n := docker.ContainerNetworksAdvancedArgs{Name: network}
	if s.IP != "" {
		n.Ipv4Address = pulumi.String(s.IP)
	}
	out := docker.ContainerNetworksAdvancedArray{n}
	for _, other := range s.Networks {
		out = append(out, docker.ContainerNetworksAdvancedArgs{Name: pulumi.String(other)})
	}
	return out
}

// portArgs sets protocol and IP always.
func portArgs(ports []plan.PortSpec) docker.ContainerPortArrayInput {
	if len(ports) == 0 {
		return nil
	}
	var out docker.ContainerPortArray
	for _, p := range ports {
		out = append(out, docker.ContainerPortArgs{
			Internal: pulumi.Int(p.Internal),
			External: pulumi.Int(p.External),
			Ip:       pulumi.String(p.HostIP),
			Protocol: pulumi.String("tcp"),
		})
	}
	return out
}

// uploadArgs uploads the files; content from another resource wins over the
// spec's, and secret content stays secret in state.
func uploadArgs(files []plan.FileSpec, content map[string]pulumi.StringInput) docker.ContainerUploadArray {
	var out docker.ContainerUploadArray
	for _, f := range files {
		var c pulumi.StringInput = pulumi.String(f.Content)
		if o, ok := content[f.Path]; ok {
			c = o
		} else if f.Secret {
			c = secret(f.Content)
		}
		out = append(out, docker.ContainerUploadArgs{
			File:        pulumi.String(f.Path),
			Content:     c,
			Permissions: pulumi.String(f.Mode),
		})
	}
	return out
}

func volumeArgs(s plan.ContainerSpec, volume pulumi.StringInput) docker.ContainerVolumeArrayInput {
	if s.Volume == "" {
		return nil
	}
	return docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
		VolumeName:    volume,
		ContainerPath: pulumi.String(s.VolumePath),
	}}
}

func healthArgs(h *plan.HealthSpec) docker.ContainerHealthcheckPtrInput {
	if h == nil {
		return nil
	}
	return docker.ContainerHealthcheckArgs{
		Tests:       pulumi.ToStringArray(h.Test),
		Interval:    pulumi.String(h.Interval.String()),
		Timeout:     pulumi.String(h.Timeout.String()),
		StartPeriod: pulumi.String(h.StartPeriod.String()),
		Retries:     pulumi.Int(h.Retries),
	}
}

// envArgs are KEY=value, sorted so the inputs are stable.
func envArgs(env map[string]string) pulumi.StringArrayInput {
	if len(env) == 0 {
		return nil
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return pulumi.ToStringArray(out)
}

// newAttachedJob creates a one-shot job container that Pulumi waits for
// (attach, with its logs) and re-creates, deleting the old one first, when
// its inputs change. It returns the job and what is true once the job
// exited 0: a non-zero exit fails the update with the job's logs.
func newAttachedJob(ctx *pulumi.Context, name, what string, spec plan.ContainerSpec, in containerInputs, opts ...pulumi.ResourceOption) (*docker.Container, pulumi.BoolOutput, error) {
	a := containerArgs(spec, in)
	a.MustRun = pulumi.Bool(false)
	a.Attach = pulumi.Bool(true)
	a.Logs = pulumi.Bool(true)
	job, err := docker.NewContainer(ctx, name, a, append(opts, pulumi.DeleteBeforeReplace(true))...)
	if err != nil {
		return nil, pulumi.BoolOutput{}, wrap(what, err)
	}
	done := pulumi.All(job.ExitCode, job.ContainerLogs).ApplyT(func(v []any) (bool, error) {
		if code := v[0].(int); code != 0 {
			logs, _ := v[1].(*string)
			return false, fmt.Errorf("the %s %s exited with %d: %s", what, spec.Name, code, deref(logs))
		}
		return true, nil
	}).(pulumi.BoolOutput)
	return job, done, nil
}
