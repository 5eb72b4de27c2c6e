package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/testpki"
)

func mustContain(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("missing %q in:\n%s", w, text)
		}
	}
}

func mustNotContain(t *testing.T, text string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(text, w) {
			t.Errorf("unexpected %q in:\n%s", w, text)
		}
	}
}

var threeNodes = HAProxyData{
	Nodes: []Backend{
		{"s-node-0", "10.9.0.10"}, {"s-node-1", "10.9.0.11"}, {"s-node-2", "10.9.0.12"},
	},
	StatsUser: "admin", StatsPassword: "stats-Passw0rd!",
}

func TestHAProxyConfig(t *testing.T) {
	t.Parallel()
	cfg, err := HAProxyConfig(threeNodes)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg, Header+"\n") {
		t.Errorf("first line is not the header")
	}
	mustContain(t, cfg,
		"bind :5672\n", "bind :5671 ssl crt "+HAProxyCertPath+" ssl-min-ver TLSv1.2",
		"server s-node-0 10.9.0.10:5672 check", "server s-node-2 10.9.0.12:5672 check",
		"server s-node-1 10.9.0.11:15672 check",
		"on-marked-down shutdown-sessions", "rise 2 fall 2", "inter 1s", "option redispatch 1\n", "hard-stop-after 1h\n",
		"option clitcpka", "option srvtcpka", "timeout client 3h", "timeout server 3h",
		"bind :1080", "stats auth admin:stats-Passw0rd!",
	)
	mustNotContain(t, cfg, "verify none", "ca-file")
	mutual := threeNodes
	mutual.ClientCADigest = Digest("CA PEM")
	m, err := HAProxyConfig(mutual)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, m, "bind :5671 ssl crt "+HAProxyCertPath+" ssl-min-ver TLSv1.2 ca-file "+HAProxyClientCAPath+" verify required\n",
		"(sha256 "+Digest("CA PEM")+")")
	// The management backend's sessions outlive a node's mark-down: an API
	// request redispatched away from a dead node must not be shut with it.
	mgmt := cfg[strings.Index(cfg, "backend rabbitmq_management"):strings.Index(cfg, "listen stats")]
	amqp := cfg[strings.Index(cfg, "backend rabbitmq_amqp"):strings.Index(cfg, "frontend management")]
	mustContain(t, amqp, "default-server on-marked-down shutdown-sessions\n")
	mustNotContain(t, mgmt, "shutdown-sessions")
	mustNotContain(t, cfg[:strings.Index(cfg, "frontend amqp")], "shutdown-sessions")
	again, _ := HAProxyConfig(threeNodes)
	if again != cfg {
		t.Error("rendering is not deterministic")
	}
	if _, err := HAProxyConfig(HAProxyData{}); err == nil {
		t.Error("no error for a config without nodes")
	}
}

// TestHAProxyConfigIsValid checks the rendered file with the real haproxy.
func TestHAProxyConfigIsValid(t *testing.T) {
	t.Parallel()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed (Debian package haproxy; .ci/run installs it)")
	}
	dir := t.TempDir()
	pki, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(dir, "server.pem")
	caPath := filepath.Join(dir, "client-ca.pem")
	for path, content := range map[string]string{pemPath: pki.ServerPEM, caPath: pki.CAPEM} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mutual := threeNodes
	mutual.ClientCADigest = Digest(pki.CAPEM)
	swarm := HAProxyData{StatsUser: "admin", StatsPassword: "pw-with-no-blanks", Swarm: true,
		Nodes: []Backend{{Name: "s-node-0"}, {Name: "s-node-1"}, {Name: "s-node-2"}}}
	for name, data := range map[string]HAProxyData{"haproxy.cfg": threeNodes, "haproxy.cfg (mutual TLS)": mutual, "haproxy.cfg (Swarm)": swarm} {
		cfg, err := HAProxyConfig(data)
		if err != nil {
			t.Fatal(err)
		}
		// The file paths are constants of the image; point them at the test's files.
		cfg = strings.NewReplacer(HAProxyCertPath, pemPath, HAProxyClientCAPath, caPath, HAProxyNodeCAPath, caPath).Replace(cfg)
		cfgPath := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(haproxy, "-c", "-f", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("haproxy -c, %s: %v\n%s", name, err, out)
		}
		mustNotContain(t, string(out), "[WARNING]", "[ALERT]")
	}
}

func TestRabbitMQConf(t *testing.T) {
	t.Parallel()
	seed, err := RabbitMQConf(RabbitMQData{Node: "rabbit@s-node-0", NodeType: "disc", Mnesia: true, MemoryLimitBytes: 512 << 20, DiskFreeLimitMB: 512, NetTicktime: 15})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, seed, Header, "listeners.tcp.default = 5672", "cluster_partition_handling = pause_minority",
		"total_memory_available_override_value = 429496730", "loopback_users.guest = true", "net_ticktime = 15", "disk_free_limit.absolute = 512MB",
		"vm_memory_high_watermark.relative = 0.6", "raft.wal_max_size_bytes = 134217728")
	mustNotContain(t, seed, "cluster_formation", "default_queue_type")

	other, err := RabbitMQConf(RabbitMQData{Node: "rabbit@s-node-2", Seed: "rabbit@s-node-0", NodeType: "ram", Quorum: true, MemoryLimitBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, other, "default_queue_type = quorum",
		"cluster_formation.peer_discovery_backend = classic_config",
		"cluster_formation.classic_config.nodes.1 = rabbit@s-node-0",
		"cluster_formation.node_type = ram", "cluster_formation.discovery_retry_limit = 120")
	// Khepri (4.3): no partition-handling strategy to set.
	mustNotContain(t, other, "cluster_partition_handling")
}

// The memory RabbitMQ is told it has keeps the cluster operator's headroom
// for the Erlang VM: a fifth of the limit, at most 2 GiB.
func TestMemoryAvailableBytes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ limit, available, watermark int64 }{
		{512 << 20, 429496730, 257698038},
		{1 << 30, 858993460, 515396076},
		{10 << 30, 8 << 30, 5153960755},
		{16 << 30, 14 << 30, 9019431321},
	} {
		if got := MemoryAvailableBytes(c.limit); got != c.available {
			t.Errorf("MemoryAvailableBytes(%d) = %d, want %d", c.limit, got, c.available)
		}
		if got := MemoryWatermarkBytes(c.limit); got != c.watermark {
			t.Errorf("MemoryWatermarkBytes(%d) = %d, want %d", c.limit, got, c.watermark)
		}
	}
}

func TestSecretsConf(t *testing.T) {
	t.Parallel()
	s, err := SecretsConf(SecretsData{AdminUser: "ops", AdminPassword: "p4ssw0rd-long"})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, s, "default_user = ops\n", "default_pass = p4ssw0rd-long\n", "default_user_tags.administrator = true")
}

var clusterData = ClusterData{Seed: "rabbit@s-node-0", PeerPrefix: "s-node-", MaxNodes: 9}

func TestClusterScript(t *testing.T) {
	t.Parallel()
	s, err := ClusterScript(clusterData)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, s, "#!/bin/bash\n"+Header, "readonly SEED='rabbit@s-node-0'", "readonly PEER_PREFIX='s-node-'",
		"join_cluster", "forget_cluster_node", "trap 'on_signal SIGTERM' TERM", "setpriv --reuid=rabbitmq",
		"install -o \"$owner\" -g \"$owner\" -m 0400")
	if _, err := ClusterScript(ClusterData{}); err == nil {
		t.Error("no error for empty data")
	}
	// Every line marks a stopping node; only Mnesia lines watch for partitions.
	mustContain(t, s, "\tmark_stopping\n", `[ -z "$(running_peers)" ]`)
	mustNotContain(t, s, "partition_watch")
	watched := clusterData
	watched.PartitionWatch = true
	w, err := ClusterScript(watched)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, w, "\tpartition_watch &\n\twatch=$!\n", "sleep 5 &", "if ((strikes >= 3)); then", "ctl -q stop_app && ctl -q start_app")
	if got := NodeCommand("ram"); strings.Join(got, " ") != ScriptPath+" node ram" {
		t.Errorf("NodeCommand = %v", got)
	}
}

// TestScriptsShellcheck runs the real shellcheck on the rendered scripts.
func TestScriptsShellcheck(t *testing.T) {
	t.Parallel()
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed (Debian package shellcheck; .ci/run installs it)")
	}
	cluster, err := ClusterScript(clusterData)
	if err != nil {
		t.Fatal(err)
	}
	watched := clusterData
	watched.PartitionWatch = true
	watching, err := ClusterScript(watched)
	if err != nil {
		t.Fatal(err)
	}
	haproxy, err := HAProxyScript(false, false)
	if err != nil {
		t.Fatal(err)
	}
	job, err := HAProxyScript(true, false)
	if err != nil {
		t.Fatal(err)
	}
	swarmHAProxy, err := HAProxyScript(true, true)
	if err != nil {
		t.Fatal(err)
	}
	tlsDist := clusterData
	tlsDist.DistTLS = true
	tlsCluster, err := ClusterScript(tlsDist)
	if err != nil {
		t.Fatal(err)
	}
	migrate, err := MigrateScript()
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"cluster.sh": cluster, "cluster.sh (partition watch)": watching, "haproxy.sh": haproxy, "haproxy.sh (client CA)": job, "migrate.sh": migrate,
		"haproxy.sh (Swarm)": swarmHAProxy, "cluster.sh (TLS distribution)": tlsCluster} {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(s), 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(shellcheck, "--severity=style", path).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", name, err, out)
		}
	}
}

func TestHAProxyScript(t *testing.T) {
	t.Parallel()
	s, err := HAProxyScript(false, false)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, s, "#!/bin/bash\n"+Header, "readonly DIR='"+HAProxyConfDir+"'", `readonly CFG="$DIR/haproxy.cfg"`,
		`readonly CERT="$DIR/server.pem"`, "readonly WAIT_TENTHS=300", `haproxy -W -db -f "$CFG"`, "kill -USR2",
		"install -o haproxy -g haproxy -m 0400", "for f in server.pem haproxy.cfg; do")
	mustNotContain(t, s, "client-ca.pem")
	job, err := HAProxyScript(true, false)
	if err != nil {
		t.Fatal(err)
	}
	// The client CA first: haproxy.cfg, installed last, names it.
	mustContain(t, job, "for f in client-ca.pem server.pem haproxy.cfg; do")
	if got := strings.Join(InstallCommand(), " "); got != HAProxyScriptPath+" install "+HAProxyStageDir {
		t.Errorf("InstallCommand = %s", got)
	}
	if got := Staged(HAProxyCertPath); got != HAProxyStageDir+"/server.pem" {
		t.Errorf("Staged = %s", got)
	}
}

// TestSwarmFiles: on Swarm, the nodes listen for AMQPS and management over
// TLS with the node certificate, the distribution's TLS options verify
// both sides, and HAProxy reaches the nodes by name over verified TLS.
func TestSwarmFiles(t *testing.T) {
	t.Parallel()
	conf, err := RabbitMQConf(RabbitMQData{Node: "rabbit@s-node-1", Seed: "rabbit@s-node-0", NodeType: "disc", Quorum: true,
		MemoryLimitBytes: 512 << 20, DiskFreeLimitMB: 512, NetTicktime: 15, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, conf, "listeners.ssl.default = 5671", "management.ssl.port = 15671", "ssl_options.certfile = "+NodeCertPath,
		"ssl_options.keyfile = "+NodeKeyPath, "ssl_options.cacertfile = "+NodeCAPath)
	plain, err := RabbitMQConf(RabbitMQData{Node: "rabbit@s-node-1", NodeType: "disc", MemoryLimitBytes: 512 << 20, DiskFreeLimitMB: 512, NetTicktime: 15})
	if err != nil {
		t.Fatal(err)
	}
	mustNotContain(t, plain, "listeners.ssl", "ssl_options")
	dist := InterNodeTLSConfig()
	mustContain(t, dist, "{server, [", "{client, [", "{fail_if_no_peer_cert, true}", "{verify, verify_peer}", `{certfile, "`+NodeCertPath+`"}`)
	cfg, err := HAProxyConfig(HAProxyData{StatsUser: "a", StatsPassword: "p", Swarm: true, Nodes: []Backend{{Name: "s-node-0"}}})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, cfg, "resolvers docker", "nameserver dns 127.0.0.11:53",
		"server s-node-0 s-node-0:5671 check resolvers docker init-addr none ssl verify required ca-file "+HAProxyNodeCAPath+" verifyhost s-node-0",
		"server s-node-0 s-node-0:15671 check resolvers docker init-addr none ssl verify required")
	script, err := ClusterScript(ClusterData{Seed: "rabbit@s-node-0", PeerPrefix: "s-node-", MaxNodes: 9, DistTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, script, `rabbitmqctl -q -n "$node" eval "$2"`, "connect_members &", "own_secret rabbitmq")
	mustNotContain(t, script, "| erl_call")
	// One host's files are untouched by any of it: a change there would
	// replace every existing stack's containers.
	oneHost, err := ClusterScript(ClusterData{Seed: "rabbit@s-node-0", PeerPrefix: "s-node-", MaxNodes: 9})
	if err != nil {
		t.Fatal(err)
	}
	mustNotContain(t, oneHost, "own_secret", "connect_members", "rabbitmqctl -q -n \"$node\" eval")
	haproxyScript, err := HAProxyScript(true, false)
	if err != nil {
		t.Fatal(err)
	}
	mustNotContain(t, haproxyScript, "serve)", "serve STAGE")
}
