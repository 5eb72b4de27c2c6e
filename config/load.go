package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Source is where Load reads raw values: the stack's config.
type Source interface {
	// Get returns the raw value of a key of this project's namespace.
	Get(key string) (string, bool)
	// Secret reports whether the key is stored encrypted.
	Secret(key string) bool
}

// contextSource reads the stack config of a running Pulumi program.
type contextSource struct {
	ctx *pulumi.Context
}

// FromContext returns the running program's stack config as a Source.
// It reads plain values directly, which never panics (unlike Require*) and
// does not warn about secrets being read as plain text: Load only validates
// them, and components wrap them in pulumi.ToSecret before use.
func FromContext(ctx *pulumi.Context) Source { return contextSource{ctx} }

func (s contextSource) Get(key string) (string, bool) {
	return s.ctx.GetConfig(s.ctx.Project() + ":" + key)
}

func (s contextSource) Secret(key string) bool {
	return s.ctx.IsConfigSecret(s.ctx.Project() + ":" + key)
}

// MapSource is a Source backed by maps, for tests and tools.
type MapSource struct {
	Values  map[string]string
	Secrets map[string]bool
}

// Get implements Source.
func (m MapSource) Get(key string) (string, bool) { v, ok := m.Values[key]; return v, ok }

// Secret implements Source.
func (m MapSource) Secret(key string) bool { return m.Secrets[key] }

// Load reads every key from src, applies the defaults and validates the
// result. The error joins every problem found, parse and rule alike.
func Load(src Source, project, stack string) (*Config, []string, error) {
	p := parser{src: src}
	c := &Config{
		Prefix:          p.str(KeyPrefix),
		Nodes:           p.integer(KeyNodes),
		NodeTypes:       p.list(KeyNodeTypes),
		RabbitMQImage:   p.str(KeyRabbitMQImage),
		HAProxyImage:    p.str(KeyHAProxyImage),
		HAMode:          p.str(KeyHAMode),
		QuorumGroupSize: p.integer(KeyQuorumGroupSize),
		Ports: Ports{
			AMQP:         p.integer(KeyAMQPPort),
			AMQPS:        p.integer(KeyAMQPSPort),
			Stats:        p.integer(KeyStatsPort),
			Management:   p.integer(KeyManagementPort),
			NodeAMQPBase: p.integer(KeyNodeAMQPPortBase),
			MetricsBase:  p.integer(KeyMetricsPortBase),
		},
		MemoryLimitMB:           p.integer(KeyMemoryLimitMB),
		DiskFreeLimitMB:         p.integer(KeyDiskFreeLimitMB),
		NetTicktimeSeconds:      p.integer(KeyNetTicktime),
		StartTimeoutSeconds:     p.integer(KeyStartTimeout),
		RestartPolicy:           p.str(KeyRestartPolicy),
		RetainVolumes:           p.boolean(KeyRetainVolumes),
		RollingReplace:          p.boolean(KeyRollingReplace),
		AllowUnsupportedUpgrade: p.boolean(KeyAllowUpgrade),
		AdminUser:               p.str(KeyAdminUser),
		StatsUser:               p.str(KeyStatsUser),
		VHosts:                  p.list(KeyVHosts),
		TLS: TLS{
			DNSNames:          p.list(KeyTLSDNSNames),
			IPAddresses:       p.list(KeyTLSIPAddresses),
			KeyAlgorithm:      p.str(KeyTLSKeyAlgorithm),
			ValidityHours:     p.integer(KeyTLSValidityHours),
			EarlyRenewalHours: p.integer(KeyTLSEarlyRenewal),
			ClientCACert:      pemText(p.str(KeyTLSClientCACert)),
		},
		Platform: p.str(KeyPlatform),
		Swarm: Swarm{
			Nodes:           p.list(KeySwarmNodes),
			AllowColocation: p.boolean(KeySwarmColocate),
			PublishMode:     p.str(KeyHAProxyPublish),
		},
		Secrets: Secrets{
			ErlangCookie:  p.secret(KeyErlangCookie),
			AdminPassword: p.secret(KeyAdminPassword),
			StatsPassword: p.secret(KeyStatsPassword),
		},
	}
	p.object(KeyUsers, &c.Users)
	if len(c.Users) > 0 && !src.Secret(KeyUsers) {
		p.fail(KeyUsers, "<users>", "holds passwords, so it must be set with --secret (pulumi config set --secret --path 'users[0].password' ...)")
	}
	p.object(KeyMigrateFrom, &c.MigrateFrom)
	if c.MigrateFrom != nil && !src.Secret(KeyMigrateFrom) {
		p.fail(KeyMigrateFrom, "<migrateFrom>", "holds a password, so it must be set with --secret (pulumi config set --secret --path migrateFrom.password ...)")
	}
	c.Subnet = p.prefix(KeySubnet)
	c.Gateway = p.addr(KeyGateway)
	c.HAProxyIP = p.addr(KeyHAProxyIP)
	c.HostIP = p.addr(KeyHostIP)
	for i, s := range p.list(KeyNodeIPs) {
		c.NodeIPs = append(c.NodeIPs, p.parseAddr(fmt.Sprintf("%s[%d]", KeyNodeIPs, i), s))
	}
	if c.IsSwarm() {
		// Swarm gives tasks their addresses: a static one set here would
		// silently mean nothing.
		for _, key := range []string{KeyNodeIPs, KeyHAProxyIP} {
			if raw := p.raw(key); raw != "" && raw != "[]" {
				p.fail(key, strconv.Quote(raw), "cannot be set with platform swarm: Swarm assigns the tasks' addresses on the overlay network; remove it")
			}
		}
	}
	warnings := applyDefaults(c, project, stack)
	// Every problem at once: the parse errors, and the rule errors of keys
	// that parsed (a key that did not parse would only repeat its error).
	errs := p.errs
	for _, e := range c.validate() {
		if !p.failed(e.Key) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, nil, problems(errs)
	}
	return c, warnings, nil
}

// problems reports every config problem as one error per problem: a
// *multierror.Error, which the Pulumi SDK flattens into its own report, so
// the header Pulumi prints counts the problems ("3 errors occurred"),
// and each is a line of its own, a missing secret among the rest.
func problems(errs []error) error {
	return &multierror.Error{Errors: errs, ErrorFormat: func(es []error) string {
		lines := make([]string, len(es))
		for i, e := range es {
			lines[i] = "  " + e.Error()
		}
		return fmt.Sprintf("the stack config has %d problem(s); nothing was created:\n%s", len(es), strings.Join(lines, "\n"))
	}}
}

// keyType returns the documented type of a key.
func keyType(key string) string {
	for _, k := range Keys {
		if k.Name == key {
			return k.Type
		}
	}
	panic("config: no key " + key)
}

// defaultOf returns the documented default of a key.
func defaultOf(key string) string {
	for _, k := range Keys {
		if k.Name == key {
			return k.Default
		}
	}
	panic("config: no key " + key)
}

// parser reads raw values, falling back to the documented defaults, and
// collects every parse error instead of stopping at the first.
type parser struct {
	src  Source
	errs []error
}

func (p *parser) fail(key, value, rule string) {
	p.errs = append(p.errs, &FieldError{key, value, rule})
}

// failed reports whether key, or the list it indexes, failed to parse.
func (p *parser) failed(key string) bool {
	root, _, _ := strings.Cut(key, "[")
	for _, e := range p.errs {
		if r, _, _ := strings.Cut(e.(*FieldError).Key, "["); r == root {
			return true
		}
	}
	return false
}

func (p *parser) raw(key string) string {
	if v, ok := p.src.Get(key); ok {
		return v
	}
	return defaultOf(key)
}

func (p *parser) str(key string) string { return strings.TrimSpace(p.raw(key)) }

func (p *parser) integer(key string) int {
	s := p.str(key)
	n, err := strconv.Atoi(s)
	if err != nil {
		p.fail(key, strconv.Quote(s), "is not a whole number")
	}
	return n
}

func (p *parser) boolean(key string) bool {
	s := p.str(key)
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.fail(key, strconv.Quote(s), "is not true or false")
	}
	return b
}

func (p *parser) list(key string) []string {
	var out []string
	p.object(key, &out)
	return out
}

func (p *parser) object(key string, out any) {
	s := p.str(key)
	if s == "" {
		return
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		value := strconv.Quote(s)
		if p.src.Secret(key) {
			value = "<secret>"
		}
		if keyType(key) == "object" {
			p.fail(key, value, fmt.Sprintf("is not a valid object (%v); set its fields with pulumi config set --path '%s.<field>' ...", err, key))
			return
		}
		p.fail(key, value, fmt.Sprintf("is not a valid list (%v); set items with pulumi config set --path '%s[0]' ...", err, key))
	}
}

// secret reads a secret key. A value stored in plain text is an error: it
// would sit unencrypted in Pulumi.<stack>.yaml.
func (p *parser) secret(key string) string {
	v, ok := p.src.Get(key)
	switch {
	case !ok || v == "":
		p.fail(key, "(unset)", fmt.Sprintf("is required; set it with pulumi config set --secret %s", key))
	case !p.src.Secret(key):
		p.fail(key, "(plain text)", fmt.Sprintf("must be a secret; set it with pulumi config set --secret %s", key))
	}
	return v
}

func (p *parser) prefix(key string) netip.Prefix {
	s := p.str(key)
	pfx, err := netip.ParsePrefix(s)
	if err != nil || !pfx.Addr().Is4() {
		p.fail(key, strconv.Quote(s), "is not an IPv4 subnet in CIDR form, like 10.9.0.0/16")
		return netip.Prefix{}
	}
	return pfx
}

func (p *parser) addr(key string) netip.Addr {
	s := p.str(key)
	if s == "" {
		return netip.Addr{}
	}
	return p.parseAddr(key, s)
}

func (p *parser) parseAddr(key, s string) netip.Addr {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		p.fail(key, strconv.Quote(s), "is not an IPv4 address")
		return netip.Addr{}
	}
	return a
}

// pemText is trimmed PEM text as a PEM file holds it, ending in a newline;
// "" stays "".
func pemText(s string) string {
	if s == "" {
		return ""
	}
	return s + "\n"
}
