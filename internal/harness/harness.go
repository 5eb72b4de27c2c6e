// Package harness is what the tests and the bench share to run real
// containers: the second interpreter of the stack's plan (RunSpec runs a
// plan.ContainerSpec with the docker CLI, as the docker provider would),
// the supported lines and their local images, AMQP publishers and
// consumers that count by message ID, the node watcher, and the real
// Pulumi program through the Automation API (InlineStack).
package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Local images built by `make images` (images/build.sh).
const (
	RabbitMQ3Image  = "rabbitmq:3.10-local"
	RabbitMQ4Image  = "rabbitmq:4.0-local"
	RabbitMQ43Image = "rabbitmq:4.3-local"
	HAProxyImage    = "haproxy:2.6-local"
	HAProxy32Image  = "haproxy:3.2-local"
	HAProxy30Image  = "haproxy:3.0-local"
)

// Line is a supported RabbitMQ release line, as the tests run it.
type Line struct {
	// Name names the line in test names: 3.10-mirrored.
	Name   string
	Image  string
	HAMode string
	// HAProxy is the HAProxy image of the line's Debian suite.
	HAProxy string
	// Net is the line's third octet in a test's subnet (10.<test>.<Net>.0/24)
	// and its offset in the test's port range, so the lines of one test
	// never collide.
	Net int
}

// Lines are the supported lines, oldest first: every test that proves a
// cluster behaviour runs on each of them.
var Lines = []Line{
	{"3.10-mirrored", RabbitMQ3Image, config.HAModeMirrored, HAProxyImage, 0},
	{"4.0-quorum", RabbitMQ4Image, config.HAModeQuorum, HAProxy30Image, 1},
	{"4.3-quorum", RabbitMQ43Image, config.HAModeQuorum, HAProxy32Image, 2},
}

// Config is a loaded test config for the line: prefix-<line>, subnet
// 10.<octet>.<Net>.0/24, ports from portBase + 100*Net.
func (l Line) Config(t testing.TB, prefix string, octet, portBase int, extra map[string]string) *config.Config {
	t.Helper()
	v := map[string]string{config.KeyHAMode: l.HAMode, config.KeyHAProxyImage: l.HAProxy}
	for k, val := range extra {
		v[k] = val
	}
	return TestConfig(t, prefix+"-"+strings.ReplaceAll(l.Name, ".", ""), l.Image,
		fmt.Sprintf("10.%d.%d.0/24", octet, l.Net), portBase+100*l.Net, v)
}

// Docker runs the docker CLI and returns its trimmed stdout.
func Docker(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// MustDocker is Docker that fails the test on error.
func MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := Docker(ctx, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RequireImages fails (never skips) when a local image is missing: CI
// builds them before the tests, and a developer runs `make images`.
func RequireImages(t testing.TB, images ...string) {
	t.Helper()
	for _, img := range images {
		if _, err := Docker(context.Background(), nil, "image", "inspect", img); err != nil {
			t.Fatalf("image %s is missing: run `make images` first", img)
		}
	}
}

// RemoveStack removes every container, volume and network labelled with
// the stack prefix, so a test starts and ends clean.
func RemoveStack(t testing.TB, prefix string) {
	t.Helper()
	filter := "label=" + plan.LabelStack + "=" + prefix
	if ids := MustDocker(t, "ps", "-aq", "--filter", filter); ids != "" {
		MustDocker(t, append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
	}
	if ids := MustDocker(t, "volume", "ls", "-q", "--filter", filter); ids != "" {
		MustDocker(t, append([]string{"volume", "rm", "-f"}, strings.Fields(ids)...)...)
	}
	if ids := MustDocker(t, "network", "ls", "-q", "--filter", filter); ids != "" {
		MustDocker(t, append([]string{"network", "rm"}, strings.Fields(ids)...)...)
	}
}

// Plan is the stack's plan of a config, or the test fails.
func Plan(t testing.TB, cfg *config.Config) *plan.Plan {
	t.Helper()
	p, err := plan.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// CreateNetwork creates the plan's network as the Network component does.
func CreateNetwork(t testing.TB, n plan.Network) {
	t.Helper()
	args := []string{"network", "create", "--driver", "bridge",
		"--subnet", n.Subnet, "--gateway", n.Gateway, "--ip-range", n.IPRange}
	for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
		args = append(args, "--label", k+"="+n.Labels[k])
	}
	MustDocker(t, append(args, n.Name)...)
}

// RunSpec creates and starts a container from a spec, as the docker provider
// would: create, upload the files, start.
func RunSpec(t testing.TB, s plan.ContainerSpec, image, network string) {
	t.Helper()
	if s.Volume != "" {
		MustDocker(t, "volume", "create", "--label", plan.LabelStack+"="+s.Labels[plan.LabelStack], s.Volume)
	}
	MustDocker(t, CreateArgs(s, image, network)...)
	for _, args := range ConnectArgs(s) {
		MustDocker(t, args...)
	}
	files, err := Upload(s.Files, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Docker(ctx, files, "cp", "-", s.Name+":/"); err != nil {
		t.Fatal(err)
	}
	MustDocker(t, "start", s.Name)
}

// CreateArgs are the `docker create` arguments of a spec's container: the
// CLI's reading of every field but the files, which Upload packs.
func CreateArgs(s plan.ContainerSpec, image, network string) []string {
	args := []string{"create", "--name", s.Name, "--network", network}
	if s.Hostname != "" {
		args = append(args, "--hostname", s.Hostname)
	}
	if s.IP != "" {
		args = append(args, "--ip", s.IP)
	}
	if s.User != "" {
		args = append(args, "--user", s.User)
	}
	for _, p := range s.Ports {
		args = append(args, "-p", fmt.Sprintf("%s:%d:%d/tcp", p.HostIP, p.External, p.Internal))
	}
	if s.Volume != "" {
		args = append(args, "-v", s.Volume+":"+s.VolumePath)
	}
	if h := s.Health; h != nil && len(h.Test) > 1 && h.Test[0] == "CMD" {
		args = append(args, "--health-cmd", shellJoin(h.Test[1:]),
			"--health-interval", h.Interval.String(), "--health-timeout", h.Timeout.String(),
			"--health-start-period", h.StartPeriod.String(), "--health-retries", strconv.Itoa(h.Retries))
	}
	if s.MemoryMB > 0 {
		// Swap equal to memory, as the components set it: no swap.
		m := fmt.Sprintf("%dm", s.MemoryMB)
		args = append(args, "--memory", m, "--memory-swap", m)
	}
	if s.StopTimeoutSeconds > 0 {
		args = append(args, "--stop-timeout", strconv.Itoa(s.StopTimeoutSeconds))
	}
	args = append(args, "--restart", s.Restart)
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		args = append(args, "--env", k+"="+s.Env[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		args = append(args, "--label", k+"="+s.Labels[k])
	}
	args = append(args, image)
	return append(args, s.Command...)
}

// ConnectArgs are the `docker network connect` arguments that join a
// created container to its spec's other networks (docker create takes one).
func ConnectArgs(s plan.ContainerSpec) [][]string {
	var out [][]string
	for _, n := range s.Networks {
		out = append(out, []string{"network", "connect", n, s.Name})
	}
	return out
}

// RunJob runs a one-shot spec (a job) to its end, as the provider does
// with attach, fails the test if it exits non-zero, and removes it with
// the anonymous volume its image's VOLUME made (the provider's
// removeVolumes; without -v each job left a 12 KB data directory).
func RunJob(t testing.TB, s plan.ContainerSpec, image, network string) {
	t.Helper()
	RunSpec(t, s, image, network)
	if code := MustDocker(t, "wait", s.Name); code != "0" {
		t.Fatalf("%s exited with %s:\n%s", s.Name, code, Logs(t, s.Name))
	}
	MustDocker(t, "rm", "-v", s.Name)
}

// Upload packs files with their modes, owned by root, as the provider
// uploads them: the tar `docker cp -` takes, every entry dated modTime.
func Upload(files []plan.FileSpec, modTime time.Time) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	dirs := map[string]bool{}
	for _, f := range files {
		parts := strings.Split(strings.TrimPrefix(f.Path, "/"), "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: modTime}); err != nil {
					return nil, err
				}
			}
		}
		mode, err := strconv.ParseInt(f.Mode, 8, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: mode %q: %w", f.Path, f.Mode, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: mode, Size: int64(len(f.Content)), ModTime: modTime}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(f.Content)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// shellJoin quotes args for sh -c.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// Relabel builds tag from image with one more label: the same software
// under a new image ID, so every container of it is re-created.
func Relabel(image, tag, label string) error {
	dockerfile := fmt.Sprintf("FROM %s\nLABEL org.rabbitmq-ha.test=%q\n", image, label)
	cmd := exec.Command("docker", "build", "-q", "-t", tag, "-")
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	cmd.Stdin = strings.NewReader(dockerfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build %s: %w\n%s", tag, err, out)
	}
	return nil
}

// RelabelImage is Relabel for a test; the tag is removed when it ends.
func RelabelImage(t testing.TB, image, tag string) string {
	t.Helper()
	if err := Relabel(image, tag, t.Name()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = Docker(context.Background(), nil, "rmi", "-f", tag) })
	return tag
}

// StartTimeout is how long the tests give a node to become healthy: the
// stack's own default (startTimeoutSeconds), which `pulumi up` waits for
// each node. A slow host (CI's ran parts of the suite 2.5-3.6 times slower
// than this one) took more than the 3 minutes once given here.
const StartTimeout = time.Duration(config.DefaultStartTimeout) * time.Second

// WaitHealthy waits until a container's healthcheck passes.
func WaitHealthy(t testing.TB, name string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		out, _ := Docker(context.Background(), nil, "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", name)
		if out == "running healthy" {
			return time.Since(start)
		}
		time.Sleep(500 * time.Millisecond)
	}
	logs, _ := Docker(context.Background(), nil, "logs", "--tail", "60", name)
	t.Fatalf("%s not healthy after %s; last logs:\n%s", name, timeout, logs)
	return 0
}

// LastBoot is the part of a node's log from its last boot on: a restarted
// container's log holds every boot, and only the last one tells what the
// restart did.
func LastBoot(logs string) string {
	if i := strings.LastIndex(logs, "starting RabbitMQ"); i >= 0 {
		return logs[i:]
	}
	return logs
}

// Logs returns a container's log lines written by the cluster script.
func Logs(t testing.TB, name string) string {
	t.Helper()
	cmd := exec.Command("docker", "logs", name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker logs %s: %v", name, err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "rabbitmq-ha: ") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// requiredPlugins are the provider plugins the program needs, at the
// versions of the SDKs in go.mod.
var requiredPlugins = []struct{ name, version string }{
	{"docker", "4.10.0"},
	{"tls", "5.2.0"},
	{"rabbitmq", "3.3.1"},
}

// PulumiMissing returns the project-local CLI under root and what of the
// real Pulumi run is missing: the CLI (`make bin/pulumi`) or a provider plugin.
func PulumiMissing(root string) (cli string, missing []string) {
	cli = filepath.Join(root, "bin", "pulumi")
	if _, err := os.Stat(cli); err != nil {
		missing = append(missing, cli+" (run `make bin/pulumi`)")
	}
	home := os.Getenv("PULUMI_HOME")
	if home == "" {
		h, _ := os.UserHomeDir()
		home = filepath.Join(h, ".pulumi")
	}
	for _, p := range requiredPlugins {
		bin := filepath.Join(home, "plugins", fmt.Sprintf("resource-%s-v%s", p.name, p.version), "pulumi-resource-"+p.name)
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, fmt.Sprintf("provider plugin resource-%s v%s (%s)", p.name, p.version, bin))
		}
	}
	return cli, missing
}

// InlineStack returns a stack of the real program (components.Program, as
// the caller passes it: the harness interprets the plan and does not import
// the Pulumi components), run inline through the Automation API with the project-local CLI on a file://
// backend in stateDir, with the given plain and secret config values.
func InlineStack(ctx context.Context, program pulumi.RunFunc, cli, name, stateDir string, values, secrets map[string]string) (auto.Stack, error) {
	cmd, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: filepath.Dir(filepath.Dir(cli))})
	if err != nil {
		return auto.Stack{}, err
	}
	project := workspace.Project{Name: "rabbitmq-ha", Runtime: workspace.NewProjectRuntimeInfo("go", nil)}
	s, err := auto.UpsertStackInlineSource(ctx, name, "rabbitmq-ha", program,
		auto.Pulumi(cmd),
		auto.Project(project),
		auto.EnvVars(map[string]string{
			"PULUMI_BACKEND_URL":                   "file://" + stateDir,
			"PULUMI_CONFIG_PASSPHRASE":             "rabbitmq-ha-test-passphrase",
			"PULUMI_SKIP_UPDATE_CHECK":             "true",
			"PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
		}))
	if err != nil {
		return auto.Stack{}, err
	}
	all := auto.ConfigMap{}
	for k, v := range values {
		all["rabbitmq-ha:"+k] = auto.ConfigValue{Value: v}
	}
	for k, v := range secrets {
		all["rabbitmq-ha:"+k] = auto.ConfigValue{Value: v, Secret: true}
	}
	return s, s.SetAllConfig(ctx, all)
}
