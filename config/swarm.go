package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// swarmLabelRule is a Swarm node label's key and value, as
// `docker node update --label-add key=value` takes them.
var (
	swarmLabelKey   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	swarmLabelValue = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// SwarmConstraint is the placement constraint of a swarmNodes entry: a
// hostname (node.hostname==h) or label=value (node.labels.label==value).
func SwarmConstraint(entry string) string {
	if k, v, ok := strings.Cut(entry, "="); ok {
		return "node.labels." + k + "==" + v
	}
	return "node.hostname==" + entry
}

// SwarmHostname is a swarmNodes entry's hostname, or "" for a label.
func SwarmHostname(entry string) string {
	if strings.Contains(entry, "=") {
		return ""
	}
	return entry
}

// validatePlatform checks the platform and, on Swarm, where each node
// runs: a node's data volume is local to its host, so an entry that does
// not pin a node to one host could move it to another host's empty volume.
func (c *Config) validatePlatform(v *validator) {
	q := strconv.Quote
	switch c.Platform {
	case PlatformDocker:
		if len(c.Swarm.Nodes) > 0 {
			v.fail(KeySwarmNodes, fmt.Sprintf("(%d entries)", len(c.Swarm.Nodes)), "is set, but platform is docker: set platform to swarm, or remove it")
		}
		if c.Swarm.PublishMode != PublishHost {
			v.fail(KeyHAProxyPublish, q(c.Swarm.PublishMode), "is a Swarm setting, but platform is docker: remove it")
		}
		return
	case PlatformSwarm:
	default:
		v.fail(KeyPlatform, q(c.Platform), "must be docker (one Docker host) or swarm (a Docker Swarm of several hosts)")
		return
	}
	if c.Swarm.PublishMode != PublishHost && c.Swarm.PublishMode != PublishIngress {
		v.fail(KeyHAProxyPublish, q(c.Swarm.PublishMode), "must be host (each host's own ports) or ingress (Swarm's routing mesh)")
	}
	switch {
	case c.HAMode != HAModeQuorum:
		v.fail(KeyPlatform, q(c.Platform), fmt.Sprintf("runs quorum queues only, and haMode is %s: the nodes talk over TLS distribution, which the mirrored handover's erl_call does not speak; use a %s image", c.HAMode, KhepriOnlySince))
	case !c.Khepri():
		v.fail(KeyPlatform, q(c.Platform), fmt.Sprintf("runs RabbitMQ %s or newer (Khepri), and image %s is %s: a Mnesia line's partition watch asks its node every %s, which under TLS distribution boots an Erlang VM each time (rabbitmqctl, where erl_call cannot speak TLS)",
			KhepriOnlySince, c.RabbitMQImage, c.RabbitMQVersion, "5 s"))
	}
	if c.MigrateFrom != nil {
		v.fail(KeyMigrateFrom, "(set)", "is not supported with platform swarm: move onto a stack on one Docker host first, or into the Swarm stack from a host the Swarm reaches with a shovel of your own")
	}
	if c.Nodes >= 1 && len(c.Swarm.Nodes) != c.Nodes {
		v.fail(KeySwarmNodes, fmt.Sprintf("(%d entries)", len(c.Swarm.Nodes)),
			fmt.Sprintf("must name the Swarm node of each of the %d RabbitMQ nodes, a hostname or label=value: a node's data volume lives on its host", c.Nodes))
	}
	seen := map[string]int{}
	for i, e := range c.Swarm.Nodes {
		key := fmt.Sprintf("%s[%d]", KeySwarmNodes, i)
		if k, val, ok := strings.Cut(e, "="); ok {
			if !swarmLabelKey.MatchString(k) || !swarmLabelValue.MatchString(val) {
				v.fail(key, q(e), "is not label=value: letters, digits and ._- on each side")
				continue
			}
		} else if !dnsRule.MatchString(e) {
			v.fail(key, q(e), "is not a Swarm node's hostname (RFC 1123) nor label=value")
			continue
		}
		if j, dup := seen[e]; dup && !c.Swarm.AllowColocation {
			v.fail(key, q(e), fmt.Sprintf("is node %d's Swarm node too: losing that host would lose both; give each its own, or set %s", j, KeySwarmColocate))
			continue
		}
		seen[e] = i
	}
}
