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
	// An entry left out, or null (what `config set --path 'nodeTypes[2]'`
	// writes before index 2), is disc, as a missing entry is.
	for i, t := range c.NodeTypes {
		if t == "" {
			c.NodeTypes[i] = NodeDisc
		}
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
	if c.DiskFreeLimitMB == 0 {
		c.DiskFreeLimitMB = c.MemoryLimitMB
	}
	if c.HAMode == "" {
		c.HAMode = HAModeQuorum
		if c.RabbitMQVersion.Known() && !c.RabbitMQVersion.AtLeast(QuorumDefaultSince) {
			c.HAMode = HAModeMirrored
		}
	}
	if c.HAMode == HAModeQuorum && c.QuorumGroupSize == 0 {
		c.QuorumGroupSize = min(c.Nodes, maxQuorumGroupSize)
	}
	var warnings []string
	for i, t := range c.NodeTypes {
		if t == NodeRAM && c.RAMNodesSupported() {
			warnings = append(warnings, fmt.Sprintf("%s[%d]: ram nodes are deprecated upstream and keep no data on disk; "+
				"see https://www.rabbitmq.com/docs/clustering#cluster-node-types", KeyNodeTypes, i))
		}
	}
	return warnings
}

// maxQuorumGroupSize is the default quorum queue size's bound: RabbitMQ does
// not recommend quorum queues on more than 7 nodes
// (https://www.rabbitmq.com/docs/quorum-queues#quorum-requirements).
const maxQuorumGroupSize = 7

// RAMNodesSupported reports whether the image's RabbitMQ can run RAM nodes:
// Mnesia lines only. 4.3 has Khepri as its only metadata store, measured on
// 4.3.6: `join_cluster [--disc] <member>`, and rabbitmq.conf refuses
// cluster_formation.node_type = ram. An unversioned tag is taken as current.
func (c *Config) RAMNodesSupported() bool { return !c.Khepri() }

// SeedStartsFirst reports whether a fresh non-seed node must start its
// Erlang VM after the seed's, so peer discovery joins the seed rather than
// the node itself (DiscoveryByUptimeSince; an unversioned tag is current).
func (c *Config) SeedStartsFirst() bool {
	return !c.RabbitMQVersion.Known() || c.RabbitMQVersion.AtLeast(DiscoveryByUptimeSince)
}

// Khepri reports whether the image's RabbitMQ keeps its metadata in Khepri
// only (4.3 and later; an unversioned tag is taken as current): no Mnesia,
// so no RAM nodes, no partition-handling strategy, no cluster_nodes.config.
func (c *Config) Khepri() bool {
	return !c.RabbitMQVersion.Known() || c.RabbitMQVersion.AtLeast(KhepriOnlySince)
}

// nth returns the n-th address of a subnet.
func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// DynamicRange is the range Docker gives addresses from to containers
// without a static IP (the one-shot jobs, anything a user attaches), so
// they never take an address a node or HAProxy needs: the upper half of the
// subnet, or, when a static address is set there, the largest aligned block
// free of static addresses, highest first. The gateway may lie in it:
// Docker reserves the gateway. A /24 holds 32 blocks of minDynamicBits and
// the stack at most 10 static addresses, so one is always free.
func (c *Config) DynamicRange() netip.Prefix {
	if !c.Subnet.IsValid() {
		return netip.Prefix{}
	}
	static := append([]netip.Addr{c.HAProxyIP}, c.NodeIPs...)
	free := func(p netip.Prefix) bool {
		for _, a := range static {
			if a.IsValid() && p.Contains(a) {
				return false
			}
		}
		return true
	}
	base := c.Subnet.Masked().Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for bits := c.Subnet.Bits() + 1; bits <= minDynamicBits; bits++ {
		size := uint32(1) << (32 - bits)
		for k := int64(1)<<(bits-c.Subnet.Bits()) - 1; k >= 0; k-- {
			n := start + uint32(k)*size
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), bits)
			if free(p) {
				return p
			}
		}
	}
	return netip.Prefix{}
}

// minDynamicBits makes the dynamic range at least 8 addresses (a /29):
// room for the stack's one-shot jobs and a few attached containers.
const minDynamicBits = 29
