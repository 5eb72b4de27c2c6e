// Package components turns the stack's plan (package plan) into Pulumi
// resources, one component per concern:
//
//	Network       the user-defined bridge network
//	PKI           the CA and HAProxy's server certificate (pulumi-tls)
//	Nodes         the RabbitMQ image, volumes and node containers
//	LoadBalancer  the HAProxy image and container
//	Broker        vhosts, users, permissions and the HA policy (pulumi-rabbitmq)
//	Cluster       all of the above, wired together, with the stack outputs
//
// Program is the Pulumi program: main.go runs it, and the end-to-end tests run
// the same function inline through the Automation API.
package components

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// typePrefix is the package part of every component's type token.
const typePrefix = "rabbitmq-ha:index:"

// labelArgs turns labels into a provider's label inputs, sorted by key so
// the inputs are stable.
func labelArgs[T any](m map[string]string, arg func(k, v pulumi.String) T) []T {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		out = append(out, arg(pulumi.String(k), pulumi.String(m[k])))
	}
	return out
}

func containerLabels(m map[string]string) docker.ContainerLabelArray {
	return labelArgs(m, func(k, v pulumi.String) docker.ContainerLabelInput {
		return docker.ContainerLabelArgs{Label: k, Value: v}
	})
}

func volumeLabels(m map[string]string) docker.VolumeLabelArray {
	return labelArgs(m, func(k, v pulumi.String) docker.VolumeLabelInput {
		return docker.VolumeLabelArgs{Label: k, Value: v}
	})
}

func networkLabels(m map[string]string) docker.NetworkLabelArray {
	return labelArgs(m, func(k, v pulumi.String) docker.NetworkLabelInput {
		return docker.NetworkLabelArgs{Label: k, Value: v}
	})
}

// secret wraps a plain value read from secret config.
func secret(s string) pulumi.StringOutput {
	return pulumi.ToSecret(pulumi.String(s)).(pulumi.StringOutput)
}

func wrap(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
