package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// MigrateFrom is the old cluster a blue-green move empties into this stack
// (issue 17): its management API, for the definitions and the queues'
// depths, its AMQP endpoint, for the shovels, and the vhosts to move.
type MigrateFrom struct {
	// ManagementURL is the old cluster's management API, http(s)://host:port.
	ManagementURL string `json:"managementUrl"`
	// AMQPURL is the old cluster's AMQP endpoint, amqp(s)://host:port,
	// as the new nodes reach it.
	AMQPURL string `json:"amqpUrl"`
	// User and Password are an administrator's on the old cluster.
	User     string `json:"user"`
	Password string `json:"password"`
	// VHosts are the vhosts to move.
	VHosts []string `json:"vhosts"`
	// KeepClassic are the queues, "vhost/name", that stay classic.
	KeepClassic []string `json:"keepClassic,omitempty"`
	// Network, where set, is a Docker network the old cluster is on: the
	// nodes join it too, so the shovels reach amqpUrl on it.
	Network string `json:"network,omitempty"`
}

// networkRule is Docker's rule for a network name.
var networkRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// AMQPURLWithUser is the old cluster's AMQP URL with its credentials.
func (m *MigrateFrom) AMQPURLWithUser() string {
	u, err := url.Parse(m.AMQPURL)
	if err != nil {
		return m.AMQPURL // validated: never here
	}
	u.User = url.UserPassword(m.User, m.Password)
	return u.String()
}

// validateMigrateFrom checks the move's settings. The password is never
// quoted; the URLs carry none (credentials in them are refused).
func (c *Config) validateMigrateFrom(v *validator) {
	m := c.MigrateFrom
	if m == nil {
		return
	}
	q := strconv.Quote
	key := func(field string) string { return KeyMigrateFrom + "." + field }
	if c.HAMode != HAModeQuorum {
		v.fail(KeyMigrateFrom, "(set)", fmt.Sprintf("moves queues to quorum queues, and this stack's haMode is %s: use a 4.x image (or haMode quorum)", c.HAMode))
	}
	checkURL := func(field, raw string, schemes ...string) {
		u, err := url.Parse(raw)
		switch {
		case raw == "":
			v.fail(key(field), `""`, "is required")
		case err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "":
			v.fail(key(field), q(raw), fmt.Sprintf("must be a %s URL with a host, like %s://old-haproxy:%s", strings.Join(schemes, " or "), schemes[0], map[string]string{"http": "15672", "amqp": "5672"}[schemes[0]]))
		case u.User != nil:
			v.fail(key(field), "(a URL with credentials)", "must not carry credentials: set migrateFrom.user and migrateFrom.password")
		case u.Path != "" && u.Path != "/":
			v.fail(key(field), q(raw), "must have no path: the vhosts are in migrateFrom.vhosts")
		}
	}
	checkURL("managementUrl", m.ManagementURL, "http", "https")
	checkURL("amqpUrl", m.AMQPURL, "amqp", "amqps")
	if !userRule.MatchString(m.User) {
		v.fail(key("user"), q(m.User), "must be 1 to 64 letters, digits or _.@-: an administrator of the old cluster")
	}
	if m.Password == "" {
		v.fail(key("password"), "(unset)", "is required: the old cluster's password of migrateFrom.user")
	}
	if len(m.VHosts) == 0 {
		v.fail(key("vhosts"), "[]", `must name the vhosts to move, e.g. ["/"]`)
	}
	seen := map[string]bool{}
	for i, vh := range m.VHosts {
		k := fmt.Sprintf("%s[%d]", key("vhosts"), i)
		switch {
		case vh == "":
			v.fail(k, `""`, "must not be empty")
		case seen[vh]:
			v.fail(k, q(vh), "is listed twice")
		}
		seen[vh] = true
	}
	if m.Network != "" && !networkRule.MatchString(m.Network) {
		v.fail(key("network"), q(m.Network), "is not a Docker network name (letters, digits and _.-, starting with a letter or digit)")
	}
	for i, qn := range m.KeepClassic {
		k := fmt.Sprintf("%s[%d]", key("keepClassic"), i)
		vh, name, ok := strings.Cut(qn, "/")
		if qn != "" && strings.HasPrefix(qn, "//") {
			vh, name, ok = "/", qn[2:], true
		}
		switch {
		case !ok || name == "":
			v.fail(k, q(qn), `must be "vhost/queue" ("//queue" for the / vhost)`)
		case !seen[vh]:
			v.fail(k, q(qn), fmt.Sprintf("is in vhost %q, which is not in migrateFrom.vhosts", vh))
		}
	}
}
