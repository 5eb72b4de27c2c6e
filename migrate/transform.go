package migrate

import (
	"fmt"
	"slices"
	"strings"
)

// Options say what moves and how.
type Options struct {
	// VHosts are the vhosts to move; everything in another vhost stays.
	VHosts []string
	// KeepClassic are the queues ("vhost/name") the user opts out of the
	// move to quorum: they stay classic queues on the new side.
	KeepClassic []string
	// OwnUsers are the users this stack manages itself (its admin user and
	// its application users): the old cluster's users of those names are
	// not imported over them.
	OwnUsers []string
	// Plugins are the plugins the new nodes run: runtime parameters of
	// another plugin (a shovel, a federation upstream) cannot be imported.
	Plugins []string
	// Mover is the old cluster's user the shovels read the old queues as.
	Mover string
}

// Change is one thing the move dropped or changed, for the report.
type Change struct {
	// What is the object: "queue /orders", "policy / ha-all", ...
	What string
	// Did is what happened to it, and why.
	Did string
}

func (c Change) String() string { return c.What + ": " + c.Did }

// Move is the result: the definitions to import, the queues whose messages
// the shovels move, and the report.
type Move struct {
	Definitions Definitions
	// Queues are the queues to shovel, old and new side alike ("vhost" and
	// "name" are the same on both).
	Queues  []Queue
	Changes []Change
	// Problems are what stops the move: the program fails the update with
	// them before it changes anything.
	Problems []string
}

// quorumRefuses are the queue arguments a quorum queue refuses or
// ignores, with what becomes of each (upstream's quorum queue guide, its
// feature matrix; Amazon MQ's migration guide says the same of policies).
var quorumRefuses = map[string]string{
	"x-queue-mode":    "dropped: quorum queues keep their messages on disk, lazy or not",
	"x-max-priority":  "dropped: quorum queues refuse it (4.x quorum queues have two priorities, with no argument)",
	"x-queue-version": "dropped: a classic queue's storage version",
}

// policyRefuses are the policy keys that have no effect on this line's
// quorum queues, or make the policy be refused.
func policyRefuses(key string) (string, bool) {
	switch {
	case strings.HasPrefix(key, "ha-"):
		return "dropped: classic mirroring was removed in RabbitMQ 4.0; quorum queues replicate by Raft", true
	case key == "queue-mode":
		return "dropped: quorum queues keep their messages on disk, lazy or not", true
	case key == "queue-version":
		return "dropped: a classic queue's storage version", true
	}
	return "", false
}

// leaderLocators maps the 3.x queue master locators to 4.x leader locators.
var leaderLocators = map[string]string{"client-local": "client-local", "min-masters": "balanced", "random": "balanced"}

// Transform turns the old cluster's definitions into the new cluster's, for
// the vhosts opts names. Durable classic queues become quorum queues
// unless opted out (then they are declared classic explicitly: the new
// default queue type is quorum); transient and auto-delete queues are left
// out, their clients declare them; ha-* policy keys go. Every drop and change
// is in the result's Changes.
func Transform(old Definitions, opts Options) Move {
	old = sorted(old)
	var m Move
	change := func(what, format string, args ...any) {
		m.Changes = append(m.Changes, Change{what, fmt.Sprintf(format, args...)})
	}
	d := Definitions{}
	for _, v := range old.VHosts {
		if inVHosts(opts.VHosts, v.Name) {
			d.VHosts = append(d.VHosts, v)
		}
	}
	for _, v := range opts.VHosts {
		if !slices.ContainsFunc(old.VHosts, func(o VHost) bool { return o.Name == v }) {
			change("vhost "+v, "not on the old cluster: nothing to move")
			continue
		}
		// The shovels consume the old queues as the mover: it needs read
		// (and configure, for the shovel's declare) on every moved vhost.
		if opts.Mover != "" && !slices.ContainsFunc(old.Permissions, func(p Permission) bool {
			return p.User == opts.Mover && p.VHost == v && p.Read != "" && p.Configure != ""
		}) {
			m.Problems = append(m.Problems, fmt.Sprintf("migrateFrom.user %q has no configure and read permission on the old cluster's vhost %q: its queues cannot be shovelled (rabbitmqctl set_permissions -p %s %s '.*' '.*' '.*' on the old cluster)", opts.Mover, v, v, opts.Mover))
		}
	}

	for _, u := range old.Users {
		switch {
		case slices.Contains(opts.OwnUsers, u.Name):
			change("user "+u.Name, "not imported: this stack manages a user of that name (its password is the stack's)")
		case !hasPermission(old.Permissions, u.Name, opts.VHosts) && !slices.Contains(u.Tags, "administrator"):
			change("user "+u.Name, "not imported: no permission on a moved vhost")
		default:
			d.Users = append(d.Users, u)
		}
	}
	imported := func(user string) bool {
		return slices.ContainsFunc(d.Users, func(u User) bool { return u.Name == user })
	}
	for _, p := range old.Permissions {
		if inVHosts(opts.VHosts, p.VHost) && imported(p.User) {
			d.Permissions = append(d.Permissions, p)
		}
	}
	for _, p := range old.TopicPermissions {
		if inVHosts(opts.VHosts, p.VHost) && imported(p.User) {
			d.TopicPermissions = append(d.TopicPermissions, p)
		}
	}

	for _, p := range old.Parameters {
		if !inVHosts(opts.VHosts, p.VHost) {
			continue
		}
		what := fmt.Sprintf("parameter %s %s/%s", p.Component, p.VHost, p.Name)
		if plugin, ok := componentPlugin(p.Component); ok && !slices.Contains(opts.Plugins, plugin) {
			change(what, "not imported: the new nodes do not run %s", plugin)
			continue
		}
		d.Parameters = append(d.Parameters, p)
	}
	for _, g := range old.GlobalParameters {
		change("global parameter "+g.Name, "not imported: it belongs to the old cluster")
	}

	for _, p := range old.Policies {
		if !inVHosts(opts.VHosts, p.VHost) {
			continue
		}
		what := fmt.Sprintf("policy %s/%s", p.VHost, p.Name)
		def, dropped := without(p.Definition, func(k string) bool { _, ok := policyRefuses(k); return ok })
		for _, k := range dropped {
			why, _ := policyRefuses(k)
			change(what, "%s %s", k, why)
		}
		if v, ok := def["overflow"]; ok && v == "reject-publish-dlx" {
			def["overflow"] = "reject-publish"
			change(what, "overflow reject-publish-dlx became reject-publish: quorum queues do not dead-letter refused publishes")
		}
		if v, ok := def["queue-master-locator"]; ok {
			delete(def, "queue-master-locator")
			def["queue-leader-locator"] = leaderLocators[fmt.Sprint(v)]
			change(what, "queue-master-locator %v became queue-leader-locator %s", v, def["queue-leader-locator"])
		}
		if len(def) == 0 {
			change(what, "not imported: nothing is left of it")
			continue
		}
		p.Definition = def
		d.Policies = append(d.Policies, p)
	}

	for _, q := range old.Queues {
		if !inVHosts(opts.VHosts, q.VHost) {
			continue
		}
		what := fmt.Sprintf("queue %s/%s", q.VHost, q.Name)
		kind, _ := q.Arguments["x-queue-type"].(string)
		switch {
		case kind != "" && kind != "classic":
			// Already quorum or a stream: declared as it is.
		case !q.Durable:
			change(what, "not imported: a transient queue holds no message across a restart, and RabbitMQ 4.x deprecates transient non-exclusive queues; clients declare it again")
			continue
		case q.AutoDelete:
			// RabbitMQ 4.3 itself drops an auto-delete queue from an import.
			change(what, "not imported: an auto-delete queue lives only while its consumers do (a quorum queue cannot be one), and its clients declare it again")
			continue
		case slices.Contains(opts.KeepClassic, q.VHost+"/"+q.Name):
			q = classic(q)
			change(what, "kept classic, as configured")
		default:
			q = toQuorum(q, func(format string, args ...any) { change(what, format, args...) })
		}
		d.Queues = append(d.Queues, q)
		m.Queues = append(m.Queues, q)
	}
	for _, x := range old.Exchanges {
		if inVHosts(opts.VHosts, x.VHost) {
			d.Exchanges = append(d.Exchanges, x)
		}
	}
	for _, b := range old.Bindings {
		if !inVHosts(opts.VHosts, b.VHost) {
			continue
		}
		if b.DestinationType == "queue" && !slices.ContainsFunc(d.Queues, func(q Queue) bool { return q.VHost == b.VHost && q.Name == b.Destination }) {
			change(fmt.Sprintf("binding %s/%s -> %s", b.VHost, b.Source, b.Destination), "not imported: its queue is not")
			continue
		}
		d.Bindings = append(d.Bindings, b)
	}
	m.Definitions = d
	return m
}

// sorted orders every list of a definitions document, so the move (and
// the job that carries it) is the same whatever order the old cluster's
// API listed things in: a restarted old node lists them anew.
func sorted(d Definitions) Definitions {
	key := func(parts ...string) string { return strings.Join(parts, "\x00") }
	d.Users = slices.SortedStableFunc(slices.Values(d.Users), func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	d.VHosts = slices.SortedStableFunc(slices.Values(d.VHosts), func(a, b VHost) int { return strings.Compare(a.Name, b.Name) })
	d.Permissions = slices.SortedStableFunc(slices.Values(d.Permissions), func(a, b Permission) int {
		return strings.Compare(key(a.VHost, a.User), key(b.VHost, b.User))
	})
	d.TopicPermissions = slices.SortedStableFunc(slices.Values(d.TopicPermissions), func(a, b TopicPermission) int {
		return strings.Compare(key(a.VHost, a.User, a.Exchange), key(b.VHost, b.User, b.Exchange))
	})
	d.Parameters = slices.SortedStableFunc(slices.Values(d.Parameters), func(a, b Parameter) int {
		return strings.Compare(key(a.VHost, a.Component, a.Name), key(b.VHost, b.Component, b.Name))
	})
	d.GlobalParameters = slices.SortedStableFunc(slices.Values(d.GlobalParameters), func(a, b GlobalParameter) int { return strings.Compare(a.Name, b.Name) })
	d.Policies = slices.SortedStableFunc(slices.Values(d.Policies), func(a, b Policy) int {
		return strings.Compare(key(a.VHost, a.Name), key(b.VHost, b.Name))
	})
	d.Queues = slices.SortedStableFunc(slices.Values(d.Queues), func(a, b Queue) int {
		return strings.Compare(key(a.VHost, a.Name), key(b.VHost, b.Name))
	})
	d.Exchanges = slices.SortedStableFunc(slices.Values(d.Exchanges), func(a, b Exchange) int {
		return strings.Compare(key(a.VHost, a.Name), key(b.VHost, b.Name))
	})
	d.Bindings = slices.SortedStableFunc(slices.Values(d.Bindings), func(a, b Binding) int {
		return strings.Compare(key(a.VHost, a.Source, a.DestinationType, a.Destination, a.RoutingKey), key(b.VHost, b.Source, b.DestinationType, b.Destination, b.RoutingKey))
	})
	return d
}

// toQuorum makes a durable classic queue a quorum queue, dropping or
// changing what a quorum queue refuses, and says so through changed.
func toQuorum(q Queue, changed func(format string, args ...any)) Queue {
	args, dropped := without(q.Arguments, func(k string) bool { _, ok := quorumRefuses[k]; return ok })
	for _, k := range dropped {
		changed("argument %s %s", k, quorumRefuses[k])
	}
	if v, ok := args["x-overflow"]; ok && v == "reject-publish-dlx" {
		args["x-overflow"] = "reject-publish"
		changed("argument x-overflow reject-publish-dlx became reject-publish: quorum queues do not dead-letter refused publishes")
	}
	if v, ok := args["x-queue-master-locator"]; ok {
		delete(args, "x-queue-master-locator")
		args["x-queue-leader-locator"] = leaderLocators[fmt.Sprint(v)]
		changed("argument x-queue-master-locator %v became x-queue-leader-locator %s", v, args["x-queue-leader-locator"])
	}
	args["x-queue-type"] = "quorum"
	changed("became a quorum queue")
	q.Arguments = args
	return q
}

// classic declares a queue classic explicitly: the new stack's default
// queue type is quorum, so a queue without x-queue-type would become one.
func classic(q Queue) Queue {
	args, _ := without(q.Arguments, func(string) bool { return false })
	args["x-queue-type"] = "classic"
	q.Arguments = args
	return q
}

// hasPermission reports whether user has a permission on one of vhosts.
func hasPermission(perms []Permission, user string, vhosts []string) bool {
	return slices.ContainsFunc(perms, func(p Permission) bool { return p.User == user && inVHosts(vhosts, p.VHost) })
}

// componentPlugin is the plugin a runtime parameter's component belongs
// to, where it belongs to one.
func componentPlugin(component string) (string, bool) {
	switch component {
	case "shovel":
		return "rabbitmq_shovel", true
	case "federation-upstream", "federation-upstream-set":
		return "rabbitmq_federation", true
	}
	return "", false
}
