package components

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-rabbitmq/sdk/v3/go/rabbitmq"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// BrokerArgs are what the broker settings need.
type BrokerArgs struct {
	Config *config.Config
	Plan   plan.Broker
	// ManagementURL is the management API through HAProxy, so the settings
	// keep working while any one node is down.
	ManagementURL pulumi.StringInput
	// DependsOn are the healthy nodes and HAProxy.
	DependsOn []pulumi.Resource
	// PolicyHooks are bound to the HA policies (the quorum queues settle
	// after a new target size); RootPolicyHooks to the policy of "/", the
	// one vhost every stack has (its deletion means a destroy).
	PolicyHooks, RootPolicyHooks *pulumi.ResourceHookBinding
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
	for _, v := range args.Plan.VHosts {
		if v == "/" {
			continue
		}
		vh, err := rabbitmq.NewVHost(ctx, name+"-vhost-"+slug(v), &rabbitmq.VHostArgs{Name: pulumi.String(v)}, with...)
		if err != nil {
			return nil, wrap("vhost "+v, err)
		}
		vhosts[v] = vh.Name
	}
	for _, v := range args.Plan.VHosts {
		hooks := args.PolicyHooks
		if v == "/" {
			hooks = args.RootPolicyHooks
		}
		if err := newPolicy(ctx, name, args.Plan.Policy, v, vhosts[v], append(with, pulumi.ResourceHooks(hooks))); err != nil {
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
func newPolicy(ctx *pulumi.Context, name string, policy plan.Policy, vhost string, vhostName pulumi.StringInput, with []pulumi.ResourceOption) error {
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

// slug makes a name usable in a resource name: "/" becomes "root".
func slug(s string) string {
	if s == "/" {
		return "root"
	}
	return strings.NewReplacer("/", "_", " ", "_").Replace(s)
}
