package plan

import (
	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/migrate"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
)

// Migration is a blue-green move into the stack (migrateFrom): the job
// that imports the moved definitions and the shovels that empty the old
// queues. The old cluster's definitions are read by the program, not
// here: the plan only decides, from what was read.
type Migration struct {
	// Job imports Move's definitions through the first node that answers.
	Job ContainerSpec
	// Move is what moves, and the report of what was dropped or changed.
	Move migrate.Move
	// Shovels empty each moved queue of the old cluster into the new one.
	Shovels []migrate.Shovel
}

// MigrationOf plans the move of old's definitions into p's stack.
func MigrationOf(cfg *config.Config, p *Plan, old migrate.Definitions) (Migration, error) {
	m := cfg.MigrateFrom
	own := []string{cfg.AdminUser}
	for _, u := range cfg.Users {
		own = append(own, u.Name)
	}
	move := migrate.Transform(old, migrate.Options{
		VHosts: m.VHosts, KeepClassic: m.KeepClassic, OwnUsers: own,
		Plugins: []string{"rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_shovel"}, Mover: m.User,
	})
	// The stack's admin user is pulumi-rabbitmq's: it sets the shovels, as
	// runtime parameters of each moved vhost, so it needs access to each.
	for _, v := range m.VHosts {
		move.Definitions.Permissions = append(move.Definitions.Permissions, migrate.Permission{
			User: cfg.AdminUser, VHost: v, Configure: ".*", Write: ".*", Read: ".*",
		})
	}
	script, err := render.MigrateScript()
	if err != nil {
		return Migration{}, err
	}
	var members []string
	for _, n := range p.Nodes {
		members = append(members, n.Erlang)
	}
	var networks []string
	if m.Network != "" {
		networks = []string{m.Network}
	}
	files, err := nodeFilesOf(cfg)
	if err != nil {
		return Migration{}, err
	}
	return Migration{
		Job: ContainerSpec{
			Name:     migrationJobName(cfg.Prefix),
			Command:  render.ImportCommand(members),
			Networks: networks,
			Files: []FileSpec{
				{Path: render.MigrateScriptPath, Content: script, Mode: ModeExecutable},
				// The definitions carry the moved users' password hashes.
				{Path: render.DefinitionsPath, Content: string(move.Definitions.JSON()), Mode: ModeSecret, Secret: true},
				files.Cookie,
			},
			Restart: RestartNever,
			Labels:  labels(cfg.Prefix, RoleJob, nil),
		},
		Move:    move,
		Shovels: migrate.Shovels(move, m.AMQPURLWithUser(), "amqp://"),
	}, nil
}
