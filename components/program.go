package components

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
)

// Program is the Pulumi program: load and validate the config, build the
// cluster, export its outputs. Bad config fails here, with every problem at
// once, before any resource is registered.
func Program(ctx *pulumi.Context) error {
	cfg, warnings, err := config.Load(config.FromContext(ctx), ctx.Project(), ctx.Stack())
	if err != nil {
		return err
	}
	for _, w := range warnings {
		if err := ctx.Log.Warn(w, nil); err != nil {
			return err
		}
	}
	cluster, err := NewCluster(ctx, "rabbitmq", cfg)
	if err != nil {
		return err
	}
	for k, v := range cluster.Outputs() {
		ctx.Export(k, v)
	}
	return nil
}
