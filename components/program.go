package components

import (
	"context"
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/internal/dockerapi"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/rolling"
)

// Program is the Pulumi program: load and validate the config, check the
// upgrade against the running nodes, build the cluster, export its outputs.
// Bad config fails here, with every problem at once, before any resource is
// registered.
func Program(ctx *pulumi.Context) error {
	return ProgramWith(func(host string) (rolling.Engine, error) { return dockerapi.NewDocker(host) })(ctx)
}

// OpenDocker connects to the Docker daemon at host (empty: the default).
// Besides the docker provider, the program talks to Docker itself for two
// things: the version guard reads the running nodes' RabbitMQ version, and
// the rolling replacement drains nodes and waits for them.
type OpenDocker func(host string) (rolling.Engine, error)

// ProgramWith is Program with its Docker connection given: the unit tests
// give a fake one.
func ProgramWith(open OpenDocker) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		cfg, warnings, err := config.Load(config.FromContext(ctx), ctx.Project(), ctx.Stack())
		if err != nil {
			return err
		}
		host := dockerHost(ctx, os.Getenv)
		engine, err := open(host)
		if err != nil {
			// On Swarm the node services replace one at a time by themselves:
			// only the version guard needs the connection.
			if cfg.RollingReplace && !cfg.IsSwarm() {
				return fmt.Errorf("%s: %w; set %s to false to replace nodes all at once (and skip the version guard)",
					config.KeyRollingReplace, err, config.KeyRollingReplace)
			}
			warnings = append(warnings, fmt.Sprintf("version guard skipped: %v", err))
			engine = nil
		}
		if engine != nil {
			if err := checkUpgrade(ctx.Context(), cfg, engine); err != nil {
				return err
			}
		}
		for _, w := range warnings {
			if err := ctx.Log.Warn(w, nil); err != nil {
				return err
			}
		}
		if !cfg.RollingReplace {
			engine = nil
		}
		cluster, err := NewCluster(ctx, "rabbitmq", cfg, engine)
		if err != nil {
			return err
		}
		for k, v := range cluster.Outputs {
			ctx.Export(k, v)
		}
		return nil
	}
}

// versionEnv is the official image's record of its RabbitMQ version; the
// local images carry it too.
const versionEnv = "RABBITMQ_VERSION"

// serviceImages reads Swarm services' images: the version guard's source
// on Swarm, where the manager holds the services and not their containers.
type serviceImages interface {
	ServiceImage(ctx context.Context, name string) (string, error)
}

// checkUpgrade runs the version guard against every node container of the
// stack that exists, configured or not (a scale-down may be pending). On
// Swarm it reads each node service's image tag instead.
func checkUpgrade(ctx context.Context, cfg *config.Config, engine rolling.Engine) error {
	if cfg.IsSwarm() {
		s, ok := engine.(serviceImages)
		if !ok {
			return nil
		}
		for i := 0; i < config.MaxNodes; i++ {
			name := plan.NodeNames(cfg.Prefix, i).Container
			img, err := s.ServiceImage(ctx, name)
			if err != nil {
				return fmt.Errorf("version guard: inspect the service %s: %w", name, err)
			}
			if v := config.ImageVersion(img); img != "" && v.Known() {
				if err := cfg.CheckUpgrade(v); err != nil {
					return fmt.Errorf("%w (service %s runs %s)", err, name, img)
				}
			}
		}
		return nil
	}
	for i := 0; i < config.MaxNodes; i++ {
		name := plan.NodeNames(cfg.Prefix, i).Container
		c, err := engine.Inspect(ctx, name)
		if err != nil {
			return fmt.Errorf("version guard: inspect %s: %w", name, err)
		}
		v, ok := c.EnvValue(versionEnv)
		if !c.Exists || !ok {
			continue
		}
		if err := cfg.CheckUpgrade(config.ParseVersion(v)); err != nil {
			return fmt.Errorf("%w (node %s runs %s)", err, name, v)
		}
	}
	return nil
}
