package components

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-rabbitmq/sdk/v3/go/rabbitmq"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
)

// Policy names.
const (
	// MirroredPolicy is the recipe's ha-all policy.
	MirroredPolicy = "ha-all"
	// QuorumPolicy spreads quorum queue leaders over the nodes.
	QuorumPolicy = "quorum-defaults"
)

// BrokerArgs are what the broker settings need.
type BrokerArgs struct {
	Config *config.Config
	// ManagementURL is the management API through HAProxy, so the settings
	// keep working while any one node is down.
	ManagementURL pulumi.StringInput
	// DependsOn are the healthy nodes and HAProxy.
	DependsOn []pulumi.Resource
	// PolicyHooks are bound to the HA policies (the quorum queues settle
	// after a new target size).
	PolicyHooks *pulumi.ResourceHookBinding
}

// Broker is the broker's settings, through the management API: vhosts,
// users, permissions and the HA policy of every vhost.
type Broker struct {
	pulumi.ResourceState

	// Provider is the explicit pulumi-rabbitmq provider instance.
	Provider *rabbitmq.Provider
}

// NewBroker applies the broker settings.
func NewBroker(ctx *pulumi.Context, name string, args *BrokerArgs, opts ...pulumi.ResourceOption) (*Broker, error) {
	cfg := args.Config
	b := &Broker{}
	if err := ctx.RegisterComponentResource(typePrefix+"Broker", name, b, opts...); err != nil {
		return nil, err
	}
	var err error
	b.Provider, err = rabbitmq.NewProvider(ctx, name+"-provider", &rabbitmq.ProviderArgs{
		Endpoint: args.ManagementURL,
		Username: pulumi.String(cfg.AdminUser),
		Password: secret(cfg.Secrets.AdminPassword),
	}, pulumi.Parent(b), pulumi.DependsOn(args.DependsOn))
	if err != nil {
		return nil, wrap("rabbitmq provider", err)
	}
	with := []pulumi.ResourceOption{pulumi.Parent(b), pulumi.Provider(b.Provider), pulumi.DependsOn(args.DependsOn)}

	// vhost "/" exists from the start; every other vhost is created.
	vhosts := map[string]pulumi.StringInput{"/": pulumi.String("/")}
	for _, v := range vhostsOf(cfg) {
		if v == "/" {
			continue
		}
		vh, err := rabbitmq.NewVHost(ctx, name+"-vhost-"+slug(v), &rabbitmq.VHostArgs{Name: pulumi.String(v)}, with...)
		if err != nil {
			return nil, wrap("vhost "+v, err)
		}
		vhosts[v] = vh.Name
	}
	for _, v := range vhostsOf(cfg) {
		if err := newPolicy(ctx, name, cfg, v, vhosts[v], append(with, pulumi.ResourceHooks(args.PolicyHooks))); err != nil {
			return nil, err
		}
	}
	for _, u := range cfg.Users {
		user, err := rabbitmq.NewUser(ctx, name+"-user-"+slug(u.Name), &rabbitmq.UserArgs{
			Name:     pulumi.String(u.Name),
			Password: secret(u.Password),
			Tags:     pulumi.ToStringArray(u.Tags),
		}, with...)
		if err != nil {
			return nil, wrap("user "+u.Name, err)
		}
		for _, p := range u.Permissions {
			_, err := rabbitmq.NewPermissions(ctx, fmt.Sprintf("%s-perm-%s-%s", name, slug(u.Name), slug(p.VHost)), &rabbitmq.PermissionsArgs{
				User:  user.Name,
				Vhost: vhosts[p.VHost],
				Permissions: rabbitmq.PermissionsPermissionsArgs{
					Configure: pulumi.String(p.Configure),
					Write:     pulumi.String(p.Write),
					Read:      pulumi.String(p.Read),
				},
			}, with...)
			if err != nil {
				return nil, wrap(fmt.Sprintf("permissions of %s on %s", u.Name, p.VHost), err)
			}
		}
	}
	return b, ctx.RegisterResourceOutputs(b, pulumi.Map{})
}

// newPolicy sets the HA mode's policy on one vhost.
func newPolicy(ctx *pulumi.Context, name string, cfg *config.Config, vhost string, vhostName pulumi.StringInput, with []pulumi.ResourceOption) error {
	policy := PolicyFor(cfg)
	_, err := rabbitmq.NewPolicy(ctx, name+"-policy-"+slug(vhost), &rabbitmq.PolicyArgs{
		Name:  pulumi.String(policy.Name),
		Vhost: vhostName,
		Policy: rabbitmq.PolicyPolicyArgs{
			Pattern:    pulumi.String(policy.Pattern),
			Priority:   pulumi.Int(0),
			ApplyTo:    pulumi.String(policy.ApplyTo),
			Definition: pulumi.ToMap(policy.StringDefinition()),
		},
	}, with...)
	return wrap("policy on "+vhost, err)
}

// Policy is an HA mode's policy.
type Policy struct {
	Name, Pattern, ApplyTo string
	Definition             map[string]any
}

// PolicyFor returns the policy of an HA mode.
//
// mirrored: the recipe's ha-all, every queue mirrored on every node, with
// automatic sync so a restarted mirror catches up without an operator. A
// mirror that has not caught up is never promoted, neither when the leader
// stops nor when it fails: RabbitMQ's defaults (ha-promote-on-failure:
// always) let a restarted, still empty mirror lead, and the old leader then
// drops its copy to sync from it. With when-synced the queue waits for its
// leader instead (see docs/RUNBOOK.md, "Restarts";
// https://www.rabbitmq.com/docs/3.13/ha#unsynchronised-mirrors).
// quorum: queues are quorum by default_queue_type; the policy spreads their
// leaders over the nodes and sets the member count continuous membership
// reconciliation keeps every queue at (target-group-size: quorumGroupSize;
// https://www.rabbitmq.com/docs/quorum-queues#replica-reconciliation).
func PolicyFor(cfg *config.Config) Policy {
	if cfg.HAMode == config.HAModeMirrored {
		return Policy{MirroredPolicy, "^", "queues", map[string]any{
			"ha-mode":                "all",
			"ha-sync-mode":           "automatic",
			"ha-promote-on-shutdown": "when-synced",
			"ha-promote-on-failure":  "when-synced",
		}}
	}
	return Policy{QuorumPolicy, "^", "quorum_queues", map[string]any{
		"queue-leader-locator": "balanced",
		"target-group-size":    cfg.QuorumGroupSize,
	}}
}

// StringDefinition is the definition as pulumi-rabbitmq takes it: a map of
// strings, whose whole numbers the provider sends to RabbitMQ as numbers.
func (p Policy) StringDefinition() map[string]any {
	out := make(map[string]any, len(p.Definition))
	for k, v := range p.Definition {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// DefinitionJSON is the policy's definition as rabbitmqctl set_policy takes it.
func (p Policy) DefinitionJSON() string {
	b, err := json.Marshal(p.Definition)
	if err != nil {
		panic(err) // strings and numbers always marshal
	}
	return string(b)
}

// vhostsOf returns the configured vhosts with "/" first, deduplicated.
func vhostsOf(cfg *config.Config) []string {
	out := []string{"/"}
	for _, v := range cfg.VHosts {
		if v != "/" {
			out = append(out, v)
		}
	}
	return out
}

// slug makes a name usable in a resource name: "/" becomes "root".
func slug(s string) string {
	if s == "/" {
		return "root"
	}
	return strings.NewReplacer("/", "_", " ", "_").Replace(s)
}
