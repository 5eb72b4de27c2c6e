// Command rabbitmq-ha is a Pulumi program that deploys a highly available
// RabbitMQ cluster behind HAProxy on a Docker host. See README.md.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/components"
)

func main() {
	pulumi.Run(components.Program)
}
