package components

import (
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// Node container settings.
const (
	// dataPath is the official image's data directory (and HOME).
	dataPath = "/var/lib/rabbitmq"
	// healthInterval is short because the check is cheap (a file test and a
	// TCP connect, no Erlang VM) and `pulumi up` waits on it.
	healthInterval = "2s"
	healthTimeout  = "5s"
	healthRetries  = 3
	// healthStartPeriod covers a join that backs off while the seed boots.
	healthStartPeriod = "5m0s"
	// waitTimeoutSeconds bounds how long `pulumi up` waits for a healthy node.
	waitTimeoutSeconds = 360
	// stopTimeoutSeconds gives RabbitMQ time to stop cleanly on `docker stop`
	// (Docker's 10 s default can cut a node off mid-shutdown).
	stopTimeoutSeconds = 60
)

// healthTest passes once the cluster script has joined the node (ReadyFile)
// while AMQP still accepts connections.
var healthTest = []string{"CMD", "bash", "-c", "test -f " + render.ReadyFile + " && exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(render.AMQPPort)}

// NodesArgs are what the nodes need from the other components.
type NodesArgs struct {
	Config  *config.Config
	Network pulumi.StringInput
}

// Nodes is the RabbitMQ image, one volume and one container per node, and
// the forget job that removes scaled-down nodes from the cluster.
type Nodes struct {
	pulumi.ResourceState

	// Containers are the node containers, in node order.
	Containers []*docker.Container
	// Names are the RabbitMQ node names, rabbit@<prefix>-node-<i>.
	Names pulumi.StringArrayOutput `pulumi:"names"`
}

// NewNodes creates the nodes. Node 0 seeds the cluster: the other nodes are
// created once it is healthy, so they join it at boot through peer
// discovery instead of racing it.
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
	script, err := render.ClusterScript(render.ClusterData{
		Seed:       cfg.ErlangNodeName(0),
		PeerPrefix: cfg.Prefix + "-node-",
		MaxNodes:   config.MaxNodes,
	})
	if err != nil {
		return nil, err
	}
	secrets, err := render.SecretsConf(render.SecretsData{AdminUser: cfg.AdminUser, AdminPassword: cfg.Secrets.AdminPassword})
	if err != nil {
		return nil, err
	}
	shared := fileUploads{
		{path: render.ScriptPath, content: pulumi.String(script), mode: "0755"},
		{path: render.CookieUploadPath, content: secret(cfg.Secrets.ErlangCookie), mode: "0400"},
		{path: render.SecretsConfPath, content: secret(secrets), mode: "0400"},
	}

	var names []string
	for i := 0; i < cfg.Nodes; i++ {
		var deps []pulumi.Resource
		if i > 0 {
			deps = append(deps, n.Containers[0])
		}
		c, err := newNode(ctx, name, cfg, i, image.ImageId, args.Network, shared, append([]pulumi.ResourceOption{parent}, pulumi.DependsOn(deps))...)
		if err != nil {
			return nil, err
		}
		n.Containers = append(n.Containers, c)
		names = append(names, cfg.ErlangNodeName(i))
	}

	// The forget job: after the member list changes, forget the members that
	// are no longer configured. It runs in the background (no attach), since
	// Pulumi stops the removed nodes after it starts.
	_, err = docker.NewContainer(ctx, name+"-forget-job", &docker.ContainerArgs{
		Name:             pulumi.String(cfg.Prefix + "-forget-job"),
		Image:            image.ImageId,
		Command:          pulumi.ToStringArray(render.ForgetCommand(names)),
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{docker.ContainerNetworksAdvancedArgs{Name: args.Network}},
		Uploads:          shared[:2].args(),
		MustRun:          pulumi.Bool(false),
		Restart:          pulumi.String("no"),
		Labels:           containerLabels(labels(cfg.Prefix, RoleJob, nil)),
	}, parent, pulumi.DependsOn(containerResources(n.Containers)), pulumi.DeleteBeforeReplace(true))
	if err != nil {
		return nil, wrap("forget job", err)
	}
	n.Names = pulumi.ToStringArray(names).ToStringArrayOutput()
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{"names": n.Names})
}

func newNode(ctx *pulumi.Context, name string, cfg *config.Config, i int, image, network pulumi.StringInput, shared fileUploads, opts ...pulumi.ResourceOption) (*docker.Container, error) {
	host := cfg.NodeName(i)
	nodeLabels := labels(cfg.Prefix, RoleNode, map[string]string{LabelNode: strconv.Itoa(i)})
	volumeOpts := opts
	if cfg.RetainVolumes {
		volumeOpts = append(volumeOpts, pulumi.RetainOnDelete(true))
	}
	volume, err := docker.NewVolume(ctx, fmt.Sprintf("%s-data-%d", name, i), &docker.VolumeArgs{
		Name:   pulumi.String(host + "-data"),
		Labels: volumeLabels(nodeLabels),
	}, volumeOpts...)
	if err != nil {
		return nil, wrap(host+" volume", err)
	}
	conf, err := render.RabbitMQConf(render.RabbitMQData{
		Node:             cfg.ErlangNodeName(i),
		Seed:             seedOf(cfg, i),
		NodeType:         cfg.NodeTypes[i],
		Quorum:           cfg.HAMode == config.HAModeQuorum,
		MemoryLimitBytes: int64(cfg.MemoryLimitMB) << 20,
	})
	if err != nil {
		return nil, err
	}
	uploads := append(fileUploads{{path: render.RabbitMQConfPath, content: pulumi.String(conf), mode: "0644"}}, shared...)
	c, err := docker.NewContainer(ctx, fmt.Sprintf("%s-%d", name, i), &docker.ContainerArgs{
		Name:     pulumi.String(host),
		Hostname: pulumi.String(host),
		Image:    image,
		Command:  pulumi.ToStringArray(render.NodeCommand(cfg.NodeTypes[i])),
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{docker.ContainerNetworksAdvancedArgs{
			Name:        network,
			Ipv4Address: pulumi.String(cfg.NodeIPs[i].String()),
		}},
		Ports:   docker.ContainerPortArray{port(cfg.HostIP.String(), render.AMQPPort, cfg.Ports.NodeAMQP(i))},
		Uploads: uploads.args(),
		Volumes: docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
			VolumeName:    volume.Name,
			ContainerPath: pulumi.String(dataPath),
		}},
		Healthcheck: docker.ContainerHealthcheckArgs{
			Tests:       pulumi.ToStringArray(healthTest),
			Interval:    pulumi.String(healthInterval),
			Timeout:     pulumi.String(healthTimeout),
			Retries:     pulumi.Int(healthRetries),
			StartPeriod: pulumi.String(healthStartPeriod),
		},
		Wait:                pulumi.Bool(true),
		WaitTimeout:         pulumi.Int(waitTimeoutSeconds),
		Restart:             pulumi.String(cfg.RestartPolicy),
		Memory:              pulumi.Int(cfg.MemoryLimitMB),
		StopTimeout:         pulumi.Int(stopTimeoutSeconds),
		DestroyGraceSeconds: pulumi.Int(stopTimeoutSeconds),
		Labels:              containerLabels(nodeLabels),
	}, opts...)
	return c, wrap(host, err)
}

// seedOf returns the node node i joins at boot: node 0 for every other node.
func seedOf(cfg *config.Config, i int) string {
	if i == 0 {
		return ""
	}
	return cfg.ErlangNodeName(0)
}

// fileUpload is one file uploaded into a container before it starts.
type fileUpload struct {
	path    string
	content pulumi.StringInput
	mode    string
}

type fileUploads []fileUpload

func (fs fileUploads) args() docker.ContainerUploadArray {
	var out docker.ContainerUploadArray
	for _, f := range fs {
		out = append(out, docker.ContainerUploadArgs{
			File:        pulumi.String(f.path),
			Content:     f.content,
			Permissions: pulumi.String(f.mode),
		})
	}
	return out
}

func containerResources(cs []*docker.Container) []pulumi.Resource {
	out := make([]pulumi.Resource, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}
