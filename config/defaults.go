package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Offsets of the derived addresses inside the subnet.
const (
	gatewayOffset = 1  // the Docker convention: the bridge takes the first address
	haproxyOffset = 2  // HAProxy sits just after the gateway
	nodeOffset    = 10 // nodes start at .10, leaving room for future fixed services
)

// notName matches what Docker object names may not contain.
var notName = regexp.MustCompile(`[^a-z0-9_.-]+`)

// applyDefaults fills in every value derived from others, in one place, and
// returns the warnings a user should see.
func applyDefaults(c *Config, project, stack string) []string {
	if c.Prefix == "" {
		c.Prefix = strings.Trim(notName.ReplaceAllString(strings.ToLower(project+"-"+stack), "-"), "-._")
	}
	if c.Nodes >= 1 && c.Nodes <= MaxNodes {
		for len(c.NodeTypes) < c.Nodes {
			c.NodeTypes = append(c.NodeTypes, NodeDisc)
		}
	}
	if c.Subnet.IsValid() {
		c.Subnet = c.Subnet.Masked()
		if !c.Gateway.IsValid() {
			c.Gateway = nth(c.Subnet, gatewayOffset)
		}
		if !c.HAProxyIP.IsValid() {
			c.HAProxyIP = nth(c.Subnet, haproxyOffset)
		}
		for i := len(c.NodeIPs); i < c.Nodes && i < MaxNodes; i++ {
			c.NodeIPs = append(c.NodeIPs, nth(c.Subnet, nodeOffset+i))
		}
	}
	c.RabbitMQVersion = ImageVersion(c.RabbitMQImage)
	if c.HAMode == "" {
		c.HAMode = HAModeMirrored
		if !c.RabbitMQVersion.Known() || c.RabbitMQVersion.Major >= 4 {
			c.HAMode = HAModeQuorum
		}
	}
	var warnings []string
	for i, t := range c.NodeTypes {
		if t == NodeRAM {
			warnings = append(warnings, fmt.Sprintf("%s[%d]: ram nodes are deprecated upstream and keep no data on disk; "+
				"see https://www.rabbitmq.com/docs/clustering#cluster-node-types", KeyNodeTypes, i))
		}
	}
	return warnings
}

// nth returns the n-th address of a subnet.
func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// DynamicRange is the upper half of the subnet: Docker gives addresses from
// it to containers without a static IP (the forget job, anything a user
// attaches), so they never take an address a node or HAProxy needs.
func (c *Config) DynamicRange() netip.Prefix {
	half := netip.PrefixFrom(c.Subnet.Addr(), c.Subnet.Bits()+1)
	return netip.PrefixFrom(nth(half, 1<<(32-half.Bits())), half.Bits())
}
