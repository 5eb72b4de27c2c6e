package plan

import (
	"encoding/json"
	"fmt"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
)

// Policy names.
const (
	// MirroredPolicy is the recipe's ha-all policy.
	MirroredPolicy = "ha-all"
	// QuorumPolicy spreads quorum queue leaders over the nodes.
	QuorumPolicy = "quorum-defaults"
)

// Policy is an HA mode's policy.
type Policy struct {
	Name, Pattern, ApplyTo string
	Definition             map[string]any
}

// HAAll is the ha-all definition, the one place it is written: every queue
// mirrored on every node, with automatic sync so a restarted mirror catches
// up without an operator. A mirror that has not caught up is never promoted,
// neither when the leader stops nor when it fails: RabbitMQ's defaults
// (ha-promote-on-failure: always) let a restarted, still empty mirror lead,
// and the old leader then drops its copy to sync from it. With when-synced
// the queue waits for its leader instead (see docs/RUNBOOK.md, "Restarts";
// https://www.rabbitmq.com/docs/3.13/ha#unsynchronised-mirrors).
func HAAll() Policy {
	return Policy{Name: MirroredPolicy, Pattern: "^", ApplyTo: "queues", Definition: map[string]any{
		"ha-mode":                "all",
		"ha-sync-mode":           "automatic",
		"ha-promote-on-shutdown": "when-synced",
		"ha-promote-on-failure":  "when-synced",
	}}
}

// PolicyFor returns the policy of a config's HA mode.
//
// mirrored: HAAll.
// quorum: queues are quorum by default_queue_type; the policy spreads their
// leaders over the nodes and sets the member count continuous membership
// reconciliation keeps every queue at (target-group-size: quorumGroupSize;
// https://www.rabbitmq.com/docs/quorum-queues#replica-reconciliation).
func PolicyFor(cfg *config.Config) Policy {
	if cfg.HAMode == config.HAModeMirrored {
		return HAAll()
	}
	return Policy{Name: QuorumPolicy, Pattern: "^", ApplyTo: "quorum_queues", Definition: map[string]any{
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

// VHostsOf returns the configured vhosts with "/" first, deduplicated.
func VHostsOf(cfg *config.Config) []string {
	out := []string{"/"}
	for _, v := range cfg.VHosts {
		if v != "/" {
			out = append(out, v)
		}
	}
	return out
}
