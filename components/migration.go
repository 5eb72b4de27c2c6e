package components

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pulumi/pulumi-rabbitmq/sdk/v3/go/rabbitmq"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/migrate"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// MigrationArgs are what a blue-green move needs (migrateFrom).
type MigrationArgs struct {
	Config *config.Config
	Plan   *plan.Plan
	// ImageID is the nodes' image: the job runs RabbitMQ's CLI.
	ImageID pulumi.StringInput
	Network pulumi.StringInput
	// Provider is the broker's pulumi-rabbitmq provider: the shovels are
	// runtime parameters of this cluster.
	Provider *rabbitmq.Provider
	// DependsOn are the healthy nodes.
	DependsOn []pulumi.Resource
}

// Migration is the move of an old cluster into this one: the job that
// imports its definitions, the shovels that empty its queues, and what is
// left on the old side.
type Migration struct {
	pulumi.ResourceState

	// Remaining is each moved queue's depth on the old side, "vhost/name"
	// to messages, as read when the program ran.
	Remaining pulumi.IntMap
	// Changes is the report of what the move dropped or changed.
	Changes pulumi.StringArray
}

// oldClusterTimeout bounds each request to the old cluster's API.
const oldClusterTimeout = 30 * time.Second

// NewMigration reads the old cluster's definitions through its management
// API, plans the move, and creates the job and the shovels. The read runs
// on every preview and up: an old cluster that cannot be read fails them
// before anything changes.
func NewMigration(ctx *pulumi.Context, name string, args *MigrationArgs, opts ...pulumi.ResourceOption) (*Migration, error) {
	cfg := args.Config
	from := cfg.MigrateFrom
	old := oldCluster{from: from, client: &http.Client{Timeout: oldClusterTimeout}}
	defs, err := old.definitions(ctx.Context())
	if err != nil {
		return nil, err
	}
	m, err := plan.MigrationOf(cfg, args.Plan, defs)
	if err != nil {
		return nil, err
	}
	if len(m.Move.Problems) > 0 {
		return nil, fmt.Errorf("migrateFrom: the move cannot start; nothing was changed:\n  %s", strings.Join(m.Move.Problems, "\n  "))
	}
	g := &Migration{}
	if err := ctx.RegisterComponentResource(typePrefix+"Migration", name, g, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(g)
	for _, c := range m.Move.Changes {
		g.Changes = append(g.Changes, pulumi.String(c.String()))
		_ = ctx.Log.Info("migration: "+c.String(), &pulumi.LogArgs{Resource: g})
	}

	// The job imports the moved definitions and exits; Pulumi waits for it
	// (attach). A new document (the old side changed) replaces the job.
	job, imported, err := newAttachedJob(ctx, name+"-job", "migration job", m.Job,
		containerInputs{image: args.ImageID, network: args.Network}, parent, pulumi.DependsOn(args.DependsOn))
	if err != nil {
		return nil, err
	}

	with := []pulumi.ResourceOption{parent, pulumi.Provider(args.Provider), pulumi.DependsOn([]pulumi.Resource{job})}
	for _, s := range m.Shovels {
		if _, err := rabbitmq.NewShovel(ctx, name+"-shovel-"+url.PathEscape(s.VHost)+"-"+s.Queue, &rabbitmq.ShovelArgs{
			Name:  pulumi.String(s.Name),
			Vhost: pulumi.String(s.VHost),
			Info: rabbitmq.ShovelInfoArgs{
				// The old side's URI carries the mover's password.
				SourceUri:           secret(s.SourceURI),
				SourceQueue:         pulumi.String(s.Queue),
				SourceProtocol:      pulumi.String("amqp091"),
				SourcePrefetchCount: pulumi.Int(s.Prefetch),
				SourceDeleteAfter:   pulumi.String("never"),
				DestinationUri:      pulumi.String(s.DestinationURI),
				DestinationQueue:    pulumi.String(s.Queue),
				DestinationProtocol: pulumi.String("amqp091"),
				AckMode:             pulumi.String(s.AckMode),
				ReconnectDelay:      pulumi.Int(migrate.ReconnectSeconds),
				// Consumers see the message as it was published.
				DestinationAddForwardHeaders: pulumi.Bool(false),
			},
		}, with...); err != nil {
			return nil, wrap("shovel "+s.Name, err)
		}
	}

	// What is left on the old side, as read now: the progress of the move,
	// in the outputs and in the update's log.
	g.Remaining = pulumi.IntMap{}
	for _, q := range m.Move.Queues {
		n, err := old.depth(ctx.Context(), q.VHost, q.Name)
		if err != nil {
			_ = ctx.Log.Warn(fmt.Sprintf("migration: %s/%s: %v", q.VHost, q.Name, err), &pulumi.LogArgs{Resource: g})
			continue
		}
		g.Remaining[q.VHost+"/"+q.Name] = pulumi.Int(n)
		_ = ctx.Log.Info(fmt.Sprintf("migration: %d messages left on the old side in %s/%s", n, q.VHost, q.Name), &pulumi.LogArgs{Resource: g})
	}
	return g, ctx.RegisterResourceOutputs(g, pulumi.Map{"imported": imported, "remaining": g.Remaining, "changes": g.Changes})
}

// oldCluster reads the old cluster's management API as the mover.
type oldCluster struct {
	from   *config.MigrateFrom
	client *http.Client
}

// get GETs a path of the API into out. Errors name the URL, never the
// password.
func (o oldCluster) get(ctx context.Context, path string, out any) error {
	u := strings.TrimSuffix(o.from.ManagementURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(o.from.User, o.from.Password)
	resp, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("migrateFrom.managementUrl: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("migrateFrom.managementUrl: GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("migrateFrom.managementUrl: GET %s as %s: %s", u, o.from.User, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("migrateFrom.managementUrl: GET %s: %w", u, err)
	}
	return nil
}

// definitions are the old cluster's definitions.
func (o oldCluster) definitions(ctx context.Context) (migrate.Definitions, error) {
	var raw json.RawMessage
	if err := o.get(ctx, "/api/definitions", &raw); err != nil {
		return migrate.Definitions{}, err
	}
	return migrate.Parse(raw)
}

// depth is a queue's message count on the old cluster.
func (o oldCluster) depth(ctx context.Context, vhost, queue string) (int, error) {
	var q struct {
		Messages int `json:"messages"`
	}
	err := o.get(ctx, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(queue), &q)
	return q.Messages, err
}
