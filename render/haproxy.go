package render

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"path"
	"text/template"
)

//go:embed haproxy.cfg.tmpl
var haproxyText string

var haproxyTemplate = template.Must(template.New("haproxy.cfg").Parse(haproxyText))

//go:embed haproxy.sh.tmpl
var haproxyScriptText string

var haproxyScriptTemplate = template.Must(template.New("haproxy.sh").Parse(haproxyScriptText))

// ConfigWaitSeconds bounds how long HAProxy waits at start for the config
// job's first files. The job runs before HAProxy is created, so this only
// covers a volume that was emptied by hand.
const ConfigWaitSeconds = 30

// HAProxyData is what haproxy.cfg is rendered from.
type HAProxyData struct {
	// Nodes are the backends, in node order.
	Nodes []Backend
	// StatsUser and StatsPassword guard the stats page. The password makes
	// the rendered file a secret.
	StatsUser, StatsPassword string
	// ClientCADigest is the SHA-256 of the client CA bundle, where AMQPS
	// requires client certificates (mutual TLS); empty, it does not. The
	// digest is in haproxy.cfg, so a new bundle changes the file HAProxy
	// watches, and it reloads.
	ClientCADigest string
	// Swarm: the nodes have no static IPs, and sit on other hosts. HAProxy
	// finds them by name through Docker's DNS (resolvers), and reaches them
	// over TLS (AMQPS, management over TLS), verifying their certificate
	// against the stack's CA and their hostname.
	Swarm bool
}

// Digest is the digest ClientCADigest holds for a bundle.
func Digest(bundle string) string {
	sum := sha256.Sum256([]byte(bundle))
	return hex.EncodeToString(sum[:])
}

// Backend is one RabbitMQ node as HAProxy sees it.
type Backend struct {
	Name string // the node's container name
	IP   string // the node's static IP: no DNS lookup stands between a check and a node (empty on Swarm)
}

// HAProxyConfig renders haproxy.cfg.
func HAProxyConfig(d HAProxyData) (string, error) {
	if len(d.Nodes) == 0 {
		return "", fmt.Errorf("render haproxy.cfg: no nodes")
	}
	return execute(haproxyTemplate, struct {
		HAProxyData
		Header                                                            string
		AMQPPort, AMQPSPort, ManagementPort, ManagementTLSPort, StatsPort int
		CertPath, ClientCAPath, NodeCAPath                                string
	}{
		HAProxyData: d, Header: Header,
		AMQPPort: AMQPPort, AMQPSPort: AMQPSPort, ManagementPort: ManagementPort, ManagementTLSPort: ManagementTLSPort, StatsPort: StatsPort,
		CertPath: HAProxyCertPath, ClientCAPath: HAProxyClientCAPath, NodeCAPath: HAProxyNodeCAPath,
	})
}

// HAProxyScript renders haproxy.sh. It depends on nothing but the paths, so
// a renewal or a scale change never changes it. clientCA is for the config
// job's copy only: its install step also installs the client CA bundle.
// HAProxy's own copy never has it (a new haproxy.cfg, which names the
// bundle's digest, makes it reload), so turning mutual TLS on or off never
// re-creates HAProxy.
// nodeCA is for Swarm's copy: it installs the CA the nodes' certificates
// chain to as well.
func HAProxyScript(clientCA, nodeCA bool) (string, error) {
	return execute(haproxyScriptTemplate, struct {
		Header, Dir, ConfigFile, CertFile, ClientCAFile, NodeCAFile string
		WaitTenths                                                  int
		ClientCA, NodeCA                                            bool
	}{
		Header: Header, Dir: HAProxyConfDir,
		ConfigFile: path.Base(HAProxyConfigPath), CertFile: path.Base(HAProxyCertPath),
		ClientCAFile: path.Base(HAProxyClientCAPath), NodeCAFile: path.Base(HAProxyNodeCAPath),
		WaitTenths: ConfigWaitSeconds * 10, ClientCA: clientCA, NodeCA: nodeCA,
	})
}

// HAProxyCommand is the HAProxy container's command.
func HAProxyCommand() []string { return []string{HAProxyScriptPath, "run"} }

// ServeCommand is HAProxy's command on Swarm, where no config job runs: it
// installs the staged files, which Swarm mounts read-only and root's, as
// the config job would, then runs HAProxy as the haproxy user.
func ServeCommand() []string { return []string{HAProxyScriptPath, "serve", HAProxyStageDir} }

// InstallCommand is the config job's command.
func InstallCommand() []string { return []string{HAProxyScriptPath, "install", HAProxyStageDir} }

// Staged returns where the config job finds a live file, by its live path.
func Staged(livePath string) string { return HAProxyStageDir + "/" + path.Base(livePath) }
