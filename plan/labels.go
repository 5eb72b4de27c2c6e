package plan

// Labels on every Docker object, so `docker ps --filter label=...` finds a
// stack's objects and tests can check nothing is left behind.
const (
	// LabelStack carries the stack's prefix.
	LabelStack = "org.rabbitmq-ha.stack"
	// LabelRole is node, haproxy or job.
	LabelRole = "org.rabbitmq-ha.role"
	// LabelNode carries a node's index.
	LabelNode = "org.rabbitmq-ha.node"
)

// Roles, the values of LabelRole.
const (
	RoleNode    = "node"
	RoleHAProxy = "haproxy"
	RoleJob     = "job"
)

// labels returns the labels of one object.
func labels(stack, role string, extra map[string]string) map[string]string {
	m := map[string]string{LabelStack: stack}
	if role != "" {
		m[LabelRole] = role
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}
