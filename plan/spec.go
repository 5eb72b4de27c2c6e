package plan

import "time"

// ContainerSpec is everything about a container that does not depend on
// another resource's outputs: plain data, from pure functions of the config.
// Two interpreters read it: package components turns it into the docker
// provider's inputs, and internal/harness runs it with the docker CLI, so
// the plugin-free tests and the bench run the stack's own files, commands
// and settings. TestInterpretersReadEveryField (in components) keeps the two
// in step: a field one of them ignores fails it.
type ContainerSpec struct {
	Name     string
	Hostname string
	Command  []string
	// User overrides the image's user when set.
	User string
	IP   string
	// Networks are the networks the container joins besides the stack's,
	// without a static address.
	Networks []string
	Ports    []PortSpec
	Files    []FileSpec
	// Volume is mounted at VolumePath when set.
	Volume, VolumePath string
	Health             *HealthSpec
	MemoryMB           int
	Restart            string
	StopTimeoutSeconds int
	Labels             map[string]string
	// Env holds plain settings only; secrets are files.
	Env map[string]string
	// Placement is the Swarm placement constraint that pins the container
	// to its host, where its volume lives (Swarm only).
	Placement string
}

// PortSpec publishes a container port on a host address.
type PortSpec struct {
	HostIP             string
	Internal, External int
}

// FileSpec is a file uploaded before the container starts.
type FileSpec struct {
	Path, Content, Mode string
	// Secret marks content that must stay secret in Pulumi state; on
	// Swarm it is a secret, not a config.
	Secret bool
	// UID owns the file where the platform mounts it as it is (Swarm's
	// secrets and configs are read-only): uid and gid. Empty is root, and
	// a script of the stack gives the file to its user.
	UID string
}

// File modes of the uploaded files, as the provider takes them.
const (
	// ModeExecutable is a script.
	ModeExecutable = "0755"
	// ModeReadable is a plain config file.
	ModeReadable = "0644"
	// ModeSecret is readable by its owner alone: a cookie, credentials, a key.
	ModeSecret = "0400"
)

// HealthSpec is a Docker healthcheck.
type HealthSpec struct {
	Test                           []string
	Interval, Timeout, StartPeriod time.Duration
	Retries                        int
}

// Restart policies of the one-shot jobs; the long-running containers take
// the configured one.
const RestartNever = "no"

// WithFile returns a copy of the spec whose file at path has content: what
// another resource provides (the PKI's bundle for the HAProxy config job).
func (s ContainerSpec) WithFile(path, content string) ContainerSpec {
	files := make([]FileSpec, len(s.Files))
	copy(files, s.Files)
	for i := range files {
		if files[i].Path == path {
			files[i].Content = content
		}
	}
	s.Files = files
	return s
}
