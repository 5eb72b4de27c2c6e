package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Resource alarms (issue 16, cases 2 and 3).

// The disk case's sizes: node 2 keeps its data on a tmpfs volume of
// diskVolumeMB, and the matrix's stack sets diskFreeLimitMb to
// diskLimitMB, so a filler written from the host trips the alarm.
const (
	diskVolumeMB = 400
	diskLimitMB  = 100
	// fullDiskHold is how long the volume stays full to the last byte.
	fullDiskHold = 10 * time.Second
)

// smallVolume creates node i's data volume as a size-limited tmpfs before
// the node starts (the node's own `volume create` then finds it).
func smallVolume(t *testing.T, s faultStack, i int) {
	vol := harness.Plan(t, s.cfg).Nodes[i].Spec.Volume
	harness.MustDocker(t, "volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
		"--opt", fmt.Sprintf("o=size=%dm", diskVolumeMB), "--label", plan.LabelStack+"="+s.cfg.Prefix, vol)
}

// diskAlarm fills node 2's small data volume from the host until less than
// diskFreeLimitMb is free: the node raises its disk alarm, and every
// publisher in the cluster is blocked (connection.blocked), not dropped.
// Then the volume is filled to the last byte for fullDiskHold, a full
// disk, and the node must not crash. Removing the filler clears the alarm.
func diskAlarm(t *testing.T, s faultStack) (string, func()) {
	name := s.node(2)
	vol := harness.Plan(t, s.cfg).Nodes[2].Spec.Volume
	dir := harness.MustDocker(t, "volume", "inspect", "-f", "{{.Mountpoint}}", vol)
	restarts := func() string {
		return harness.MustDocker(t, "inspect", "-f", "{{.RestartCount}} {{.State.StartedAt}}", name)
	}
	before := restarts()
	fill := func(file string, bytes int64) {
		if out, err := hostCommand("fallocate", "-l", strconv.FormatInt(bytes, 10), filepath.Join(dir, file)); err != nil {
			t.Fatalf("fallocate %d bytes on %s's volume: %v: %s", bytes, name, err, out)
		}
	}
	fillers := []string{"rabbitmq-ha-test-filler-1", "rabbitmq-ha-test-filler-2"}
	repair := func() {
		for _, f := range fillers {
			_ = os.Remove(filepath.Join(dir, f))
		}
	}

	fill(fillers[0], freeBytes(t, dir)-diskLimitMB<<20/2)
	filled := time.Now()
	alarm := time.Duration(0)
	for time.Since(filled) < 30*time.Second && alarm == 0 {
		if out, _ := rabbitmqctl(s.node(0), 5*time.Second, "eval", "rabbit_alarm:get_alarms()."); strings.Contains(out, "disk") {
			alarm = time.Since(filled)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if alarm == 0 {
		t.Errorf("no disk alarm 30 s after %s's volume had less than %d MB free", name, diskLimitMB)
		return "no disk alarm", repair
	}
	// Blocked, not dropped: the publisher's connection is told so.
	blocked := false
	for start := time.Now(); time.Since(start) < 10*time.Second && !blocked; time.Sleep(100 * time.Millisecond) {
		for _, e := range s.load.Pub.Events() {
			if e.At.After(filled) && strings.HasPrefix(e.What, "blocked") {
				blocked = true
			}
		}
	}
	if !blocked {
		t.Errorf("the publisher was not blocked (connection.blocked) during the disk alarm")
	}

	// To the last byte: a tmpfs may refuse its last page, so try a little less.
	if _, err := hostCommand("fallocate", "-l", strconv.FormatInt(freeBytes(t, dir), 10), filepath.Join(dir, fillers[1])); err != nil {
		fill(fillers[1], freeBytes(t, dir)-64<<10)
	}
	time.Sleep(fullDiskHold)
	left := freeBytes(t, dir)
	after := restarts()
	crashed := after != before
	if crashed {
		t.Errorf("%s restarted while its disk was full: %s, then %s\n%s", name, before, after, harness.LastBoot(harness.Logs(t, name)))
	}
	return fmt.Sprintf("disk alarm %s after the fill; publisher blocked: %v; volume full (%d bytes free) for %s; node restarted: %v",
		alarm.Round(100*time.Millisecond), blocked, left, fullDiskHold, crashed), repair
}

// freeBytes is the space left on the filesystem holding dir.
func freeBytes(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
