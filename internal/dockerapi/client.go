// Package dockerapi is the stack's own Docker Engine API client: the few
// calls made outside the docker provider, with the standard library alone.
// It serves the rolling replacement hooks and the version guard (package
// rolling and components), the tests' node watcher and the bench.
package dockerapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Docker is a client of one Docker daemon.
type Docker struct {
	client *http.Client
	base   string
}

// DefaultDockerHost is where the Docker daemon listens unless DOCKER_HOST
// (or the docker provider's host setting) says otherwise.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// NewDocker connects to host: unix:///path or tcp://host:port (no TLS), as in
// DOCKER_HOST. Empty means DefaultDockerHost.
func NewDocker(host string) (*Docker, error) {
	if host == "" {
		host = DefaultDockerHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w", host, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		return &Docker{client: &http.Client{Transport: &http.Transport{DialContext: dial}}, base: "http://docker"}, nil
	case "tcp", "http":
		return &Docker{client: &http.Client{}, base: "http://" + u.Host}, nil
	default:
		return nil, fmt.Errorf("docker host %q: rolling replacement speaks to Docker over unix:// or tcp:// only", host)
	}
}

// Inspect implements Engine.
func (d *Docker) Inspect(ctx context.Context, name string) (Container, error) {
	var body struct {
		ID    string `json:"Id"`
		State struct {
			Running bool
			Health  *struct{ Status string }
		}
		Config struct{ Env []string }
	}
	status, err := d.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/json", nil, &body)
	if status == http.StatusNotFound {
		return Container{}, nil
	}
	if err != nil {
		return Container{}, err
	}
	c := Container{Exists: true, ID: body.ID, Running: body.State.Running, Env: body.Config.Env}
	if body.State.Health != nil {
		c.Health = body.State.Health.Status
	}
	return c, nil
}

// ServiceImage reads a Swarm service's image reference by the service's
// name (the manager answers); a missing service gives "".
func (d *Docker) ServiceImage(ctx context.Context, name string) (string, error) {
	var body struct {
		Spec struct {
			TaskTemplate struct {
				ContainerSpec struct{ Image string }
			}
		}
	}
	status, err := d.call(ctx, http.MethodGet, "/services/"+url.PathEscape(name), nil, &body)
	if status == http.StatusNotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return body.Spec.TaskTemplate.ContainerSpec.Image, nil
}

// Exec implements Engine: it runs cmd as the container's user, waits for it
// and returns its exit code with stdout and stderr interleaved.
func (d *Docker) Exec(ctx context.Context, name string, cmd []string) (int, string, error) {
	var created struct {
		ID string `json:"Id"`
	}
	if _, err := d.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(name)+"/exec",
		map[string]any{"Cmd": cmd, "AttachStdout": true, "AttachStderr": true}, &created); err != nil {
		return 0, "", fmt.Errorf("exec in %s: %w", name, err)
	}
	req, err := d.request(ctx, http.MethodPost, "/exec/"+created.ID+"/start", map[string]any{"Detach": false, "Tty": false})
	if err != nil {
		return 0, "", err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("exec in %s: %w", name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		return 0, "", fmt.Errorf("exec in %s: %s: %s", name, resp.Status, strings.TrimSpace(string(msg)))
	}
	out, err := demux(resp.Body)
	if err != nil {
		return 0, out, fmt.Errorf("exec in %s: reading output: %w", name, err)
	}
	var result struct {
		Running  bool
		ExitCode int
	}
	if _, err := d.call(ctx, http.MethodGet, "/exec/"+created.ID+"/json", nil, &result); err != nil {
		return 0, out, fmt.Errorf("exec in %s: %w", name, err)
	}
	if result.Running {
		return 0, out, fmt.Errorf("exec in %s: output ended while the command still runs", name)
	}
	return result.ExitCode, out, nil
}

// demux reads Docker's multiplexed stream: frames of an 8-byte header (the
// stream, three zero bytes, a big-endian length) and a payload.
func demux(r io.Reader) (string, error) {
	var out bytes.Buffer
	var header [8]byte
	for {
		if _, err := io.ReadFull(r, header[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out.String(), nil
			}
			return out.String(), err
		}
		if _, err := io.CopyN(&out, r, int64(binary.BigEndian.Uint32(header[4:]))); err != nil {
			return out.String(), err
		}
	}
}

func (d *Docker) request(ctx context.Context, method, path string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// call makes one API call and decodes its JSON answer into out. It returns
// the HTTP status, and an error for any status from 300 up.
func (d *Docker) call(ctx context.Context, method, path string, in, out any) (int, error) {
	req, err := d.request(ctx, method, path, in)
	if err != nil {
		return 0, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, fmt.Errorf("docker %s %s: %s: %s", method, path, resp.Status, e.Message)
	}
	if out == nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}

// Container is what the stack reads of a container.
type Container struct {
	// Exists is false when there is no container of that name.
	Exists bool
	ID     string
	// Running is the container's State.Running.
	Running bool
	// Health is Docker's health status: starting, healthy or unhealthy.
	Health string
	// Env is the container's environment, as NAME=value.
	Env []string
}

// Healthy says the container runs and passes its health check.
func (c Container) Healthy() bool { return c.Exists && c.Running && c.Health == "healthy" }

// EnvValue returns the value of key in a container's environment.
func (c Container) EnvValue(key string) (string, bool) {
	i := slices.IndexFunc(c.Env, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	if i < 0 {
		return "", false
	}
	return strings.TrimPrefix(c.Env[i], key+"="), true
}
