package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rabbitmq-ha/rabbitmq-ha/internal/harness"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
	"github.com/rabbitmq-ha/rabbitmq-ha/render"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Resource alarms (issue 16, cases 2 and 3).

// The disk case's sizes: node 2 keeps its data on a small volume of
// diskVolumeMB, and the matrix's stack sets diskFreeLimitMb to
// diskLimitMB, so a filler written from the host trips the alarm.
const (
	diskVolumeMB = 400
	diskLimitMB  = 100
	// fullDiskHold is how long the volume stays full to the last byte.
	fullDiskHold = 10 * time.Second
)

// smallVolume creates node i's data volume, before the node starts (its
// own `volume create` then finds it), on a diskVolumeMB ext4 filesystem in
// a file, loop-mounted on the host, and returns where it is mounted. Not a
// tmpfs: the pages a node writes to a tmpfs count against its container's
// memory limit, so the memory case would OOM-kill node 2 well below the
// watermark.
func smallVolume(t *testing.T, s faultStack, i int) string {
	vol := harness.Plan(t, s.cfg).Nodes[i].Spec.Volume
	dir := filepath.Join(os.TempDir(), vol)
	img, mnt := dir+".img", filepath.Join(dir, "data")
	unmount := func() {
		_, _ = hostCommand("umount", mnt)
		_ = os.RemoveAll(dir)
		_ = os.Remove(img)
	}
	unmount() // left by an earlier run
	t.Cleanup(func() {
		harness.RemoveStack(t, s.cfg.Prefix) // the volume's users first
		unmount()
	})
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"truncate", "-s", fmt.Sprintf("%dM", diskVolumeMB), img},
		{"mkfs.ext4", "-q", "-F", "-m", "0", img},
		{"mount", "-o", "loop", img, mnt},
		{"chmod", "1777", mnt},
	} {
		if out, err := hostCommand(cmd[0], cmd[1:]...); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(cmd, " "), err, out)
		}
	}
	harness.MustDocker(t, "volume", "create", "--driver", "local", "--opt", "type=none", "--opt", "o=bind",
		"--opt", "device="+mnt, "--label", plan.LabelStack+"="+s.cfg.Prefix, vol)
	return mnt
}

// diskAlarm fills node 2's small data volume from the host until less than
// diskFreeLimitMb is free: the node raises its disk alarm, and every
// publisher in the cluster is blocked (connection.blocked), not dropped.
// Then the volume is filled to the last byte for fullDiskHold, a full
// disk, and the node must not crash. Removing the filler clears the alarm.
func diskAlarm(t *testing.T, s faultStack) (string, func()) {
	name := s.node(2)
	dir := s.smallVolume
	before := nodeStart(t, name)
	fill := func(file string, bytes int64) {
		if out, err := hostCommand("fallocate", "-l", strconv.FormatInt(bytes, 10), filepath.Join(dir, file)); err != nil {
			t.Fatalf("fallocate %d bytes on %s's volume: %v: %s", bytes, name, err, out)
		}
	}
	fillers := []string{"rabbitmq-ha-test-filler-1", "rabbitmq-ha-test-filler-2", "rabbitmq-ha-test-filler-3", "rabbitmq-ha-test-filler-4"}
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
	blocked := publisherBlockedSince(s, filled, 10*time.Second)
	if !blocked {
		t.Errorf("the publisher was not blocked (connection.blocked) during the disk alarm")
	}

	// To the last byte; where the filesystem refuses its last blocks (an
	// ext4 needs some for the file's own extents), a little less each time.
	for i, slack := range []int64{0, 64 << 10, 1 << 20} {
		n := freeBytes(t, dir) - slack
		if n <= 0 {
			break
		}
		if _, err := hostCommand("fallocate", "-l", strconv.FormatInt(n, 10), filepath.Join(dir, fillers[1+i])); err == nil {
			break
		}
	}
	time.Sleep(fullDiskHold)
	left := freeBytes(t, dir)
	after := nodeStart(t, name)
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

// The memory case's filler: messages of fillBody bytes at up to fillRate,
// so that the memory monitor, which samples every few seconds, sees the
// watermark crossed long before the container's limit is near.
const (
	fillBody   = 256 << 10
	fillRate   = 24 << 20 // bytes a second
	fillWindow = 16       // unconfirmed messages at most
	fillQueue  = "faults-memory-fill"
	// blockedHold is how long the filler stays blocked before the drain.
	blockedHold = 5 * time.Second
)

// memoryAlarm publishes to a second queue, with nothing consuming it,
// until the memory watermark trips: every publisher is blocked
// (connection.blocked), not dropped, and no node crashes. Then a consumer
// drains the queue, and the alarm must be clear and publishing resumed.
// The filler's confirmed messages are counted by ID, as the load's are.
//
// A line that keeps the backlog off the heap can fill node 2's small disk
// first: 4.0 did, with the watermark at 0.6 of the whole limit (quorum
// queues keep their bodies on disk, and the WAL flushes at a quarter of
// the limit); at 0.48 it trips on memory. There the case proves the memory use
// stayed under the watermark, drains the backlog, and trips the alarm the
// way upstream documents for a test: the watermark lowered at runtime
// (set_vm_memory_high_watermark) below what node 0 uses, then restored.
func memoryAlarm(t *testing.T, s faultStack) (string, func()) {
	// The watermark derives from the container's limit.
	limit := int64(s.cfg.MemoryLimitMB) << 20
	want := render.MemoryWatermarkBytes(limit)
	for i := range s.cfg.Nodes {
		if got := harness.MustDocker(t, "inspect", "-f", "{{.HostConfig.Memory}}", s.node(i)); got != strconv.FormatInt(limit, 10) {
			t.Errorf("%s's memory limit is %s bytes, want %d (memoryLimitMb %d)", s.node(i), got, limit, s.cfg.MemoryLimitMB)
		}
		if got, err := memoryLimit(s.node(i)); err != nil || got != want {
			t.Errorf("%s's memory watermark is %d bytes (%v), want %d: %.1f of the container's %d", s.node(i), got, err, want, render.MemoryHighWatermark, limit)
		}
	}
	before := nodeStarts(t, s)
	start := time.Now()
	f := startFiller(s.amqp, fillQueue)
	drain := func() {
		confirmed := f.stop()
		sub := harness.StartConsumer(s.amqp, fillQueue)
		sub.AwaitIDs(confirmed, time.Minute)
		if lost, _ := sub.Stop().Check(confirmed); len(lost) > 0 {
			t.Errorf("%d of the filler's %d confirmed messages were never consumed, e.g. %v", len(lost), len(confirmed), lost[:min(5, len(lost))])
		}
		if _, err := rabbitmqctl(s.node(0), 20*time.Second, "delete_queue", fillQueue); err != nil {
			t.Logf("delete_queue %s: %v", fillQueue, err)
		}
	}
	// cleared waits for every memory alarm to clear, after what ended it.
	cleared := func(after string) {
		since := time.Now()
		alarms := memoryAlarms(s)
		for ; alarms != "" && time.Since(since) < 30*time.Second; alarms = memoryAlarms(s) {
			time.Sleep(500 * time.Millisecond)
		}
		if alarms != "" {
			t.Errorf("the memory alarm is still up 30 s after %s: %s", after, alarms)
		}
		t.Logf("no memory alarm %s after %s", time.Since(since).Round(100*time.Millisecond), after)
	}
	select {
	case <-f.blocked:
	case <-time.After(time.Minute):
		t.Errorf("the filler was not blocked a minute after it began (%d MB confirmed, watermark %d MB)", f.confirmedBytes()>>20, want>>20)
		return "no memory alarm", drain
	}
	alarm := time.Since(start)
	repair := func() { drain(); cleared("the filler's queue was drained") }
	what := fmt.Sprintf("filler blocked (%s) %s after it began, with %d MB confirmed", f.reason, alarm.Round(100*time.Millisecond), f.confirmedBytes()>>20)
	if !strings.Contains(f.reason, "memory") {
		// The disk filled first: memory must have stayed under the watermark.
		peak := int64(0)
		for i := range s.cfg.Nodes {
			if used, err := memoryUsed(s.node(i)); err == nil {
				peak = max(peak, used)
			}
		}
		if peak == 0 || peak >= want {
			t.Errorf("blocked %q with no memory alarm, yet the most a node uses is %d MB of its %d MB watermark", f.reason, peak>>20, want>>20)
		}
		what += fmt.Sprintf(", not by memory: the most a node used then was %d MB, of the %d MB watermark", peak>>20, want>>20)
		drain()
		for alarms, since := allAlarms(s), time.Now(); alarms != "[]"; alarms = allAlarms(s) {
			if time.Since(since) > 30*time.Second {
				t.Fatalf("alarms still up 30 s after the filler's queue was drained: %s", alarms)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if n, ok := s.load.Pub.AwaitConfirmed(50, resumeBudget); !ok {
			t.Fatalf("publishing did not resume after the disk alarm cleared: %d confirms in %s", n, resumeBudget)
		}
		used, err := memoryUsed(s.node(0))
		if err != nil {
			t.Fatalf("%s's memory use: %v", s.node(0), err)
		}
		lowered := used * 4 / 5
		start = time.Now()
		if out, err := rabbitmqctl(s.node(0), 10*time.Second, "set_vm_memory_high_watermark", "absolute", strconv.FormatInt(lowered, 10)); err != nil {
			t.Fatalf("set_vm_memory_high_watermark absolute %d on %s: %v: %s", lowered, s.node(0), err, out)
		}
		what += fmt.Sprintf("; then node 0's watermark lowered at runtime to %d MB, below its %d MB", lowered>>20, used>>20)
		repair = func() {
			if out, err := rabbitmqctl(s.node(0), 10*time.Second, "set_vm_memory_high_watermark", strconv.FormatFloat(render.MemoryHighWatermark, 'f', -1, 64)); err != nil {
				t.Errorf("restoring %s's watermark: %v: %s", s.node(0), err, out)
			}
			if got, err := memoryLimit(s.node(0)); err != nil || got != want {
				t.Errorf("%s's watermark after the restore is %d bytes (%v), want %d", s.node(0), got, err, want)
			}
			cleared("node 0's watermark was restored")
		}
	}
	blocked := publisherBlockedSince(s, start, 10*time.Second)
	if !blocked {
		t.Errorf("the load's publisher was not blocked (connection.blocked) during the memory alarm")
	}
	time.Sleep(blockedHold)
	after := nodeStarts(t, s)
	if after != before {
		t.Errorf("a node restarted or was OOM-killed during the memory alarm: %s, then %s", before, after)
	}
	set := memoryAlarmLog(t, s, start)
	if set == "" {
		t.Errorf("no node logged its memory alarm (vm_memory_high_watermark set)")
	}
	restarts := "no node restarted"
	if after != before {
		restarts = "A NODE RESTARTED (" + after + ")"
	}
	return fmt.Sprintf("%s; %s; the load's publisher blocked: %v; %s", what, set, blocked, restarts), repair
}

// memoryLimit is a node's memory watermark in bytes.
func memoryLimit(node string) (int64, error) {
	out, err := rabbitmqctl(node, 10*time.Second, "eval", "vm_memory_monitor:get_memory_limit().")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(out, 10, 64)
}

// memoryUsed is the memory a node's memory monitor counts against its
// watermark, in bytes.
func memoryUsed(node string) (int64, error) {
	out, err := rabbitmqctl(node, 10*time.Second, "eval", "vm_memory_monitor:get_process_memory().")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(out, 10, 64)
}

// allAlarms lists every resource alarm any node sees ("[]" for none).
func allAlarms(s faultStack) string {
	out, err := rabbitmqctl(s.node(0), 10*time.Second, "eval", "rabbit_alarm:get_alarms().")
	if err != nil {
		return err.Error()
	}
	return out
}

// memoryAlarmLog says which nodes logged their memory alarm since since,
// with the memory used and allowed, and when it cleared.
func memoryAlarmLog(t *testing.T, s faultStack, since time.Time) string {
	var out []string
	for i := range s.cfg.Nodes {
		logs, _ := harness.Docker(context.Background(), nil, "logs", "--since", since.Format(time.RFC3339Nano), s.node(i))
		sets, clears := 0, 0
		used := ""
		for _, l := range strings.Split(logs, "\n") {
			switch {
			case strings.Contains(l, "vm_memory_high_watermark set"):
				sets++
				if used == "" {
					used = memoryFigures(l)
				}
			case strings.Contains(l, "vm_memory_high_watermark clear"):
				clears++
			}
		}
		if sets > 0 {
			out = append(out, fmt.Sprintf("node %d's alarm rose %d time(s) (first at %s) and cleared %d time(s)", i, sets, used, clears))
		}
	}
	return strings.Join(out, "; ")
}

// memoryFigures turns a watermark log line's "Memory used:N allowed:M"
// into "N MB used of M allowed".
func memoryFigures(line string) string {
	var used, allowed int64
	if i := strings.Index(line, "Memory used:"); i >= 0 {
		if _, err := fmt.Sscanf(line[i:], "Memory used:%d allowed:%d", &used, &allowed); err == nil {
			return fmt.Sprintf("%d MB used of %d MB allowed", used>>20, allowed>>20)
		}
	}
	return "an unread figure"
}

// memoryAlarms lists the memory alarms any node sees, or "".
func memoryAlarms(s faultStack) string {
	out, _ := rabbitmqctl(s.node(0), 10*time.Second, "eval", "[N || {{resource_limit, memory, N}, _} <- rabbit_alarm:get_alarms()].")
	if out == "[]" {
		return ""
	}
	return out
}

// publisherBlockedSince reports whether the load's publisher was told it
// is blocked after since, waiting up to wait for the notice.
func publisherBlockedSince(s faultStack, since time.Time, wait time.Duration) bool {
	for start := time.Now(); time.Since(start) < wait; time.Sleep(100 * time.Millisecond) {
		for _, e := range s.load.Pub.Events() {
			if e.At.After(since) && strings.HasPrefix(e.What, "blocked") {
				return true
			}
		}
	}
	return false
}

// nodeStart is a container's restart count, start time and OOM flag:
// it changes when the container restarts.
func nodeStart(t *testing.T, name string) string {
	return harness.MustDocker(t, "inspect", "-f", "{{.RestartCount}} {{.State.StartedAt}} oom={{.State.OOMKilled}}", name)
}

// nodeStarts is nodeStart of every node.
func nodeStarts(t *testing.T, s faultStack) string {
	var out []string
	for i := range s.cfg.Nodes {
		out = append(out, nodeStart(t, s.node(i)))
	}
	return strings.Join(out, "; ")
}

// filler publishes persistent fillBody messages with confirms, at most
// fillWindow unconfirmed, until its connection is blocked: then it stops
// publishing and keeps the connection for its confirms until stopped.
type filler struct {
	blocked, stopping, done chan struct{}
	// reason is the broker's, when blocked: "low on memory", "low on disk".
	reason    string
	mu        sync.Mutex
	confirmed []string
}

func startFiller(url, queue string) *filler {
	f := &filler{blocked: make(chan struct{}), stopping: make(chan struct{}), done: make(chan struct{})}
	go f.run(url, queue)
	return f
}

func (f *filler) run(url, queue string) {
	defer close(f.done)
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer func() { _ = conn.CloseDeadline(time.Now().Add(time.Second)) }()
	notices := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return
	}
	if err := ch.Confirm(false); err != nil {
		return
	}
	type pending struct {
		id string
		dc *amqp.DeferredConfirmation
	}
	var window []pending
	// settle counts the confirms that came, waiting up to wait for each.
	settle := func(wait time.Duration) {
		for len(window) > 0 {
			select {
			case <-window[0].dc.Done():
			case <-time.After(wait):
				return
			}
			if window[0].dc.Acked() {
				f.mu.Lock()
				f.confirmed = append(f.confirmed, window[0].id)
				f.mu.Unlock()
			}
			window = window[1:]
		}
	}
	body := make([]byte, fillBody)
	tick := time.NewTicker(time.Second * fillBody / fillRate)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case b := <-notices:
			if b.Active {
				f.reason = b.Reason
				close(f.blocked)
				// Blocked publishes are confirmed once the alarm clears.
				<-f.stopping
				settle(30 * time.Second)
				return
			}
		case <-f.stopping:
			settle(30 * time.Second)
			return
		case <-tick.C:
		}
		settle(0)
		if len(window) >= fillWindow {
			continue
		}
		id := fmt.Sprintf("%s-%d", queue, n)
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: id, Body: body})
		if err != nil {
			return
		}
		window = append(window, pending{id, dc})
	}
}

// stop waits for the outstanding confirms and returns the confirmed IDs.
func (f *filler) stop() []string {
	close(f.stopping)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.confirmed...)
}

func (f *filler) confirmedBytes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.confirmed)) * fillBody
}
