package render

import (
	_ "embed"
	"fmt"
	"text/template"
)

//go:embed haproxy.cfg.tmpl
var haproxyText string

var haproxyTemplate = template.Must(template.New("haproxy.cfg").Parse(haproxyText))

// HAProxyData is what haproxy.cfg is rendered from.
type HAProxyData struct {
	// Nodes are the backends, in node order.
	Nodes []Backend
	// StatsUser and StatsPassword guard the stats page. The password makes
	// the rendered file a secret.
	StatsUser, StatsPassword string
}

// Backend is one RabbitMQ node as HAProxy sees it.
type Backend struct {
	Name string // the node's container name
	IP   string // the node's static IP: no DNS lookup stands between a check and a node
}

// HAProxyConfig renders haproxy.cfg.
func HAProxyConfig(d HAProxyData) (string, error) {
	if len(d.Nodes) == 0 {
		return "", fmt.Errorf("render haproxy.cfg: no nodes")
	}
	return execute(haproxyTemplate, struct {
		HAProxyData
		Header                                         string
		AMQPPort, AMQPSPort, ManagementPort, StatsPort int
		CertPath                                       string
	}{d, Header, AMQPPort, AMQPSPort, ManagementPort, StatsPort, HAProxyCertPath})
}
