// Package migrate is the blue-green move from an old cluster (3.x, classic
// mirrored queues) to this stack (issue 17), as pure functions: the old
// cluster's definitions, as its management API exports them, become the
// definitions this stack's line accepts, with every drop and change
// reported, and each moved queue gets the shovel that empties it into its
// new quorum queue. No I/O: the program reads the old cluster, these
// functions decide, and the components apply.
package migrate

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Definitions is RabbitMQ's definitions document (GET /api/definitions),
// the parts a move carries. Unknown fields are dropped and reported by the
// caller's decoding, not carried blindly.
type Definitions struct {
	RabbitVersion    string            `json:"rabbit_version,omitempty"`
	RabbitMQVersion  string            `json:"rabbitmq_version,omitempty"`
	Users            []User            `json:"users"`
	VHosts           []VHost           `json:"vhosts"`
	Permissions      []Permission      `json:"permissions"`
	TopicPermissions []TopicPermission `json:"topic_permissions"`
	Parameters       []Parameter       `json:"parameters"`
	GlobalParameters []GlobalParameter `json:"global_parameters"`
	Policies         []Policy          `json:"policies"`
	Queues           []Queue           `json:"queues"`
	Exchanges        []Exchange        `json:"exchanges"`
	Bindings         []Binding         `json:"bindings"`
}

// User keeps its password hash: users log in to the new cluster with their
// old passwords.
type User struct {
	Name             string          `json:"name"`
	PasswordHash     string          `json:"password_hash"`
	HashingAlgorithm string          `json:"hashing_algorithm"`
	Tags             Tags            `json:"tags"`
	Limits           json.RawMessage `json:"limits,omitempty"`
}

// Tags are a user's tags: a list since 3.9, a comma-separated string
// before; both decode, and a list is written.
type Tags []string

// UnmarshalJSON takes a list or a comma-separated string.
func (t *Tags) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*t = list
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("user tags: neither a list nor a string: %s", b)
	}
	*t = nil
	for _, tag := range strings.Split(s, ",") {
		if tag = strings.TrimSpace(tag); tag != "" {
			*t = append(*t, tag)
		}
	}
	return nil
}

// MarshalJSON writes a list, [] for none.
func (t Tags) MarshalJSON() ([]byte, error) { return json.Marshal([]string(orEmpty(t))) }

// VHost is a virtual host.
type VHost struct {
	Name string `json:"name"`
	// Metadata and Limits are carried as the old cluster wrote them (3.10
	// writes no limits as [], later lines as {}).
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Limits   json.RawMessage `json:"limits,omitempty"`
}

// Permission is a user's on a vhost.
type Permission struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// TopicPermission is a user's on a topic exchange.
type TopicPermission struct {
	User     string `json:"user"`
	VHost    string `json:"vhost"`
	Exchange string `json:"exchange"`
	Write    string `json:"write"`
	Read     string `json:"read"`
}

// Parameter is a runtime parameter of a plugin (a component).
type Parameter struct {
	VHost     string `json:"vhost"`
	Component string `json:"component"`
	Name      string `json:"name"`
	Value     any    `json:"value"`
}

// GlobalParameter is a cluster-wide parameter.
type GlobalParameter struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// Policy is a policy (or an operator policy).
type Policy struct {
	VHost      string         `json:"vhost"`
	Name       string         `json:"name"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Definition map[string]any `json:"definition"`
	Priority   int            `json:"priority"`
}

// Queue is a queue's declaration.
type Queue struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Arguments  map[string]any `json:"arguments"`
}

// Exchange is an exchange's declaration.
type Exchange struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

// Binding binds a queue or exchange to an exchange.
type Binding struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
}

// Parse decodes an exported definitions document.
func Parse(raw []byte) (Definitions, error) {
	var d Definitions
	if err := json.Unmarshal(raw, &d); err != nil {
		return Definitions{}, fmt.Errorf("the old cluster's definitions: %w", err)
	}
	return d, nil
}

// JSON is the document the new cluster imports. Every list is written,
// empty rather than null: RabbitMQ's import takes the length of each.
func (d Definitions) JSON() []byte {
	d.Users = orEmpty(d.Users)
	d.VHosts = orEmpty(d.VHosts)
	d.Permissions = orEmpty(d.Permissions)
	d.TopicPermissions = orEmpty(d.TopicPermissions)
	d.Parameters = orEmpty(d.Parameters)
	d.GlobalParameters = orEmpty(d.GlobalParameters)
	d.Policies = orEmpty(d.Policies)
	d.Queues = orEmpty(d.Queues)
	d.Exchanges = orEmpty(d.Exchanges)
	d.Bindings = orEmpty(d.Bindings)
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		panic(err) // only plain JSON values are ever stored
	}
	return b
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// sortedKeys returns m's keys in order, so reports and documents are
// deterministic.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// without returns m without the keys that match drop, and the dropped keys.
func without(m map[string]any, drop func(string) bool) (map[string]any, []string) {
	out := map[string]any{}
	var dropped []string
	for _, k := range sortedKeys(m) {
		if drop(k) {
			dropped = append(dropped, k)
			continue
		}
		out[k] = m[k]
	}
	return out, dropped
}

// inVHosts reports whether vhost is one of the moved ones.
func inVHosts(vhosts []string, vhost string) bool { return slices.Contains(vhosts, vhost) }
