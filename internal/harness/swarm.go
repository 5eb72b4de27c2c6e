package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// The docker CLI's reading of the Swarm plan: what the Swarm interpreter
// in package components registers as docker.Service, docker.Secret and
// docker.ServiceConfig, as `docker service create`, `docker secret create`
// and `docker config create`. TestSwarmInterpretersReadEveryField keeps the two
// in step.

// SwarmFile is one Swarm secret or config of a service.
type SwarmFile struct {
	// Kind is secret or config.
	Kind, Name, Content string
}

// SwarmFiles are the secrets and configs a spec's files become, with the
// content given by path (the PKI's files) replacing the spec's.
func SwarmFiles(s plan.ContainerSpec, content map[string]string) []SwarmFile {
	var out []SwarmFile
	for _, f := range s.Files {
		if c, ok := content[f.Path]; ok {
			f.Content = c
		}
		kind := "config"
		if f.Secret {
			kind = "secret"
		}
		out = append(out, SwarmFile{Kind: kind, Name: swarmFileName(s.Name, f), Content: f.Content})
	}
	return out
}

// ServiceArgs are the `docker service create` arguments of a spec: one
// replica pinned by its placement, or, global, one task on every Swarm
// node. publish is host or ingress.
func ServiceArgs(s plan.ContainerSpec, image, network string, global bool, publish string, content map[string]string) []string {
	args := []string{"service", "create", "--detach", "--name", s.Name, "--network", network}
	if global {
		args = append(args, "--mode", "global")
	} else {
		// Each node by its name alone: the name resolves while the task
		// runs, as a container's does on one host, and to the task itself.
		args = append(args, "--replicas", "1", "--endpoint-mode", "dnsrr")
	}
	if s.Hostname != "" {
		args = append(args, "--hostname", s.Hostname)
	}
	if s.User != "" {
		args = append(args, "--user", s.User)
	}
	if s.Placement != "" {
		args = append(args, "--constraint", s.Placement)
	}
	for _, p := range s.Ports {
		args = append(args, "--publish", fmt.Sprintf("mode=%s,target=%d,published=%d,protocol=tcp", publish, p.Internal, p.External))
	}
	if s.Volume != "" {
		args = append(args, "--mount", fmt.Sprintf("type=volume,source=%s,target=%s,volume-label=%s=%s", s.Volume, s.VolumePath, plan.LabelStack, s.Labels[plan.LabelStack]))
	}
	if h := s.Health; h != nil && len(h.Test) > 1 && h.Test[0] == "CMD" {
		args = append(args, "--health-cmd", shellJoin(h.Test[1:]),
			"--health-interval", h.Interval.String(), "--health-timeout", h.Timeout.String(),
			"--health-start-period", h.StartPeriod.String(), "--health-retries", strconv.Itoa(h.Retries))
	}
	if s.MemoryMB > 0 {
		args = append(args, "--limit-memory", fmt.Sprintf("%dm", s.MemoryMB))
	}
	if s.StopTimeoutSeconds > 0 {
		args = append(args, "--stop-grace-period", strconv.Itoa(s.StopTimeoutSeconds)+"s")
	}
	args = append(args, "--restart-condition", plan.SwarmRestart(s.Restart),
		// One task at a time, the old one stopped first: a node's volume and
		// HAProxy's host ports are its host's alone.
		"--update-parallelism", "1", "--update-order", "stop-first")
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		args = append(args, "--env", k+"="+s.Env[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		args = append(args, "--label", k+"="+s.Labels[k], "--container-label", k+"="+s.Labels[k])
	}
	files := SwarmFiles(s, content)
	for i, f := range s.Files {
		uid := f.UID
		if uid == "" {
			uid = "0"
		}
		mode, _ := strconv.ParseInt(f.Mode, 8, 32)
		args = append(args, "--"+files[i].Kind, fmt.Sprintf("source=%s,target=%s,uid=%s,gid=%s,mode=%#o", files[i].Name, f.Path, uid, uid, mode))
	}
	args = append(args, image)
	return append(args, s.Command...)
}

// Swarm is a Docker Swarm the tests reach through its manager.
type Swarm struct {
	// Endpoint is the manager's API, tcp://127.0.0.1:port.
	Endpoint string
}

// Docker runs the docker CLI against the Swarm's manager.
func (s Swarm) Docker(ctx context.Context, stdin []byte, args ...string) (string, error) {
	return Docker(ctx, stdin, append([]string{"-H", s.Endpoint}, args...)...)
}

// CreateService creates a spec's secrets and configs, then its service.
func (s Swarm) CreateService(ctx context.Context, spec plan.ContainerSpec, image, network string, global bool, publish string, content map[string]string) error {
	for _, f := range SwarmFiles(spec, content) {
		if _, err := s.Docker(ctx, nil, f.Kind, "inspect", f.Name); err == nil {
			continue
		}
		if _, err := s.Docker(ctx, []byte(f.Content), f.Kind, "create", "--label", plan.LabelStack+"="+spec.Labels[plan.LabelStack], f.Name, "-"); err != nil {
			return err
		}
	}
	_, err := s.Docker(ctx, nil, ServiceArgs(spec, image, network, global, publish, content)...)
	return err
}

// RemoveStack removes a stack's services, then its secrets, configs and
// network, from the Swarm: each of those is refused while a service, or a
// task still stopping, uses it, so each is retried for a minute.
func (s Swarm) RemoveStack(ctx context.Context, prefix string) {
	filter := "label=" + plan.LabelStack + "=" + prefix
	for _, kind := range []string{"service", "secret", "config", "network"} {
		for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(time.Second) {
			out, err := s.Docker(ctx, nil, kind, "ls", "-q", "--filter", filter)
			if err != nil || out == "" {
				break
			}
			_, _ = s.Docker(ctx, nil, append([]string{kind, "rm"}, strings.Fields(out)...)...)
		}
	}
}

// swarmFileName names the Swarm secret or config that holds a file of a
// service by its content: both are immutable, so new content is a new
// object. Within Swarm's 64 characters: the service's name (at most 51)
// and 12 hex digits.
func swarmFileName(service string, f plan.FileSpec) string {
	sum := sha256.Sum256([]byte(f.Path + "\x00" + f.Mode + "\x00" + f.UID + "\x00" + f.Content))
	return service + "-" + hex.EncodeToString(sum[:])[:12]
}
