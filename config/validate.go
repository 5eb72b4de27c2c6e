package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one bad config value: the key, the value and the rule.
type FieldError struct {
	Key   string
	Value string
	Rule  string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s %s", e.Key, e.Value, e.Rule) }

var (
	// prefixRule keeps names valid for containers, volumes, networks and hostnames.
	prefixRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	// userRule keeps user names printable and free of separators.
	userRule = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)
	// cookieRule is what Erlang accepts as a cookie without quoting, and what
	// RabbitMQ's docs recommend: letters and digits.
	cookieRule = regexp.MustCompile(`^[A-Za-z0-9]{20,255}$`)
	// dnsRule is an RFC 1123 host name.
	dnsRule = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	// passwordRule keeps a password safe to write into rabbitmq.conf and
	// haproxy.cfg unquoted: printable ASCII without blanks, quotes, # or \.
	passwordRule = regexp.MustCompile(`^[A-Za-z0-9!$%&()*+,./:;<=>?@\[\]^_{|}~-]+$`)
	// imageRule is a loose image reference: name[:tag][@digest].
	imageRule = regexp.MustCompile(`^[a-z0-9]+([._/:-][A-Za-z0-9]+)*(@sha256:[a-f0-9]{64})?$`)
)

// knownTags are the user tags RabbitMQ gives meaning to.
var knownTags = []string{"administrator", "monitoring", "management", "policymaker", "impersonator"}

var restartPolicies = []string{"no", "on-failure", "always", "unless-stopped"}

// minPasswordLen guards the admin and stats passwords, which sit behind
// published ports.
const minPasswordLen = 12

// minMemoryMB is the least memory a node with the management plugin runs in.
const minMemoryMB = 256

// The bounds of net_ticktime: below 5 s a busy host's scheduling pauses
// read as partitions; above 120 s a cut-off node goes unseen for minutes.
const minNetTicktime, maxNetTicktime = 5, 120

// The bounds of startTimeoutSeconds: a 3.x node's boot and join take 10 to
// 30 s on a quiet host; an hour is past any stall worth waiting for.
const minStartTimeout, maxStartTimeout = 30, 3600

// minDiskFreeLimitMB is RabbitMQ's own default, meant for development.
const minDiskFreeLimitMB = 50

func (c *Config) validate() []*FieldError {
	var v validator
	q := strconv.Quote

	if !prefixRule.MatchString(c.Prefix) {
		v.fail(KeyPrefix, q(c.Prefix), "must be 1 to 40 lowercase letters, digits and dashes, starting with a letter or digit")
	}

	switch {
	case c.Nodes < 1 || c.Nodes > MaxNodes:
		v.fail(KeyNodes, strconv.Itoa(c.Nodes), fmt.Sprintf("is out of range, 1 to %d nodes are supported", MaxNodes))
	case c.Nodes%2 == 0:
		v.fail(KeyNodes, strconv.Itoa(c.Nodes), "is not allowed, an odd count keeps a majority when a minority fails")
	}
	if len(c.NodeTypes) > c.Nodes {
		v.fail(KeyNodeTypes, fmt.Sprintf("(%d entries)", len(c.NodeTypes)), fmt.Sprintf("has more entries than nodes (%d)", c.Nodes))
	}
	for i, t := range c.NodeTypes {
		key := fmt.Sprintf("%s[%d]", KeyNodeTypes, i)
		switch {
		case t != NodeDisc && t != NodeRAM:
			v.fail(key, q(t), "must be disc or ram")
		case i == 0 && t != NodeDisc:
			v.fail(key, q(t), "must be disc: node 0 seeds the cluster and must keep its data on disk")
		case t == NodeRAM && !c.RAMNodesSupported():
			v.fail(key, q(t), fmt.Sprintf("is not supported by RabbitMQ %s (image %s): Khepri, its only metadata store, has no RAM nodes "+
				"(join_cluster takes no --ram, cluster_formation.node_type only disc); use disc", c.RabbitMQVersion, c.RabbitMQImage))
		}
	}

	c.validateNetwork(&v)

	if !imageRule.MatchString(c.RabbitMQImage) {
		v.fail(KeyRabbitMQImage, q(c.RabbitMQImage), "is not an image reference like rabbitmq:3.13-management")
	} else if c.RabbitMQVersion.Known() && !c.RabbitMQVersion.AtLeast(MinVersion) {
		v.fail(KeyRabbitMQImage, q(c.RabbitMQImage), "is older than RabbitMQ "+MinVersion.String()+", which has no rabbitmqctl await_startup")
	}
	if !imageRule.MatchString(c.HAProxyImage) {
		v.fail(KeyHAProxyImage, q(c.HAProxyImage), "is not an image reference like haproxy:2.8")
	}
	switch c.HAMode {
	case HAModeMirrored:
		if c.RabbitMQVersion.AtLeast(MirroringRemovedIn) {
			v.fail(KeyHAMode, q(c.HAMode), fmt.Sprintf("is not supported by RabbitMQ %s (image %s): classic mirroring was removed in %s, use quorum", c.RabbitMQVersion, c.RabbitMQImage, MirroringRemovedIn))
		}
	case HAModeQuorum:
		if c.RabbitMQVersion.Known() && !c.RabbitMQVersion.AtLeast(QuorumDefaultSince) {
			v.fail(KeyHAMode, q(c.HAMode), fmt.Sprintf("needs RabbitMQ %s or newer for default_queue_type, but image %s is %s; use mirrored", QuorumDefaultSince, c.RabbitMQImage, c.RabbitMQVersion))
		}
	default:
		v.fail(KeyHAMode, q(c.HAMode), "is not a known HA mode, use mirrored or quorum")
	}

	c.validateQuorumGroupSize(&v)
	c.validatePorts(&v)

	if c.MemoryLimitMB < minMemoryMB {
		v.fail(KeyMemoryLimitMB, strconv.Itoa(c.MemoryLimitMB), fmt.Sprintf("is below %d MiB, too little for a node with the management plugin", minMemoryMB))
	}
	if c.DiskFreeLimitMB < minDiskFreeLimitMB {
		v.fail(KeyDiskFreeLimitMB, strconv.Itoa(c.DiskFreeLimitMB), fmt.Sprintf("is below %d MB: a node would fill its disk before it blocks publishers", minDiskFreeLimitMB))
	}
	if c.NetTicktimeSeconds < minNetTicktime || c.NetTicktimeSeconds > maxNetTicktime {
		v.fail(KeyNetTicktime, strconv.Itoa(c.NetTicktimeSeconds), fmt.Sprintf("must be %d to %d seconds: below, a busy host's pauses read as partitions; above, a cut-off node goes unseen for minutes", minNetTicktime, maxNetTicktime))
	}
	if c.StartTimeoutSeconds < minStartTimeout || c.StartTimeoutSeconds > maxStartTimeout {
		v.fail(KeyStartTimeout, strconv.Itoa(c.StartTimeoutSeconds), fmt.Sprintf("must be %d to %d seconds: below, a node's boot and join on a busy host fail the up; above, a stalled container holds the up for hours", minStartTimeout, maxStartTimeout))
	}
	if !slices.Contains(restartPolicies, c.RestartPolicy) {
		v.fail(KeyRestartPolicy, q(c.RestartPolicy), "must be one of no, on-failure, always, unless-stopped")
	}

	c.validateUsers(&v)
	c.validateMigrateFrom(&v)
	c.validatePlatform(&v)
	c.validateTLS(&v)
	c.validateSecrets(&v)
	return v.errs
}

func (c *Config) validateNetwork(v *validator) {
	q := func(a netip.Addr) string { return strconv.Quote(a.String()) }
	if !c.Subnet.IsValid() {
		return // already reported by the parser
	}
	if c.Subnet.Bits() > 24 || c.Subnet.Bits() < 8 {
		v.fail(KeySubnet, strconv.Quote(c.Subnet.String()), "must be a /8 to /24 subnet, to leave room for the nodes at .10 and up")
		return
	}
	if !c.HostIP.IsValid() {
		v.fail(KeyHostIP, `""`, "is required")
	}
	used := map[netip.Addr]string{}
	// Docker's own rules: in the subnet, neither its network nor its
	// broadcast address, and no address twice (the gateway included).
	check := func(key string, a netip.Addr) {
		if !a.IsValid() {
			return
		}
		switch {
		case !c.Subnet.Contains(a):
			v.fail(key, q(a), fmt.Sprintf("is outside the subnet %s", c.Subnet))
		case a == c.Subnet.Addr():
			v.fail(key, q(a), "is the subnet's network address")
		case a == broadcast(c.Subnet):
			v.fail(key, q(a), "is the subnet's broadcast address")
		case used[a] != "":
			v.fail(key, q(a), "is already used by "+used[a])
		default:
			used[a] = key
		}
	}
	check(KeyGateway, c.Gateway)
	check(KeyHAProxyIP, c.HAProxyIP)
	if len(c.NodeIPs) > c.Nodes && c.Nodes >= 1 {
		v.fail(KeyNodeIPs, fmt.Sprintf("(%d entries)", len(c.NodeIPs)), fmt.Sprintf("has more entries than nodes (%d)", c.Nodes))
	}
	for i, a := range c.NodeIPs {
		check(fmt.Sprintf("%s[%d]", KeyNodeIPs, i), a)
	}
}

// broadcast returns the last address of an IPv4 subnet.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func (c *Config) validatePorts(v *validator) {
	used := map[int]string{}
	check := func(key string, port int) {
		switch {
		case port < 1 || port > 65535:
			v.fail(key, strconv.Itoa(port), "is not a port number, 1 to 65535")
		case used[port] != "":
			v.fail(key, strconv.Itoa(port), "is already used by "+used[port])
		default:
			used[port] = key
		}
	}
	check(KeyAMQPPort, c.Ports.AMQP)
	check(KeyAMQPSPort, c.Ports.AMQPS)
	check(KeyStatsPort, c.Ports.Stats)
	check(KeyManagementPort, c.Ports.Management)
	for i := 0; i < c.Nodes && i < MaxNodes; i++ {
		check(fmt.Sprintf("%s (node %d: %d+%d)", KeyNodeAMQPPortBase, i, c.Ports.NodeAMQPBase, i), c.Ports.NodeAMQP(i))
	}
	for i := 0; i < c.Nodes && i < MaxNodes; i++ {
		check(fmt.Sprintf("%s (node %d: %d+%d)", KeyMetricsPortBase, i, c.Ports.MetricsBase, i), c.Ports.Metrics(i))
	}
}

func (c *Config) validateUsers(v *validator) {
	q := strconv.Quote
	if !userRule.MatchString(c.AdminUser) || c.AdminUser == "guest" {
		v.fail(KeyAdminUser, q(c.AdminUser), "must be 1 to 64 letters, digits or _.@- and not guest")
	}
	if !userRule.MatchString(c.StatsUser) {
		v.fail(KeyStatsUser, q(c.StatsUser), "must be 1 to 64 letters, digits or _.@-")
	}
	vhosts := map[string]bool{"/": true}
	for i, vh := range c.VHosts {
		key := fmt.Sprintf("%s[%d]", KeyVHosts, i)
		switch {
		case vh == "":
			v.fail(key, `""`, "must not be empty")
		case vhosts[vh] && vh != "/":
			v.fail(key, q(vh), "is listed twice")
		}
		vhosts[vh] = true
	}
	names := map[string]bool{c.AdminUser: true, "guest": true}
	for i, u := range c.Users {
		key := fmt.Sprintf("%s[%d]", KeyUsers, i)
		switch {
		case !userRule.MatchString(u.Name):
			v.fail(key+".name", q(u.Name), "must be 1 to 64 letters, digits or _.@-")
		case names[u.Name]:
			v.fail(key+".name", q(u.Name), "is taken (by guest, adminUser or another user)")
		}
		names[u.Name] = true
		if len(u.Password) < minPasswordLen {
			v.fail(key+".password", fmt.Sprintf("(%d characters)", len(u.Password)), fmt.Sprintf("must be at least %d characters", minPasswordLen))
		}
		for j, t := range u.Tags {
			if !slices.Contains(knownTags, t) {
				v.fail(fmt.Sprintf("%s.tags[%d]", key, j), q(t), fmt.Sprintf("is not a RabbitMQ user tag (%v)", knownTags))
			}
		}
		for j, p := range u.Permissions {
			if !vhosts[p.VHost] {
				v.fail(fmt.Sprintf("%s.permissions[%d].vhost", key, j), q(p.VHost), "is not in vhosts")
			}
		}
	}
}

func (c *Config) validateTLS(v *validator) {
	q := strconv.Quote
	for i, n := range c.TLS.DNSNames {
		if !dnsRule.MatchString(n) || len(n) > 253 {
			v.fail(fmt.Sprintf("%s[%d]", KeyTLSDNSNames, i), q(n), "is not a DNS name")
		}
	}
	for i, s := range c.TLS.IPAddresses {
		if _, err := netip.ParseAddr(s); err != nil {
			v.fail(fmt.Sprintf("%s[%d]", KeyTLSIPAddresses, i), q(s), "is not an IP address")
		}
	}
	if len(c.TLS.DNSNames)+len(c.TLS.IPAddresses) == 0 {
		v.fail(KeyTLSDNSNames, "[]", "and tlsIpAddresses are both empty; a certificate needs at least one name")
	}
	if c.TLS.KeyAlgorithm != KeyECDSA && c.TLS.KeyAlgorithm != KeyRSA {
		v.fail(KeyTLSKeyAlgorithm, q(c.TLS.KeyAlgorithm), "must be ECDSA or RSA")
	}
	if c.TLS.ValidityHours < 24 {
		v.fail(KeyTLSValidityHours, strconv.Itoa(c.TLS.ValidityHours), "must be at least 24 hours")
	}
	if c.TLS.EarlyRenewalHours < 1 || c.TLS.EarlyRenewalHours >= c.TLS.ValidityHours {
		v.fail(KeyTLSEarlyRenewal, strconv.Itoa(c.TLS.EarlyRenewalHours), fmt.Sprintf("must be at least 1 and less than %s (%d)", KeyTLSValidityHours, c.TLS.ValidityHours))
	}
	if c.TLS.ClientCACert != "" {
		if why := clientCAProblem(c.TLS.ClientCACert); why != "" {
			// The value is public, but long: it is described, not quoted.
			v.fail(KeyTLSClientCACert, fmt.Sprintf("(PEM, %d bytes)", len(c.TLS.ClientCACert)), why)
		}
	}
}

// clientCAProblem says what is wrong with a client CA bundle, or "": it
// must hold only PEM CERTIFICATE blocks, each a valid CA certificate.
func clientCAProblem(bundle string) string {
	rest := []byte(bundle)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return fmt.Sprintf("block %d is a PEM %q: only CA CERTIFICATE blocks belong here (never a key)", n, b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Sprintf("block %d is not an X.509 certificate: %v", n, err)
		}
		if !cert.IsCA {
			return fmt.Sprintf("block %d (subject %q) is not a CA certificate (basicConstraints CA:TRUE)", n, cert.Subject.String())
		}
	}
	if n == 0 {
		return "holds no PEM certificate: give the CA certificate's PEM text, -----BEGIN CERTIFICATE----- included"
	}
	if strings.TrimSpace(string(rest)) != "" {
		return fmt.Sprintf("has text after its %d certificate(s) that is not PEM", n)
	}
	return ""
}

// validateSecrets never prints a secret value, only its length.
func (c *Config) validateSecrets(v *validator) {
	s := c.Secrets
	if s.ErlangCookie != "" && !cookieRule.MatchString(s.ErlangCookie) {
		v.fail(KeyErlangCookie, fmt.Sprintf("(secret, %d characters)", len(s.ErlangCookie)), "must be 20 to 255 letters and digits")
	}
	for key, pw := range map[string]string{KeyAdminPassword: s.AdminPassword, KeyStatsPassword: s.StatsPassword} {
		switch {
		case pw == "":
		case len(pw) < minPasswordLen:
			v.fail(key, fmt.Sprintf("(secret, %d characters)", len(pw)), fmt.Sprintf("must be at least %d characters", minPasswordLen))
		case !passwordRule.MatchString(pw):
			v.fail(key, fmt.Sprintf("(secret, %d characters)", len(pw)), "may hold only printable ASCII without blanks, quotes, # or \\, as it is written into rabbitmq.conf and haproxy.cfg")
		}
	}
}

type validator struct{ errs []*FieldError }

func (v *validator) fail(key, value, rule string) {
	v.errs = append(v.errs, &FieldError{key, value, rule})
}

// validateQuorumGroupSize: the quorum queue size is an odd count of nodes
// the cluster has. Set with haMode mirrored, it would silently do nothing.
func (c *Config) validateQuorumGroupSize(v *validator) {
	n := c.QuorumGroupSize
	switch {
	case c.Nodes < 1 || c.Nodes > MaxNodes || c.Nodes%2 == 0:
		// nodes itself is reported; a size is checked against a valid count.
	case c.HAMode != HAModeQuorum:
		if n != 0 {
			v.fail(KeyQuorumGroupSize, strconv.Itoa(n), fmt.Sprintf("applies to haMode quorum only, and haMode is %s", c.HAMode))
		}
	case n < 1 || n > c.Nodes:
		v.fail(KeyQuorumGroupSize, strconv.Itoa(n), fmt.Sprintf("is out of range, 1 to nodes (%d)", c.Nodes))
	case n%2 == 0:
		v.fail(KeyQuorumGroupSize, strconv.Itoa(n), "is not allowed, an odd count keeps a majority when a minority of members fails")
	}
}
