package config

import (
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
)

const (
	goodCookie   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
	goodPassword = "correct-horse-battery"
)

// valid returns the raw values of a valid config: the defaults plus the
// required secrets, all stored as secrets.
func valid() (map[string]string, map[string]bool) {
	return map[string]string{
			KeyErlangCookie:  goodCookie,
			KeyAdminPassword: goodPassword,
			KeyStatsPassword: goodPassword,
		}, map[string]bool{
			KeyErlangCookie: true, KeyAdminPassword: true, KeyStatsPassword: true, KeyUsers: true,
		}
}

func load(t *testing.T, edit func(v map[string]string, s map[string]bool)) (*Config, []string, error) {
	t.Helper()
	v, s := valid()
	if edit != nil {
		edit(v, s)
	}
	return Load(MapSource{Values: v, Secrets: s}, "rabbitmq-ha", "dev")
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, warnings, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %v", warnings)
	}
	checks := map[string][2]string{
		"prefix":    {c.Prefix, "rabbitmq-ha-dev"},
		"gateway":   {c.Gateway.String(), "10.9.0.1"},
		"haproxyIP": {c.HAProxyIP.String(), "10.9.0.2"},
		"node 0 IP": {c.NodeIPs[0].String(), "10.9.0.10"},
		"node 2 IP": {c.NodeIPs[2].String(), "10.9.0.12"},
		"node 2":    {c.NodeTypes[2], NodeDisc},
		"haMode":    {c.HAMode, HAModeQuorum},
		"hostIP":    {c.HostIP.String(), "127.0.0.1"},
		"version":   {c.RabbitMQVersion.String(), "4.3"},
		"dynamic":   {c.DynamicRange().String(), "10.9.128.0/17"},
	}
	for what, got := range checks {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", what, got[0], got[1])
		}
	}
	if c.QuorumGroupSize != 3 {
		t.Errorf("quorumGroupSize = %d, want the node count, 3", c.QuorumGroupSize)
	}
	if c.Nodes != 3 || c.Ports.AMQP != 56729 || c.Ports.Stats != 51080 || c.Ports.NodeAMQP(1) != 56721 || c.MemoryLimitMB != 512 {
		t.Errorf("numeric defaults: %+v %d %d", c.Ports, c.Nodes, c.MemoryLimitMB)
	}
	if c.DiskFreeLimitMB != c.MemoryLimitMB || c.NetTicktimeSeconds != 15 || c.StartTimeoutSeconds != 360 {
		t.Errorf("disk free limit %d MB (want the memory limit, %d), net_ticktime %d s (want 15), start timeout %d s (want 360)", c.DiskFreeLimitMB, c.MemoryLimitMB, c.NetTicktimeSeconds, c.StartTimeoutSeconds)
	}
}

func TestHAModeFollowsTheImageTag(t *testing.T) {
	t.Parallel()
	for image, want := range map[string]string{
		"rabbitmq:3.10-local":                HAModeMirrored,
		"rabbitmq:4.0-local":                 HAModeQuorum,
		"rabbitmq:4.1.2-management-alpine":   HAModeQuorum,
		"rabbitmq:latest":                    HAModeQuorum,
		"registry:5000/team/rabbitmq:3.13.7": HAModeQuorum,
		"rabbitmq:3.12-management":           HAModeMirrored,
	} {
		c, _, err := load(t, func(v map[string]string, _ map[string]bool) { v[KeyRabbitMQImage] = image })
		if err != nil {
			t.Errorf("%s: %v", image, err)
			continue
		}
		if c.HAMode != want {
			t.Errorf("%s: haMode = %s, want %s", image, c.HAMode, want)
		}
	}
}

// TestRAMNodesWarn: RAM nodes are deprecated, not removed, on 4.0
// (rabbitmqctl list_deprecated_features: ram_node_type permitted_by_default),
// so they warn on every version and fail on none.
func TestRAMNodesWarn(t *testing.T) {
	t.Parallel()
	_, warnings, err := load(t, func(v map[string]string, _ map[string]bool) {
		v[KeyNodeTypes] = `["disc","ram"]`
		v[KeyRabbitMQImage] = "rabbitmq:4.0-local"
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "nodeTypes[1]") || !strings.Contains(warnings[0], "deprecated") {
		t.Errorf("warnings = %v", warnings)
	}
}

// TestValidation breaks one thing per case, starting from a valid config.
// Each error must name the key, the value and the rule.
func TestValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(v map[string]string, s map[string]bool)
		want []string // substrings of the error
	}{
		{"zero nodes", set(KeyNodes, "0"), []string{"nodes: 0 is out of range"}},
		{"even nodes", set(KeyNodes, "2"), []string{"nodes: 2 is not allowed, an odd count"}},
		{"too many nodes", set(KeyNodes, "11"), []string{"nodes: 11 is out of range, 1 to 9"}},
		{"nodes not a number", set(KeyNodes, "three"), []string{`nodes: "three" is not a whole number`}},
		{"first node ram", set(KeyNodeTypes, `["ram","disc"]`), []string{`nodeTypes[0]: "ram" must be disc`}},
		{"unknown node type", set(KeyNodeTypes, `["disc","ssd"]`), []string{`nodeTypes[1]: "ssd" must be disc or ram`}},
		{"bad subnet", set(KeySubnet, "10.9.0.0/33"), []string{`subnet: "10.9.0.0/33" is not an IPv4 subnet`}},
		{"tiny subnet", set(KeySubnet, "10.9.0.0/28"), []string{`subnet: "10.9.0.0/28" must be a /8 to /24 subnet`}},
		{"IP outside subnet", set(KeyNodeIPs, `["10.9.0.10","10.8.0.11"]`), []string{`nodeIPs[1]: "10.8.0.11" is outside the subnet 10.9.0.0/16`}},
		{"duplicate IP", set(KeyNodeIPs, `["10.9.0.10","10.9.0.10"]`), []string{`nodeIPs[1]: "10.9.0.10" is already used by nodeIPs[0]`}},
		{"IP is the gateway", set(KeyHAProxyIP, "10.9.0.1"), []string{`haproxyIP: "10.9.0.1" is already used by gateway`}},
		{"broadcast IP", set(KeyNodeIPs, `["10.9.255.255"]`), []string{`nodeIPs[0]: "10.9.255.255" is the subnet's broadcast address`}},
		{"not an IP", set(KeyGateway, "gateway"), []string{`gateway: "gateway" is not an IPv4 address`}},
		{"duplicate port", set(KeyStatsPort, "56729"), []string{"statsPort: 56729 is already used by amqpPort"}},
		{"node port collides", set(KeyNodeAMQPPortBase, "56670"), []string{"nodeAmqpPortBase (node 1: 56670+1): 56671 is already used by amqpsPort"}},
		{"port out of range", set(KeyAMQPPort, "70000"), []string{"amqpPort: 70000 is not a port number"}},
		{"malformed cookie", set(KeyErlangCookie, "short;cookie"), []string{"erlangCookie: (secret, 12 characters) must be 20 to 255 letters and digits"}},
		{"missing secret", func(v map[string]string, _ map[string]bool) { delete(v, KeyAdminPassword) }, []string{"adminPassword: (unset) is required"}},
		{"plain-text secret", func(_ map[string]string, s map[string]bool) { s[KeyStatsPassword] = false }, []string{"statsPassword: (plain text) must be a secret"}},
		{"short password", set(KeyAdminPassword, "hunter2"), []string{"adminPassword: (secret, 7 characters) must be at least 12"}},
		{"password with a blank", set(KeyStatsPassword, "correct horse battery"), []string{"statsPassword: (secret, 21 characters) may hold only printable ASCII"}},
		{"unknown HA mode", set(KeyHAMode, "raft"), []string{`haMode: "raft" is not a known HA mode`}},
		{"mirrored on 4.x", setAll(KeyHAMode, HAModeMirrored, KeyRabbitMQImage, "rabbitmq:4.0-management"), []string{`haMode: "mirrored" is not supported by RabbitMQ 4.0`}},
		{"quorum on 3.10", setAll(KeyHAMode, HAModeQuorum, KeyRabbitMQImage, "rabbitmq:3.10-local"), []string{`haMode: "quorum" needs RabbitMQ 3.13 or newer`}},
		{"quorum size above nodes", set(KeyQuorumGroupSize, "5"), []string{"quorumGroupSize: 5 is out of range, 1 to nodes (3)"}},
		{"even quorum size", setAll(KeyNodes, "5", KeyQuorumGroupSize, "4"), []string{"quorumGroupSize: 4 is not allowed, an odd count"}},
		{"negative quorum size", set(KeyQuorumGroupSize, "-1"), []string{"quorumGroupSize: -1 is out of range"}},
		{"quorum size when mirrored", setAll(KeyRabbitMQImage, "rabbitmq:3.10-local", KeyQuorumGroupSize, "3"), []string{"quorumGroupSize: 3 applies to haMode quorum only, and haMode is mirrored"}},
		{"admin is guest", set(KeyAdminUser, "guest"), []string{`adminUser: "guest" must be`}},
		{"bad prefix", set(KeyPrefix, "My Stack"), []string{`prefix: "My Stack" must be 1 to 40 lowercase`}},
		{"tiny memory", set(KeyMemoryLimitMB, "128"), []string{"memoryLimitMb: 128 is below 256 MiB"}},
		{"disk free limit too low", set(KeyDiskFreeLimitMB, "10"), []string{"diskFreeLimitMb: 10 is below 50 MB"}},
		{"net ticktime too short", set(KeyNetTicktime, "2"), []string{"netTicktimeSeconds: 2 must be 5 to 120 seconds"}},
		{"net ticktime too long", set(KeyNetTicktime, "600"), []string{"netTicktimeSeconds: 600 must be 5 to 120 seconds"}},
		{"start timeout too short", set(KeyStartTimeout, "10"), []string{"startTimeoutSeconds: 10 must be 30 to 3600 seconds"}},
		{"start timeout too long", set(KeyStartTimeout, "86400"), []string{"startTimeoutSeconds: 86400 must be 30 to 3600 seconds"}},
		{"restart policy", set(KeyRestartPolicy, "sometimes"), []string{`restartPolicy: "sometimes" must be one of`}},
		{"key algorithm", set(KeyTLSKeyAlgorithm, "DSA"), []string{`tlsKeyAlgorithm: "DSA" must be ECDSA or RSA`}},
		{"renewal after expiry", set(KeyTLSEarlyRenewal, "9000"), []string{"tlsEarlyRenewalHours: 9000 must be at least 1 and less than tlsValidityHours (8760)"}},
		{"bad SAN", set(KeyTLSDNSNames, `["-bad-"]`), []string{`tlsDnsNames[0]: "-bad-" is not a DNS name`}},
		{"bad IP SAN", set(KeyTLSIPAddresses, `["1.2.3"]`), []string{`tlsIpAddresses[0]: "1.2.3" is not an IP address`}},
		{"list not JSON", set(KeyVHosts, "orders"), []string{`vhosts: "orders" is not a valid list`}},
		{"user unknown vhost", set(KeyUsers, `[{"name":"app","password":"app-password-1","permissions":[{"vhost":"nope"}]}]`), []string{`users[0].permissions[0].vhost: "nope" is not in vhosts`}},
		{"user weak password", set(KeyUsers, `[{"name":"app","password":"x"}]`), []string{"users[0].password: (1 characters) must be at least 12"}},
		{"user unknown tag", set(KeyUsers, `[{"name":"app","password":"app-password-1","tags":["admin"]}]`), []string{`users[0].tags[0]: "admin" is not a RabbitMQ user tag`}},
		{"users in plain text", func(v map[string]string, s map[string]bool) {
			v[KeyUsers] = `[{"name":"app","password":"app-password-1"}]`
			s[KeyUsers] = false
		}, []string{"users: <users> holds passwords, so it must be set with --secret"}},
		{"migrateFrom network", migrateFrom(`{"managementUrl":"http://old:15672","amqpUrl":"amqp://old:5672","user":"admin","password":"s3cret","vhosts":["/"],"network":"old net"}`),
			[]string{`migrateFrom.network: "old net" is not a Docker network name`}},
		{"migrateFrom not an object", migrateFrom(`["http://old:15672"]`), []string{"migrateFrom: <secret> is not a valid object"}},
		{"migrateFrom in plain text", func(v map[string]string, s map[string]bool) {
			v[KeyMigrateFrom] = goodMigrateFrom
			s[KeyMigrateFrom] = false
		}, []string{"migrateFrom: <migrateFrom> holds a password, so it must be set with --secret"}},
		{"migrateFrom to a mirrored stack", func(v map[string]string, s map[string]bool) {
			migrateFrom(goodMigrateFrom)(v, s)
			v[KeyRabbitMQImage] = "rabbitmq:3.10-local"
		}, []string{"migrateFrom: (set) moves queues to quorum queues, and this stack's haMode is mirrored"}},
		{"migrateFrom URLs", migrateFrom(`{"managementUrl":"ftp://old:15672","amqpUrl":"amqp://admin:s3cret@old:5672","user":"admin","password":"s3cret","vhosts":["/"]}`),
			[]string{`migrateFrom.managementUrl: "ftp://old:15672" must be a http or https URL with a host`, "migrateFrom.amqpUrl: (a URL with credentials) must not carry credentials"}},
		{"migrateFrom URL with a vhost", migrateFrom(`{"managementUrl":"http://old:15672","amqpUrl":"amqp://old:5672/orders","user":"admin","password":"s3cret","vhosts":["/"]}`),
			[]string{`migrateFrom.amqpUrl: "amqp://old:5672/orders" must have no path`}},
		{"migrateFrom without vhosts or password", migrateFrom(`{"managementUrl":"http://old:15672","amqpUrl":"amqp://old:5672","user":"admin"}`),
			[]string{"migrateFrom.password: (unset) is required", "migrateFrom.vhosts: [] must name the vhosts to move"}},
		{"migrateFrom keepClassic", migrateFrom(`{"managementUrl":"http://old:15672","amqpUrl":"amqp://old:5672","user":"admin","password":"s3cret","vhosts":["/","/"],"keepClassic":["orders/audit","audit"]}`),
			[]string{`migrateFrom.vhosts[1]: "/" is listed twice`, `migrateFrom.keepClassic[0]: "orders/audit" is in vhost "orders", which is not in migrateFrom.vhosts`, `migrateFrom.keepClassic[1]: "audit" must be "vhost/queue"`}},
		{"unknown platform", set(KeyPlatform, "kubernetes"), []string{`platform: "kubernetes" must be docker (one Docker host) or swarm`}},
		{"swarm nodes on docker", set(KeySwarmNodes, `["h1"]`), []string{"swarmNodes: (1 entries) is set, but platform is docker"}},
		{"publish mode on docker", set(KeyHAProxyPublish, "ingress"), []string{`haproxyPublishMode: "ingress" is a Swarm setting, but platform is docker`}},
		{"missing placements", swarm(set(KeySwarmNodes, `["h1","h2"]`)), []string{"swarmNodes: (2 entries) must name the Swarm node of each of the 3 RabbitMQ nodes"}},
		{"no placements", swarm(func(v map[string]string, _ map[string]bool) { delete(v, KeySwarmNodes) }), []string{"swarmNodes: (0 entries) must name"}},
		{"two nodes on one host", swarm(set(KeySwarmNodes, `["h1","h2","h1"]`)), []string{`swarmNodes[2]: "h1" is node 0's Swarm node too: losing that host would lose both`}},
		{"bad hostname", swarm(set(KeySwarmNodes, `["h1","h_2","h3"]`)), []string{`swarmNodes[1]: "h_2" is not a Swarm node's hostname`}},
		{"bad label", swarm(set(KeySwarmNodes, `["h1","zone=","h3"]`)), []string{`swarmNodes[1]: "zone=" is not label=value`}},
		{"bad publish mode", swarm(set(KeyHAProxyPublish, "mesh")), []string{`haproxyPublishMode: "mesh" must be host (each host's own ports) or ingress`}},
		{"mirrored", swarm(set(KeyRabbitMQImage, "rabbitmq:3.10-management")), []string{`platform: "swarm" runs quorum queues only, and haMode is mirrored`}},
		{"Mnesia line", swarm(set(KeyRabbitMQImage, "rabbitmq:4.0-management")), []string{`platform: "swarm" runs RabbitMQ 4.3 or newer (Khepri), and image rabbitmq:4.0-management is 4.0`}},
		{"static node IPs", swarm(set(KeyNodeIPs, `["10.9.0.10"]`)), []string{`nodeIPs: "[\"10.9.0.10\"]" cannot be set with platform swarm`}},
		{"static HAProxy IP", swarm(set(KeyHAProxyIP, "10.9.0.2")), []string{`haproxyIP: "10.9.0.2" cannot be set with platform swarm`}},
		{"every error at once", setAll(KeyNodes, "0", KeyHAMode, "raft", KeyAMQPPort, "0"), []string{"nodes: 0", `haMode: "raft"`, "amqpPort: 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := load(t, tc.edit)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is not a FieldError: %T", err)
			}
			for _, secret := range []string{goodCookie, goodPassword, "short;cookie", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals a secret: %v", err)
				}
			}
		})
	}
}

// TestClientCABundle: tlsClientCaCert takes CA certificates only, and its
// errors describe the value without quoting it.
func TestClientCABundle(t *testing.T) {
	t.Parallel()
	pki, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := pem.Decode([]byte(pki.ServerPEM))
	leafPEM := string(pem.EncodeToMemory(leaf))
	key := pki.ServerPEM[strings.Index(pki.ServerPEM, "-----BEGIN EC PRIVATE KEY"):]
	for _, ok := range []string{pki.CAPEM, pki.CAPEM + other.CAPEM, "\n" + pki.CAPEM + "\n"} {
		c, _, err := load(t, set(KeyTLSClientCACert, ok))
		if err != nil {
			t.Errorf("a CA bundle refused: %v", err)
		} else if c.TLS.ClientCACert != strings.TrimSpace(ok)+"\n" {
			t.Errorf("ClientCACert = %q", c.TLS.ClientCACert)
		}
	}
	for value, want := range map[string]string{
		"not pem":            "tlsClientCaCert: (PEM, 8 bytes) holds no PEM certificate",
		leafPEM:              `is not a CA certificate (basicConstraints CA:TRUE)`,
		pki.CAPEM + key:      `block 2 is a PEM "EC PRIVATE KEY": only CA CERTIFICATE blocks belong here (never a key)`,
		pki.CAPEM + "junk\n": "has text after its 1 certificate(s) that is not PEM",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n": "block 1 is not an X.509 certificate",
	} {
		_, _, err := load(t, set(KeyTLSClientCACert, value))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want %q", err, want)
			continue
		}
		for _, line := range strings.Split(value, "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
				t.Errorf("the error quotes the value's line %q: %v", line, err)
			}
		}
	}
}

// goodMigrateFrom is a valid migrateFrom.
const goodMigrateFrom = `{"managementUrl":"http://old-haproxy:15672","amqpUrl":"amqp://old-haproxy:5672","user":"admin","password":"old-s3cret","vhosts":["/","orders"],"keepClassic":["orders/audit","//jobs"]}`

// migrateFrom sets migrateFrom, as a secret.
func migrateFrom(value string) func(map[string]string, map[string]bool) {
	return func(v map[string]string, s map[string]bool) {
		v[KeyMigrateFrom] = value
		s[KeyMigrateFrom] = true
	}
}

// A valid migrateFrom loads, and its password never shows in an error.
func TestMigrateFrom(t *testing.T) {
	t.Parallel()
	c, _, err := load(t, migrateFrom(goodMigrateFrom))
	if err != nil {
		t.Fatal(err)
	}
	m := c.MigrateFrom
	if m == nil || m.User != "admin" || !slices.Equal(m.VHosts, []string{"/", "orders"}) || m.AMQPURLWithUser() != "amqp://admin:old-s3cret@old-haproxy:5672" {
		t.Errorf("migrateFrom = %+v (%s)", m, m.AMQPURLWithUser())
	}
	if c, _, _ := load(t, nil); c.MigrateFrom != nil {
		t.Errorf("no migrateFrom set, yet %+v", c.MigrateFrom)
	}
	_, _, err = load(t, migrateFrom(`{"managementUrl":"http://old:15672","amqpUrl":"amqp://admin:old-s3cret@old:5672","user":"admin","password":"old-s3cret","vhosts":["/"]}`))
	if err == nil || strings.Contains(err.Error(), "old-s3cret") {
		t.Errorf("an amqpUrl with the password: %v", err)
	}
}

func set(key, value string) func(map[string]string, map[string]bool) {
	return setAll(key, value)
}

func setAll(kv ...string) func(map[string]string, map[string]bool) {
	return func(v map[string]string, _ map[string]bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			v[kv[i]] = kv[i+1]
		}
	}
}

func TestImageVersion(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]string{
		"rabbitmq:3.13-management":                        "3.13",
		"rabbitmq:4.0.5":                                  "4.0",
		"localhost:5000/rabbitmq":                         "unknown",
		"rabbitmq@sha256:" + strings.Repeat("a", 64):      "unknown",
		"rabbitmq:3.12@sha256:" + strings.Repeat("b", 64): "3.12",
		"rabbitmq:management":                             "unknown",
	} {
		if got := ImageVersion(ref).String(); got != want {
			t.Errorf("ImageVersion(%q) = %s, want %s", ref, got, want)
		}
	}
}

// TestPulumiYAMLMatchesKeys keeps the Pulumi.yaml schema and Keys in step:
// every key documented, typed, described, and defaulted identically.
func TestPulumiYAMLMatchesKeys(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../Pulumi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var project struct {
		Config map[string]struct {
			Type        string `yaml:"type"`
			Description string `yaml:"description"`
			Default     any    `yaml:"default"`
			Secret      bool   `yaml:"secret"`
		} `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &project); err != nil {
		t.Fatal(err)
	}
	if len(project.Config) != len(Keys) {
		t.Errorf("Pulumi.yaml has %d keys, Keys has %d", len(project.Config), len(Keys))
	}
	for _, k := range Keys {
		p, ok := project.Config[k.Name]
		if !ok {
			t.Errorf("Pulumi.yaml lacks %s", k.Name)
			continue
		}
		if p.Type != k.Type || p.Description != k.Description || p.Secret {
			t.Errorf("%s: Pulumi.yaml has %q/%q/secret %v, want Keys' %q/%q and no secret flag (see Key.Secret)", k.Name, p.Type, p.Description, p.Secret, k.Type, k.Description)
		}
		def, _ := yaml.Marshal(p.Default)
		if got, want := strings.TrimSpace(string(def)), yamlOf(t, k.Default, k.Type); got != want {
			t.Errorf("%s: Pulumi.yaml default %s, Keys default %s", k.Name, got, want)
		}
	}
}

func yamlOf(t *testing.T, s, typ string) string {
	t.Helper()
	if typ == "object" && s == "" {
		return "null" // an object key without a default: absent
	}
	var v any = s
	if typ != "string" {
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(out))
}

// TestREADMEDocumentsEveryKey keeps the README's config reference complete.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys {
		if !strings.Contains(string(raw), "| `"+k.Name+"` | "+k.Type+" |") {
			t.Errorf("README.md does not document %s (%s)", k.Name, k.Type)
		}
	}
}

// TestAddressRulesAreDockers: an address is refused only where Docker
// refuses it; a static address in the upper half moves Docker's dynamic
// range to the largest free block instead.
func TestAddressRulesAreDockers(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		values  map[string]string
		dynamic string
	}{
		"defaults":             {nil, "10.9.128.0/17"},
		"gateway at the top":   {map[string]string{KeySubnet: "172.31.250.0/24", KeyGateway: "172.31.250.254"}, "172.31.250.128/25"},
		"node in upper half":   {map[string]string{KeyNodeIPs: `["10.9.128.1"]`}, "10.9.192.0/18"},
		"haproxy in top block": {map[string]string{KeySubnet: "10.1.2.0/24", KeyHAProxyIP: "10.1.2.250"}, "10.1.2.128/26"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, _, err := load(t, func(v map[string]string, _ map[string]bool) {
				for k, x := range c.values {
					v[k] = x
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.DynamicRange().String(); got != c.dynamic {
				t.Errorf("dynamic range = %s, want %s", got, c.dynamic)
			}
			for _, a := range append(cfg.NodeIPs, cfg.HAProxyIP) {
				if cfg.DynamicRange().Contains(a) {
					t.Errorf("static %s is in the dynamic range %s", a, cfg.DynamicRange())
				}
			}
		})
	}
}

// TestNullNodeTypesAreDisc: `pulumi config set --path 'nodeTypes[2]' ram`
// on an empty list writes nulls at 0 and 1; they read as disc.
func TestNullNodeTypesAreDisc(t *testing.T) {
	t.Parallel()
	cfg, _, err := load(t, func(v map[string]string, _ map[string]bool) {
		v[KeyNodeTypes] = `[null,null,"ram"]`
		v[KeyRabbitMQImage] = "rabbitmq:3.10-local"
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.NodeTypes, ","); got != "disc,disc,ram" {
		t.Errorf("nodeTypes = %s, want disc,disc,ram", got)
	}
}

// TestOneReportOfEveryProblem: a missing secret is reported with the other
// problems, one line each, and the error counts them for Pulumi's header.
func TestOneReportOfEveryProblem(t *testing.T) {
	t.Parallel()
	_, _, err := load(t, func(v map[string]string, s map[string]bool) {
		delete(v, KeyErlangCookie)
		v[KeyNodes] = "4"
		v[KeyGateway] = "300.1.1.1"
	})
	var m *multierror.Error
	if !errors.As(err, &m) || len(m.Errors) != 3 {
		t.Fatalf("err = %v, want a multierror of 3 problems", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"the stack config has 3 problem(s); nothing was created:",
		"\n  erlangCookie: (unset) is required; set it with pulumi config set --secret erlangCookie",
		"\n  nodes: 4 is not allowed",
		"\n  gateway: \"300.1.1.1\" is not an IPv4 address",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
}

// TestRAMNodesRefusedOnKhepri: 4.3 (Khepri only) cannot run RAM nodes, so
// validation refuses them before RabbitMQ refuses its own config.
func TestRAMNodesRefusedOnKhepri(t *testing.T) {
	t.Parallel()
	for image, want := range map[string]string{
		"rabbitmq:4.3-local":      `nodeTypes[2]: "ram" is not supported by RabbitMQ 4.3 (image rabbitmq:4.3-local): Khepri`,
		"rabbitmq:4.3-management": "has no RAM nodes",
		"rabbitmq:latest":         "has no RAM nodes",
	} {
		_, _, err := load(t, func(v map[string]string, _ map[string]bool) {
			v[KeyNodeTypes] = `["disc","disc","ram"]`
			v[KeyRabbitMQImage] = image
		})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", image, err, want)
		}
	}
}

// TestQuorumGroupSizeDefault: every node holds a member, up to RabbitMQ's
// advised 7; mirrored stacks have none.
func TestQuorumGroupSizeDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nodes, image string
		want         int
	}{
		{"1", "", 1}, {"5", "", 5}, {"7", "", 7}, {"9", "", 7}, {"3", "rabbitmq:3.10-local", 0},
	} {
		c, _, err := load(t, func(v map[string]string, _ map[string]bool) {
			v[KeyNodes] = tc.nodes
			if tc.image != "" {
				v[KeyRabbitMQImage] = tc.image
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.QuorumGroupSize != tc.want {
			t.Errorf("nodes %s, image %q: quorumGroupSize %d, want %d", tc.nodes, tc.image, c.QuorumGroupSize, tc.want)
		}
	}
	c, _, err := load(t, setAll(KeyNodes, "5", KeyQuorumGroupSize, "3"))
	if err != nil || c.QuorumGroupSize != 3 {
		t.Errorf("set to 3 of 5 nodes: %v, %v", c, err)
	}
}

// swarm is a valid Swarm config of three nodes on three hosts, edited.
func swarm(edit func(v map[string]string, s map[string]bool)) func(v map[string]string, s map[string]bool) {
	return func(v map[string]string, s map[string]bool) {
		v[KeyPlatform] = PlatformSwarm
		v[KeySwarmNodes] = `["h1","h2","zone=c"]`
		if edit != nil {
			edit(v, s)
		}
	}
}

func TestSwarmValidation(t *testing.T) {
	t.Parallel()
	cfg, _, err := load(t, swarm(nil))
	if err != nil {
		t.Fatalf("a valid Swarm config: %v", err)
	}
	if !cfg.IsSwarm() || !slices.Equal(cfg.Swarm.Nodes, []string{"h1", "h2", "zone=c"}) || cfg.Swarm.PublishMode != PublishHost {
		t.Errorf("loaded %+v (platform %q)", cfg.Swarm, cfg.Platform)
	}
	// Colocation is the user's call, and then allowed.
	if _, _, err := load(t, swarm(func(v map[string]string, s map[string]bool) {
		v[KeySwarmNodes] = `["h1","h2","h1"]`
		v[KeySwarmColocate] = "true"
	})); err != nil {
		t.Errorf("colocation allowed: %v", err)
	}
}

func TestSwarmConstraint(t *testing.T) {
	t.Parallel()
	for entry, want := range map[string]string{"h1": "node.hostname==h1", "zone=a": "node.labels.zone==a", "host.example.org": "node.hostname==host.example.org"} {
		if got := SwarmConstraint(entry); got != want {
			t.Errorf("SwarmConstraint(%q) = %q, want %q", entry, got, want)
		}
	}
}
