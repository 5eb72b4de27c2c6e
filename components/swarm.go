package components

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// The Swarm interpreter of the plan: each node a service of one replica
// pinned to its host, HAProxy a global service, every file a Swarm secret
// or config. internal/harness reads the same plan with the docker CLI
// (ServiceArgs), and TestSwarmInterpretersReadEveryField keeps the two in
// step.

// serviceInputs are what a service takes from other resources and the
// stack's settings.
type serviceInputs struct {
	image, network pulumi.StringInput
	// content replaces a file's content by path (the PKI's files).
	content map[string]pulumi.StringInput
	// global runs one task on every Swarm node (HAProxy); otherwise one
	// replica, found by its name alone (dnsrr).
	global bool
	// publish is host or ingress.
	publish string
	// startTimeoutSeconds bounds the wait for the service's tasks to run.
	startTimeoutSeconds int
	// background: up does not wait for the task (the forget job, which
	// waits for the removed nodes that up deletes after it).
	background bool
}

// swarmMounts are a service's files as Swarm objects, mounted.
type swarmMounts struct {
	secrets docker.ServiceTaskSpecContainerSpecSecretArray
	configs docker.ServiceTaskSpecContainerSpecConfigArray
}

// newSwarmFiles creates a spec's files as Swarm secrets (Secret files) and
// configs (the rest). Both are immutable: a new content replaces the
// object, and the provider names it (the resource's name and 7 random hex
// digits), so the replacement is created first, the service moved to it,
// and the old one deleted after. A name given here would make the
// provider, which autonames these, delete the old object first, and Swarm
// refuses that while the service uses it (measured: a rotated stats
// password failed up so).
func newSwarmFiles(ctx *pulumi.Context, name string, s plan.ContainerSpec, content map[string]pulumi.StringInput, opts ...pulumi.ResourceOption) (swarmMounts, error) {
	var m swarmMounts
	for _, f := range s.Files {
		var c pulumi.StringInput = pulumi.String(f.Content)
		if o, ok := content[f.Path]; ok {
			c = o
		} else if f.Secret {
			c = secret(f.Content)
		}
		data := c.ToStringOutput().ApplyT(func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }).(pulumi.StringOutput)
		mode, err := strconv.ParseInt(f.Mode, 8, 32)
		if err != nil {
			return m, fmt.Errorf("%s: mode %q: %w", f.Path, f.Mode, err)
		}
		uid := f.UID
		if uid == "" {
			uid = "0"
		}
		resName := name + "-" + path.Base(f.Path)
		if f.Secret {
			sec, err := docker.NewSecret(ctx, resName, &docker.SecretArgs{
				Data: pulumi.ToSecret(data).(pulumi.StringOutput), Labels: secretLabels(s.Labels),
			}, opts...)
			if err != nil {
				return m, wrap(f.Path, err)
			}
			m.secrets = append(m.secrets, docker.ServiceTaskSpecContainerSpecSecretArgs{
				SecretId: sec.ID(), SecretName: sec.Name, FileName: pulumi.String(f.Path),
				FileUid: pulumi.String(uid), FileGid: pulumi.String(uid), FileMode: pulumi.Int(int(mode)),
			})
			continue
		}
		conf, err := docker.NewServiceConfig(ctx, resName, &docker.ServiceConfigArgs{Data: data}, opts...)
		if err != nil {
			return m, wrap(f.Path, err)
		}
		m.configs = append(m.configs, docker.ServiceTaskSpecContainerSpecConfigArgs{
			ConfigId: conf.ID(), ConfigName: conf.Name, FileName: pulumi.String(f.Path),
			FileUid: pulumi.String(uid), FileGid: pulumi.String(uid), FileMode: pulumi.Int(int(mode)),
		})
	}
	return m, nil
}

// serviceArgs turns a plan's spec into a Swarm service's inputs.
func serviceArgs(s plan.ContainerSpec, in serviceInputs, files swarmMounts) *docker.ServiceArgs {
	c := docker.ServiceTaskSpecContainerSpecArgs{
		Image:       in.image,
		Labels:      serviceContainerLabels(s.Labels),
		Secrets:     files.secrets,
		Configs:     files.configs,
		Healthcheck: serviceHealthArgs(s.Health),
	}
	if s.Hostname != "" {
		c.Hostname = pulumi.String(s.Hostname)
	}
	if s.User != "" {
		c.User = pulumi.String(s.User)
	}
	if len(s.Command) > 0 {
		// Swarm's args are Docker's command: the image's entrypoint stays.
		c.Args = pulumi.ToStringArray(s.Command)
	}
	// Explicit even when empty: left out, each reads back as a change on
	// every preview (measured).
	c.Env = pulumi.ToStringMap(s.Env)
	c.Sysctl = pulumi.StringMap{}
	if s.StopTimeoutSeconds > 0 {
		c.StopGracePeriod = pulumi.String(swarmDuration(time.Duration(s.StopTimeoutSeconds) * time.Second))
	}
	if s.Volume != "" {
		c.Mounts = docker.ServiceTaskSpecContainerSpecMountArray{docker.ServiceTaskSpecContainerSpecMountArgs{
			Type: pulumi.String("volume"), Source: pulumi.String(s.Volume), Target: pulumi.String(s.VolumePath),
			VolumeOptions: docker.ServiceTaskSpecContainerSpecMountVolumeOptionsArgs{
				Labels: docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArray(labelArgs(s.Labels,
					func(k, v pulumi.String) docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelInput {
						return docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs{Label: k, Value: v}
					})),
			},
		}}
	}
	task := docker.ServiceTaskSpecArgs{
		ContainerSpec:     c,
		NetworksAdvanceds: docker.ServiceTaskSpecNetworksAdvancedArray{docker.ServiceTaskSpecNetworksAdvancedArgs{Name: in.network}},
		RestartPolicy: docker.ServiceTaskSpecRestartPolicyArgs{
			Condition: pulumi.String(plan.SwarmRestart(s.Restart)),
			// Docker's own, which the provider reads back.
			Delay: pulumi.String("0s"), Window: pulumi.String("0s"),
		},
		LogDriver: docker.ServiceTaskSpecLogDriverArgs{Name: pulumi.String(logDriver), Options: pulumi.ToStringMap(logOpts)},
	}
	if s.Placement != "" {
		task.Placement = docker.ServiceTaskSpecPlacementArgs{Constraints: pulumi.ToStringArray([]string{s.Placement})}
	}
	if s.MemoryMB > 0 {
		task.Resources = docker.ServiceTaskSpecResourcesArgs{
			Limits: docker.ServiceTaskSpecResourcesLimitsArgs{MemoryBytes: pulumi.Int(s.MemoryMB << 20)},
		}
	}
	a := &docker.ServiceArgs{
		Name:     pulumi.String(s.Name),
		Labels:   serviceLabels(s.Labels),
		TaskSpec: task,
		// One task at a time, the old one stopped first: a node's volume
		// and HAProxy's host ports are its host's alone.
		UpdateConfig: docker.ServiceUpdateConfigArgs{
			Parallelism: pulumi.Int(1), Order: pulumi.String("stop-first"), FailureAction: pulumi.String("pause"),
		},
	}
	endpoint := docker.ServiceEndpointSpecArgs{Ports: servicePorts(s.Ports, in.publish)}
	if in.global {
		// The provider refuses a converge config on a global service
		// ("converge_config conflicts with mode.0.global", measured): the
		// stack waits for HAProxy itself (awaitServing).
		a.Mode = docker.ServiceModeArgs{Global: pulumi.Bool(true)}
		endpoint.Mode = pulumi.String("vip")
	} else {
		if !in.background {
			// `pulumi up` returns once the task runs, healthy: a task with a
			// health check is running only once it passes.
			a.ConvergeConfig = docker.ServiceConvergeConfigArgs{
				Delay: pulumi.String("1s"), Timeout: pulumi.String(strconv.Itoa(in.startTimeoutSeconds) + "s"),
			}
		}
		a.Mode = docker.ServiceModeArgs{Replicated: docker.ServiceModeReplicatedArgs{Replicas: pulumi.Int(1)}}
		// A node's name resolves to its task, and only while it runs, as a
		// container's does on one host: the cluster script finds its peers so.
		endpoint.Mode = pulumi.String("dnsrr")
	}
	a.EndpointSpec = endpoint
	return a
}

func servicePorts(ports []plan.PortSpec, publish string) docker.ServiceEndpointSpecPortArray {
	var out docker.ServiceEndpointSpecPortArray
	for _, p := range ports {
		out = append(out, docker.ServiceEndpointSpecPortArgs{
			TargetPort: pulumi.Int(p.Internal), PublishedPort: pulumi.Int(p.External),
			PublishMode: pulumi.String(publish), Protocol: pulumi.String("tcp"),
		})
	}
	return out
}

func serviceHealthArgs(h *plan.HealthSpec) docker.ServiceTaskSpecContainerSpecHealthcheckPtrInput {
	if h == nil {
		return nil
	}
	return docker.ServiceTaskSpecContainerSpecHealthcheckArgs{
		Tests:       pulumi.ToStringArray(h.Test),
		Interval:    pulumi.String(swarmDuration(h.Interval)),
		Timeout:     pulumi.String(swarmDuration(h.Timeout)),
		StartPeriod: pulumi.String(swarmDuration(h.StartPeriod)),
		Retries:     pulumi.Int(h.Retries),
	}
}

// swarmDuration writes a duration as the provider reads a service's back:
// no zero units ("5m", "1m30s", not "5m0s", "90s"), or every preview shows
// a change.
func swarmDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func serviceLabels(m map[string]string) docker.ServiceLabelArray {
	return labelArgs(m, func(k, v pulumi.String) docker.ServiceLabelInput { return docker.ServiceLabelArgs{Label: k, Value: v} })
}

func serviceContainerLabels(m map[string]string) docker.ServiceTaskSpecContainerSpecLabelArray {
	return labelArgs(m, func(k, v pulumi.String) docker.ServiceTaskSpecContainerSpecLabelInput {
		return docker.ServiceTaskSpecContainerSpecLabelArgs{Label: k, Value: v}
	})
}

func secretLabels(m map[string]string) docker.SecretLabelArray {
	return labelArgs(m, func(k, v pulumi.String) docker.SecretLabelInput { return docker.SecretLabelArgs{Label: k, Value: v} })
}

// newService creates a spec's files and its service.
func newService(ctx *pulumi.Context, name string, s plan.ContainerSpec, in serviceInputs, opts ...pulumi.ResourceOption) (*docker.Service, error) {
	files, err := newSwarmFiles(ctx, name, s, in.content, opts...)
	if err != nil {
		return nil, err
	}
	svc, err := docker.NewService(ctx, name, serviceArgs(s, in, files), opts...)
	if err != nil {
		return nil, wrap(s.Name, err)
	}
	return svc, nil
}

// SwarmNodes is the RabbitMQ nodes on a Swarm: one service each.
type SwarmNodes struct {
	pulumi.ResourceState

	// Services are the node services, in node order.
	Services []*docker.Service
	// Names are the RabbitMQ node names.
	Names pulumi.StringArrayOutput `pulumi:"names"`
}

// NewSwarmNodes creates the node services one after another: each waits
// for the one before it to run healthy, at creation and at every update,
// so no update ever stops two nodes at once. (Swarm's own update policy
// works within one service; these are several.) The first boot is a
// node's boot and join per node, not one for all.
func NewSwarmNodes(ctx *pulumi.Context, name string, cfg *config.Config, p *plan.Plan, network pulumi.StringInput, pki *PKI, opts ...pulumi.ResourceOption) (*SwarmNodes, error) {
	n := &SwarmNodes{}
	if err := ctx.RegisterComponentResource(typePrefix+"SwarmNodes", name, n, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(n)
	var names []string
	var previous pulumi.Resource
	for i, node := range p.Nodes {
		o := []pulumi.ResourceOption{parent}
		if cfg.RetainVolumes {
			o = append(o, pulumi.RetainOnDelete(true))
		}
		if previous != nil {
			o = append(o, pulumi.DependsOn([]pulumi.Resource{previous}))
		}
		svc, err := newService(ctx, fmt.Sprintf("%s-%d", name, i), node.Spec, serviceInputs{
			image: pulumi.String(cfg.RabbitMQImage), network: network, publish: config.PublishHost,
			startTimeoutSeconds: cfg.StartTimeoutSeconds, content: nodeTLS(pki),
		}, o...)
		if err != nil {
			return nil, err
		}
		n.Services = append(n.Services, svc)
		names = append(names, node.Erlang)
		previous = svc
	}
	// The forget job: after the member list changes, forget the members
	// that are no longer configured, once up has stopped them. It runs
	// once (restart none) in the background, as on one host.
	if _, err := newService(ctx, name+"-forget-job", p.ForgetJob, serviceInputs{
		image: pulumi.String(cfg.RabbitMQImage), network: network, publish: config.PublishHost,
		background: true, content: nodeTLS(pki),
	}, parent, pulumi.DependsOn(swarmResources(n.Services))); err != nil {
		return nil, err
	}
	n.Names = pulumi.ToStringArray(names).ToStringArrayOutput()
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{"names": n.Names})
}

// nodeTLS are the PKI's files of a node, and of the forget job's CLI.
func nodeTLS(pki *PKI) map[string]pulumi.StringInput {
	return map[string]pulumi.StringInput{plan.NodeCAFile: pki.CACertPEM, plan.NodeCertFile: pki.NodeCertPEM, plan.NodeKeyFile: pki.NodeKeyPEM}
}

// NewSwarmLoadBalancer creates HAProxy as a global service: one task on
// every Swarm node, each publishing the stack's ports on its host (or
// through the routing mesh), so a client that loses one host reconnects
// to another's.
func NewSwarmLoadBalancer(ctx *pulumi.Context, name string, cfg *config.Config, p *plan.Plan, network pulumi.StringInput, pki *PKI, opts ...pulumi.ResourceOption) (*docker.Service, error) {
	return newService(ctx, name, p.HAProxy.Spec, serviceInputs{
		image: pulumi.String(cfg.HAProxyImage), network: network, global: true, publish: cfg.Swarm.PublishMode,
		startTimeoutSeconds: cfg.StartTimeoutSeconds,
		content:             map[string]pulumi.StringInput{plan.CertBundlePath: pki.ServerPEM, plan.HAProxyNodeCAFile: pki.CACertPEM},
	}, opts...)
}

// awaitServing is the management URL once HAProxy, at the address the
// outputs name, answers through it with a node's reply (any HTTP status:
// no credentials are sent), as HAProxy's own health check asks; or an
// error after the start timeout. The broker settings go through it. A
// preview does not wait.
func awaitServing(ctx *pulumi.Context, url string, after pulumi.IDOutput, timeout time.Duration) pulumi.StringOutput {
	return after.ApplyT(func(pulumi.ID) (string, error) {
		if ctx.DryRun() {
			return url, nil
		}
		client := &http.Client{Timeout: 5 * time.Second}
		var last error
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Second) {
			resp, err := client.Get(url + "/api/overview")
			if err == nil {
				resp.Body.Close()
				return url, nil
			}
			last = err
		}
		return "", fmt.Errorf("HAProxy did not answer at %s within %s: %v", url, timeout, last)
	}).(pulumi.StringOutput)
}

// swarmResources lists services as resources, for DependsOn.
func swarmResources(s []*docker.Service) []pulumi.Resource {
	out := make([]pulumi.Resource, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}
