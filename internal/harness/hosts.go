package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// DockerHostImage is the tests' Docker host in a container
// (images/dockerhost): Debian's docker.io on vfs.
const DockerHostImage = "rabbitmq-ha-dockerhost:bookworm-local"

// hostAPIPort is where each host's daemon listens, on the host's address.
const hostAPIPort = 2375

// Host is a simulated machine: a container that runs a Docker daemon of its
// own, so a test can kill it whole (every container on it dies with it,
// volumes kept), restart its daemon, or form a Swarm with others. Not
// --privileged, which this machine refuses ("unable to apply caps").
type Host struct {
	Name, IP string
	// Endpoint is its daemon, tcp://IP:2375.
	Endpoint string
	// outer is the environment of this machine's own docker CLI, whatever
	// a test later sets DOCKER_HOST to.
	outer []string
}

// StartHost starts a host named name, on network (empty: Docker's default
// bridge), with the images loaded from this machine's Docker. publish,
// when set, is a 127.0.0.1 port its daemon's API is published on. The host
// and its volumes are removed before and when the test ends.
func StartHost(t testing.TB, name, network, publish string, images ...string) Host {
	t.Helper()
	RequireImages(t, append([]string{DockerHostImage}, images...)...)
	h, err := newHost(name, network, publish)
	t.Cleanup(h.remove)
	if err == nil {
		err = h.await()
	}
	if err == nil && len(images) > 0 {
		start := time.Now()
		var archive string
		if archive, err = saveImages(images...); err == nil {
			err = h.Load(archive)
		}
		t.Logf("Docker host %s at %s, %v loaded in %s", name, h.IP, images, time.Since(start).Round(time.Second))
	}
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newHost starts a host's container; its daemon is not up yet (await).
func newHost(name, network, publish string) (Host, error) {
	h := Host{Name: name, outer: os.Environ()}
	h.remove()
	// SYS_PTRACE: without it, runc cannot enter the namespaces of a
	// container whose process is not root (docker exec, and so every
	// health check, fails with "error executing setns").
	args := []string{"run", "-d", "--name", name, "--hostname", name,
		"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE", "--security-opt", "seccomp=unconfined",
		"--security-opt", "apparmor=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host"}
	if network != "" {
		args = append(args, "--network", network)
	}
	if publish != "" {
		args = append(args, "-p", "127.0.0.1:"+publish+":"+fmt.Sprint(hostAPIPort))
	}
	if out, err := h.Outer(context.Background(), append(args, DockerHostImage)...); err != nil {
		return h, fmt.Errorf("start the Docker host %s: %w: %s", name, err, out)
	}
	ip, err := h.Outer(context.Background(), "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
	if err != nil {
		return h, fmt.Errorf("inspect the Docker host %s: %w: %s", name, err, ip)
	}
	h.IP = ip
	h.Endpoint = fmt.Sprintf("tcp://%s:%d", ip, hostAPIPort)
	return h, nil
}

// remove removes the host and its disk.
func (h Host) remove() { _, _ = h.Outer(context.Background(), "rm", "-f", "-v", h.Name) }

func (h Host) await() error {
	if !h.AwaitDaemon(time.Minute) {
		return fmt.Errorf("the Docker host %s did not answer at %s within a minute: %s", h.Name, h.Endpoint, h.Log())
	}
	return nil
}

// savedImages caches `docker save` of an image set per process: every
// host loads the same file.
var savedImages sync.Map

// saveImages is a `docker save` archive of the images.
func saveImages(images ...string) (string, error) {
	key := strings.Join(images, " ")
	if p, ok := savedImages.Load(key); ok {
		return p.(string), nil
	}
	dir, err := os.MkdirTemp("", "rabbitmq-ha-images-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "images.tar")
	if out, err := exec.Command("docker", append([]string{"save", "-o", path}, images...)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker save %v: %w: %s", images, err, out)
	}
	savedImages.Store(key, path)
	return path, nil
}

// Load loads a `docker save` archive into the host.
func (h Host) Load(archive string) error {
	cmd := exec.Command("docker", "-H", h.Endpoint, "load", "-q", "-i", archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker load into %s: %w: %s", h.Name, err, out)
	}
	return nil
}

// Docker runs the docker CLI against the host's daemon.
func (h Host) Docker(ctx context.Context, args ...string) (string, error) {
	return Docker(ctx, nil, append([]string{"-H", h.Endpoint}, args...)...)
}

// Outer runs this machine's own docker CLI, whatever DOCKER_HOST says now.
func (h Host) Outer(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = h.outer
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Answers reports whether the host's daemon answers its API.
func (h Host) Answers() bool {
	return exec.Command("docker", "-H", h.Endpoint, "version").Run() == nil
}

// AwaitDaemon waits for the host's daemon to answer.
func (h Host) AwaitDaemon(timeout time.Duration) bool {
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(250 * time.Millisecond) {
		if h.Answers() {
			return true
		}
	}
	return false
}

// Logs are a container's logs on the host, stdout and stderr, where the
// stack's scripts log.
func (h Host) Logs(container string) string {
	out, _ := exec.Command("docker", "-H", h.Endpoint, "logs", "--tail", "5000", container).CombinedOutput()
	return string(out)
}

// Log is the tail of the host's dockerd log.
func (h Host) Log() string {
	out, _ := h.Outer(context.Background(), "exec", h.Name, "tail", "-n", "30", "/var/log/dockerd.log")
	return out
}

// PowerOff kills the whole host at once, as a power loss: its daemon and
// every container on it. Its disk (the daemon's volume) stays. First its
// network goes silent, every packet in and out dropped: processes killed
// on a live network close their sockets with a FIN or a reset, which a
// host whose power went never sends, and the peers would learn of the
// loss at once (here, a kill without this ended a publisher's session
// 0.14 s after it).
func (h Host) PowerOff() error {
	for _, chain := range []string{"PREROUTING", "OUTPUT"} {
		if out, err := h.Outer(context.Background(), "exec", h.Name, "iptables", "-t", "raw", "-I", chain, "-j", "DROP"); err != nil {
			return fmt.Errorf("silencing %s's network: %v: %s", h.Name, err, out)
		}
	}
	if out, err := h.Outer(context.Background(), "kill", h.Name); err != nil {
		return fmt.Errorf("docker kill %s: %v: %s", h.Name, err, out)
	}
	return nil
}

// Kill is PowerOff in a test.
func (h Host) Kill(t testing.TB) {
	t.Helper()
	if err := h.PowerOff(); err != nil {
		t.Fatal(err)
	}
}

// BootBudget bounds a killed host's boot, to its daemon answering. Once
// here the first dockerd after a power-off gave up waiting for its
// containerd ("timeout waiting for containerd to start") a minute in; the
// host's loop then starts another.
const BootBudget = 3 * time.Minute

// PowerOn starts a killed host again and waits for its daemon.
func (h Host) PowerOn() error {
	if out, err := h.Outer(context.Background(), "start", h.Name); err != nil {
		return fmt.Errorf("docker start %s: %v: %s", h.Name, err, out)
	}
	if !h.AwaitDaemon(BootBudget) {
		return fmt.Errorf("the Docker host %s did not answer within %s of its boot: %s", h.Name, BootBudget, h.Log())
	}
	return nil
}

// Boot is PowerOn in a test.
func (h Host) Boot(t testing.TB) {
	t.Helper()
	if err := h.PowerOn(); err != nil {
		t.Fatal(err)
	}
}

// SwarmHosts are simulated hosts that form a Swarm.
type SwarmHosts struct {
	Swarm
	// Hosts are the hosts, the manager first; each one's Name is its Swarm
	// node's hostname.
	Hosts []Host
	// Network is the hosts' own bridge on this machine.
	Network string
}

// StartSwarm is NewSwarm for a test: everything is removed before and
// when the test ends, failed or not.
func StartSwarm(t testing.TB, prefix string, n int, apiPort int, images ...string) *SwarmHosts {
	t.Helper()
	RequireImages(t, append([]string{DockerHostImage}, images...)...)
	start := time.Now()
	s, remove, err := NewSwarm(prefix, n, apiPort, images...)
	t.Cleanup(remove)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a Swarm of %d hosts, %v loaded into each, manager %s at %s, ready in %s",
		n, images, s.Hosts[0].Name, s.Endpoint, time.Since(start).Round(time.Second))
	return s
}

// NewSwarm starts n hosts, <prefix>-h1 to -h<n>, on a bridge network of
// their own, loads the images into each, and forms a Swarm: the first host
// is its manager, whose API is published on 127.0.0.1:apiPort (Endpoint).
// It returns what removes it all, hosts and network; on an error, too.
func NewSwarm(prefix string, n int, apiPort int, images ...string) (*SwarmHosts, func(), error) {
	s := &SwarmHosts{Network: prefix + "-hosts", Swarm: Swarm{Endpoint: "tcp://127.0.0.1:" + fmt.Sprint(apiPort)}}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-h%d", prefix, i+1)
	}
	remove := func() {
		for _, name := range names {
			Host{Name: name, outer: os.Environ()}.remove()
		}
		_, _ = Docker(context.Background(), nil, "network", "rm", s.Network)
	}
	remove()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := Docker(ctx, nil, "network", "create", "--label", "org.rabbitmq-ha.test="+prefix, s.Network); err != nil {
		return s, remove, err
	}
	archive, err := saveImages(images...)
	if err != nil {
		return s, remove, err
	}
	// The hosts boot together, each daemon in about 15 s, and load together.
	for i, name := range names {
		publish := ""
		if i == 0 {
			publish = fmt.Sprint(apiPort)
		}
		h, err := newHost(name, s.Network, publish)
		if err != nil {
			return s, remove, err
		}
		s.Hosts = append(s.Hosts, h)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, h := range s.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = h.await(); errs[i] == nil {
				errs[i] = h.Load(archive)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return s, remove, err
	}
	m := s.Hosts[0]
	if _, err := m.Docker(ctx, "swarm", "init", "--advertise-addr", m.IP); err != nil {
		return s, remove, err
	}
	token, err := m.Docker(ctx, "swarm", "join-token", "-q", "worker")
	if err != nil {
		return s, remove, err
	}
	for _, h := range s.Hosts[1:] {
		if _, err := h.Docker(ctx, "swarm", "join", "--token", token, m.IP+":2377"); err != nil {
			return s, remove, err
		}
	}
	return s, remove, nil
}

// Host returns the host of a Swarm node hostname.
func (s *SwarmHosts) Host(name string) Host {
	for _, h := range s.Hosts {
		if h.Name == name {
			return h
		}
	}
	panic("no host " + name)
}

// LoadImages loads images from this machine into every host of the Swarm.
func (s *SwarmHosts) LoadImages(images ...string) error {
	archive, err := saveImages(images...)
	if err != nil {
		return err
	}
	errs := make([]error, len(s.Hosts))
	var wg sync.WaitGroup
	for i, h := range s.Hosts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.Load(archive) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}
