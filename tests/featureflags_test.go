package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// TestIntegrationFeatureFlags: once every node is up, every stable feature
// flag is enabled, as the RabbitMQ cluster operator's
// autoEnableAllFeatureFlags does, so the next upgrade is possible. The nodes
// boot with RABBITMQ_FEATURE_FLAGS naming one flag, so each starts as a
// cluster upgraded from an older version does: its newer stable flags off
// (on 4.3.6, rabbitmq_4.3.0 and four more). Without the cluster script's
// step they would stay off.
func TestIntegrationFeatureFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs RabbitMQ containers; skipped under -short")
	}
	parallelTest(t)
	for _, line := range harness.Lines {
		t.Run(line.Name, func(t *testing.T) {
			parallelLine(t)
			harness.RequireImages(t, line.Image)
			cfg := line.Config(t, "rmqha-it-flags", 234, 48300, nil)
			harness.RemoveStack(t, cfg.Prefix)
			t.Cleanup(func() { harness.RemoveStack(t, cfg.Prefix) })
			startClusterWith(t, cfg, line.Image, func(s *plan.ContainerSpec) { s.Env["RABBITMQ_FEATURE_FLAGS"] = "quorum_queue" })
			harness.WaitRunning(t, plan.NodeNames(cfg.Prefix, 0).Container, cfg.Nodes, time.Minute)
			start := time.Now()
			for i := range cfg.Nodes {
				var off []string
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Second) {
					off = disabledStableFlags(t, plan.NodeNames(cfg.Prefix, i).Container)
					if len(off) == 0 || time.Now().After(deadline) {
						break
					}
				}
				if len(off) > 0 {
					t.Errorf("node %d: stable feature flags still disabled a minute after the cluster formed: %v\n%s", i, off, harness.Logs(t, plan.NodeNames(cfg.Prefix, i).Container))
				}
			}
			t.Logf("every stable feature flag enabled on %d nodes, %s after the cluster formed", cfg.Nodes, time.Since(start).Round(100*time.Millisecond))
			if logs := harness.Logs(t, plan.NodeNames(cfg.Prefix, 0).Container) + harness.Logs(t, plan.NodeNames(cfg.Prefix, 1).Container) + harness.Logs(t, plan.NodeNames(cfg.Prefix, 2).Container); !strings.Contains(logs, "feature flags: every stable flag is enabled") {
				t.Errorf("no node logged enabling the flags:\n%s", logs)
			}
		})
	}
}

// disabledStableFlags reads rabbitmqctl list_feature_flags on a node.
func disabledStableFlags(t *testing.T, container string) []string {
	t.Helper()
	raw := harness.MustDocker(t, "exec", container, "rabbitmqctl", "-q", "list_feature_flags", "name", "state", "stability", "--formatter", "json")
	var flags []struct{ Name, State, Stability string }
	if i := strings.Index(raw, "["); i < 0 || json.Unmarshal([]byte(raw[i:]), &flags) != nil || len(flags) == 0 {
		t.Fatalf("list_feature_flags on %s: %q", container, raw)
	}
	var off []string
	for _, f := range flags {
		if f.Stability == "stable" && f.State != "enabled" {
			off = append(off, f.Name)
		}
	}
	return off
}
