//go:build tools

// Package pulumicli pins the Pulumi CLI that `make pulumi` builds into bin/.
// The CLI comes from the Go module proxy, so no global install is needed and
// every developer and CI run uses the same version.
package pulumicli

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
