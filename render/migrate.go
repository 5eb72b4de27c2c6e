package render

import (
	_ "embed"
	"text/template"
)

//go:embed migrate.sh.tmpl
var migrateText string

var migrateTemplate = template.Must(template.New("migrate.sh").Parse(migrateText))

// The migration job's files (migrateFrom).
const (
	// MigrateScriptPath is the job's script.
	MigrateScriptPath = "/usr/local/bin/rabbitmq-ha-migrate.sh"
	// DefinitionsPath is the moved definitions document the job imports.
	DefinitionsPath = "/etc/rabbitmq-ha/definitions.json"
	// ImportTimeoutSeconds bounds the job's wait for a node that answers.
	ImportTimeoutSeconds = 300
)

// ShovelPlugins are the plugins a stack that moves an old cluster runs on
// top of EnabledPlugins: the shovels empty the old queues.
const ShovelPlugins = "[rabbitmq_management,rabbitmq_prometheus,rabbitmq_shovel].\n"

// MigrateScript renders the migration job's script.
func MigrateScript() (string, error) {
	return execute(migrateTemplate, struct {
		Header, CookieFile, DefinitionsFile string
		TimeoutSeconds                      int
	}{Header, CookieUploadPath, DefinitionsPath, ImportTimeoutSeconds})
}

// ImportCommand is the migration job's command: import through the first
// of members that answers.
func ImportCommand(members []string) []string {
	return append([]string{MigrateScriptPath, "import"}, members...)
}
