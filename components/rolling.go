package components

import (
	"context"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
	"github.com/rabbitmq-ha/rabbitmq-ha/rolling"
)

// Rolling replacement tuning.
const (
	// drainTimeoutSeconds bounds each step of a node's drain.
	drainTimeoutSeconds = 120
	// rollingGrace is how long a node the gate stopped may stay absent
	// before it counts as removed rather than being replaced. Pulumi starts
	// a replacement's create right after its delete.
	rollingGrace = 5 * time.Second
	// settleWait bounds the wait for reconciliation to grow the quorum
	// queues after a scale change, before their leaders are rebalanced:
	// it acts 10 s after a node joins or the policy changes.
	settleWait = 90 * time.Second
)

// rollingHooks binds the rolling replacement gate to the resources: the
// node hooks order node deletions (replacements, and a scale-down's removed
// nodes, each drained in turn), and the deletion of the policy of "/" tells
// the gate the nodes are going away for good. That policy depends on every
// node and on HAProxy, so a destroy deletes it before any node; an update
// deletes it only when it replaces it (a new HA mode), and Pulumi deletes a
// replaced resource at the end of the update, after every node is done.
type rollingHooks struct {
	node *pulumi.ResourceHookBinding
	// policy settles the quorum queues after the policy's target size
	// changed: a scale, or a new quorumGroupSize. rootPolicy does that too,
	// and its deletion is the destroy's signal.
	policy, rootPolicy *pulumi.ResourceHookBinding
}

// newRollingHooks registers the hooks. Without an engine (rollingReplace
// off) it returns empty bindings: nodes are then replaced all at once.
func newRollingHooks(ctx *pulumi.Context, cfg *config.Config, p *plan.Plan, engine rolling.Engine) (*rollingHooks, error) {
	h := &rollingHooks{node: &pulumi.ResourceHookBinding{}, policy: &pulumi.ResourceHookBinding{}, rootPolicy: &pulumi.ResourceHookBinding{}}
	if engine == nil {
		return h, nil
	}
	gate := rolling.New(engine, rolling.Settings{
		Nodes:   p.Containers(),
		Drain:   render.DrainCommand(drainTimeoutSeconds),
		Timeout: time.Duration(cfg.StartTimeoutSeconds) * time.Second,
		Grace:   rollingGrace,
		Log: func(msg string) {
			_ = ctx.Log.Info("rolling replacement: "+msg, nil)
		},
		QuorumGroupSize: cfg.QuorumGroupSize,
		VHosts:          p.Broker.VHosts,
	})
	name := func(args *pulumi.ResourceHookArgs) string {
		if n, ok := stringProp(args.OldOutputs, "name"); ok {
			return n
		}
		n, _ := stringProp(args.NewInputs, "name")
		return n
	}
	beforeDelete, err := ctx.RegisterResourceHook(cfg.Prefix+"-node-before-delete", func(args *pulumi.ResourceHookArgs) error {
		if uploaded, ok := uploadContent(args.OldInputs, render.CookieUploadPath); ok && uploaded != cfg.Secrets.ErlangCookie {
			gate.Unchecked("the Erlang cookie changed, and nodes with different cookies cannot form one cluster, " +
				"so every node restarts at once (see docs/RUNBOOK.md, rotating the Erlang cookie)")
		}
		return gate.BeforeDelete(context.Background(), name(args))
	}, nil)
	if err != nil {
		return nil, err
	}
	afterDelete, err := ctx.RegisterResourceHook(cfg.Prefix+"-node-after-delete", func(args *pulumi.ResourceHookArgs) error {
		n := name(args)
		gate.AfterDelete(n)
		// The last node of a scale-down: the leaders settle once.
		if gate.Leaving(n) && gate.Idle() {
			gate.Settle(context.Background(), settleWait)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	// Docker reported the container healthy before this runs. After the last
	// node of a rolling replacement, the leaders settle once.
	afterCreate, err := ctx.RegisterResourceHook(cfg.Prefix+"-node-after-create", func(args *pulumi.ResourceHookArgs) error {
		if gate.AfterCreate(name(args)) {
			gate.Settle(context.Background(), settleWait)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	policyUpdated, err := ctx.RegisterResourceHook(cfg.Prefix+"-policy-after-update", func(*pulumi.ResourceHookArgs) error {
		gate.Settle(context.Background(), settleWait)
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	beforeCreate, err := ctx.RegisterResourceHook(cfg.Prefix+"-node-before-create", func(args *pulumi.ResourceHookArgs) error {
		gate.BeforeCreate(name(args))
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	rootPolicyDelete, err := ctx.RegisterResourceHook(cfg.Prefix+"-root-policy-before-delete", func(*pulumi.ResourceHookArgs) error {
		gate.Unchecked("the policy of vhost / is being deleted: a destroy, or its replacement (a new HA mode) after every node was done; " +
			"node deletions left in this run (a scale-down or the destroy) go ahead together")
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	h.node = &pulumi.ResourceHookBinding{
		BeforeDelete: []*pulumi.ResourceHook{beforeDelete},
		AfterDelete:  []*pulumi.ResourceHook{afterDelete},
		BeforeCreate: []*pulumi.ResourceHook{beforeCreate},
		AfterCreate:  []*pulumi.ResourceHook{afterCreate},
	}
	h.policy = &pulumi.ResourceHookBinding{AfterUpdate: []*pulumi.ResourceHook{policyUpdated}}
	h.rootPolicy = &pulumi.ResourceHookBinding{AfterUpdate: []*pulumi.ResourceHook{policyUpdated}, BeforeDelete: []*pulumi.ResourceHook{rootPolicyDelete}}
	return h, nil
}

// stringProp reads a string property, secret or not.
func stringProp(m resource.PropertyMap, key resource.PropertyKey) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsString() {
		return "", false
	}
	return v.StringValue(), true
}

// uploadContent is the content a container's inputs upload to path.
func uploadContent(inputs resource.PropertyMap, path string) (string, bool) {
	v, ok := inputs["uploads"]
	for ok && v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !ok || !v.IsArray() {
		return "", false
	}
	for _, u := range v.ArrayValue() {
		for u.IsSecret() {
			u = u.SecretValue().Element
		}
		if !u.IsObject() {
			continue
		}
		if file, _ := stringProp(u.ObjectValue(), "file"); file == path {
			return stringProp(u.ObjectValue(), "content")
		}
	}
	return "", false
}

// dockerHost is the Docker daemon the docker provider talks to: its host
// setting, else DOCKER_HOST, else the local socket.
func dockerHost(ctx *pulumi.Context, getenv func(string) string) string {
	if h, ok := ctx.GetConfig("docker:host"); ok && h != "" {
		return h
	}
	return getenv("DOCKER_HOST")
}
