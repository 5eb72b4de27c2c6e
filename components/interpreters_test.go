package components

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// cliExempt are the spec fields the docker CLI interpreter has no use for,
// each with the reason.
var cliExempt = map[string]string{
	// The harness passes every file through stdin (docker cp -), never an
	// argument or a log, and keeps no state that could leak it.
	"Files[0].Secret": "secrecy is a Pulumi state property",
}

// oneHostExempt are the spec fields that mean nothing on one Docker host,
// to either of its interpreters.
var oneHostExempt = map[string]string{
	"Placement":    "one host: nothing to place",
	"Files[0].UID": "uploads are root's, and the stack's scripts give them to their users",
}

// swarmExempt are the spec fields that mean nothing on a Swarm, to either
// of its interpreters; the Swarm plan leaves them empty.
var swarmExempt = map[string]string{
	"IP":              "Swarm assigns the tasks' addresses",
	"Networks":        "only migrateFrom sets them, and it is refused on Swarm",
	"Ports[0].HostIP": "Swarm publishes on every address of a host",
}

// TestInterpretersReadEveryField proves that both interpreters of a
// plan.ContainerSpec read every one of its fields: the docker provider's
// inputs (containerArgs, wired as the components wire it) and the docker
// CLI's (harness.CreateArgs and harness.Upload). Each leaf field of a full
// spec is changed in turn, and each interpreter's output must change. A
// field added to the spec but forgotten by either interpreter fails here.
func TestInterpretersReadEveryField(t *testing.T) {
	fields := leafFields(reflect.TypeOf(plan.ContainerSpec{}), "")
	if len(fields) < 20 {
		t.Fatalf("only %d leaf fields found: %v", len(fields), fields)
	}
	baseCLI := cliOf(t, fullSpec())
	basePulumi := pulumiOf(t, fullSpec())
	for _, f := range fields {
		s := fullSpec()
		mutate(t, reflect.ValueOf(&s).Elem(), f)
		if _, ok := oneHostExempt[f]; ok {
			continue
		}
		if _, ok := cliExempt[f]; !ok && cliOf(t, s) == baseCLI {
			t.Errorf("the docker CLI interpreter (internal/harness) ignores %s", f)
		}
		if pulumiOf(t, s).DeepEquals(basePulumi) {
			t.Errorf("the docker provider interpreter (components.containerArgs) ignores %s", f)
		}
	}
}

// TestSwarmInterpretersReadEveryField is the same proof for the Swarm
// interpreters: the docker provider's service, secrets and configs
// (components.newService), and `docker service create` with the files the
// docker CLI creates (harness.ServiceArgs and SwarmFiles).
func TestSwarmInterpretersReadEveryField(t *testing.T) {
	fields := leafFields(reflect.TypeOf(plan.ContainerSpec{}), "")
	baseCLI := swarmCLIOf(fullSpec())
	basePulumi := swarmPulumiOf(t, fullSpec())
	for _, f := range fields {
		if _, ok := swarmExempt[f]; ok {
			continue
		}
		s := fullSpec()
		mutate(t, reflect.ValueOf(&s).Elem(), f)
		if swarmCLIOf(s) == baseCLI {
			t.Errorf("the docker CLI Swarm interpreter (harness.ServiceArgs) ignores %s", f)
		}
		if reflect.DeepEqual(swarmPulumiOf(t, s), basePulumi) {
			t.Errorf("the docker provider Swarm interpreter (components.newService) ignores %s", f)
		}
	}
}

// swarmCLIOf is what the docker CLI makes of a spec on Swarm: the service's
// arguments and every file object's kind, name and content.
func swarmCLIOf(s plan.ContainerSpec) string {
	args := harness.ServiceArgs(s, "img", "net", false, "host", nil)
	for _, f := range harness.SwarmFiles(s, nil) {
		args = append(args, f.Kind, f.Name, f.Content)
	}
	return strings.Join(args, "\x00")
}

// swarmPulumiOf is every resource the Swarm interpreter registers for a
// spec, with its inputs, by type and name.
func swarmPulumiOf(t *testing.T, s plan.ContainerSpec) map[string]string {
	t.Helper()
	m := &mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := newService(ctx, "svc", s, serviceInputs{image: pulumi.String("img"), network: pulumi.String("net"),
			publish: "host", startTimeoutSeconds: 60})
		return err
	}, pulumi.WithMocks("p", "s", m))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range m.resources {
		out[r.typ+" "+r.name] = fmt.Sprint(r.inputs.Mappable())
	}
	if len(out) < 2 {
		t.Fatalf("the Swarm interpreter registered %v", out)
	}
	return out
}

// fullSpec sets every field, one element in each list and map.
func fullSpec() plan.ContainerSpec {
	return plan.ContainerSpec{
		Name: "c", Hostname: "h", Command: []string{"cmd"}, User: "u", IP: "10.0.0.5", Networks: []string{"old"},
		Ports:  []plan.PortSpec{{HostIP: "127.0.0.1", Internal: 5672, External: 40000}},
		Files:  []plan.FileSpec{{Path: "/etc/f", Content: "content", Mode: plan.ModeReadable}},
		Volume: "v", VolumePath: "/data",
		Health: &plan.HealthSpec{Test: []string{"CMD", "true"}, Interval: time.Second, Timeout: 2 * time.Second,
			StartPeriod: 3 * time.Second, Retries: 3},
		MemoryMB: 512, Restart: "unless-stopped", StopTimeoutSeconds: 30,
		Labels: map[string]string{"l": "1"}, Env: map[string]string{"E": "1"}, Placement: "node.hostname==h1",
	}
}

// leafFields are the paths of every leaf field: Ports[0].HostIP, Health.Retries.
func leafFields(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		path := prefix + f.Name
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
			out = append(out, leafFields(ft.Elem(), path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, leafFields(ft.Elem(), path+"[0].")...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// mutate changes the field at path.
func mutate(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	for _, part := range strings.Split(path, ".") {
		name, index, list := strings.Cut(part, "[")
		v = v.FieldByName(name)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if list && index == "0]" {
			v = v.Index(0)
		}
	}
	switch {
	case strings.HasSuffix(path, ".Mode"):
		v.SetString(plan.ModeSecret)
	case v.Kind() == reflect.String:
		v.SetString(v.String() + "x")
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64:
		v.SetInt(v.Int() + 1)
	case v.Kind() == reflect.Bool:
		v.SetBool(!v.Bool())
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		v.Set(reflect.Append(v, reflect.ValueOf("x")))
	case v.Kind() == reflect.Map:
		v.SetMapIndex(reflect.ValueOf("x"), reflect.ValueOf("y"))
	default:
		t.Fatalf("mutate: no rule for %s (%s): add one", path, v.Type())
	}
}

// cliOf is what the docker CLI interpreter makes of a spec.
func cliOf(t *testing.T, s plan.ContainerSpec) string {
	t.Helper()
	files, err := harness.Upload(s.Files, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	args := harness.CreateArgs(s, "img", "net")
	for _, c := range harness.ConnectArgs(s) {
		args = append(args, c...)
	}
	return strings.Join(args, "\x00") + "\x00" + string(bytes.ReplaceAll(files, []byte{0}, nil))
}

// pulumiOf is what the docker provider interpreter registers for a spec:
// the container's inputs, with its volume's name as NewNodes wires it.
func pulumiOf(t *testing.T, s plan.ContainerSpec) resource.PropertyMap {
	t.Helper()
	m := &mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := docker.NewContainer(ctx, "c", containerArgs(s, containerInputs{
			image: pulumi.String("img"), network: pulumi.String("net"), volume: pulumi.String(s.Volume),
		}))
		return err
	}, pulumi.WithMocks("p", "s", m))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(m.resources, func(r registered) bool { return r.typ == "docker:index/container:Container" })
	if i < 0 {
		t.Fatal("no container registered")
	}
	return m.resources[i].inputs
}
