package reaper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/decnet-swarm/sdk/decnet"
)

// fakeStarter records the transient unit it is asked for and answers the
// job with result (or fails the call with err).
type fakeStarter struct {
	name, mode string
	props      []sddbus.Property
	calls      int
	result     string
	err        error
}

func (f *fakeStarter) StartTransientUnitContext(_ context.Context, name, mode string, props []sddbus.Property, ch chan<- string) (int, error) {
	f.calls++
	f.name, f.mode, f.props = name, mode, props
	if f.err != nil {
		return 0, f.err
	}
	ch <- f.result
	return 1, nil
}

func testPlan(root string) Plan {
	p := DefaultPlan()
	p.Root, p.Projects, p.Units, p.StartDelay = root, nil, nil, 0
	return p
}

func TestSpawnTransientUnit(t *testing.T) {
	spawnDir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeStarter{result: "done"}
	plan := testPlan(t.TempDir())
	sp, err := Spawn(t.Context(), plan, SpawnOptions{Dir: spawnDir, Executable: exe, Starter: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sp.Dir) })

	if want := fmt.Sprintf("decnet-reaper-%d.service", os.Getpid()); st.name != want || sp.Unit != want {
		t.Errorf("unit %q (reported %q), want %q", st.name, sp.Unit, want)
	}
	if st.mode != "fail" {
		t.Errorf("job mode %q, want fail", st.mode)
	}
	cmd := []string{filepath.Join(sp.Dir, CopyName), "reap", "--plan", filepath.Join(sp.Dir, PlanFileName)}
	want := []sddbus.Property{
		{Name: "Description", Value: godbus.MakeVariant(UnitDescription)},
		sddbus.PropExecStart(cmd, false),
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
	}
	if !reflect.DeepEqual(st.props, want) {
		t.Errorf("properties\n got %#v\nwant %#v", st.props, want)
	}
	// ExecStart is the copy with the plan, and an unclean exit is no failure.
	execStart := st.props[1].Value.Value()
	if s := fmt.Sprint(execStart); !strings.Contains(s, cmd[0]) || !strings.Contains(s, "false") {
		t.Errorf("ExecStart %v", s)
	}
	for _, p := range st.props {
		if p.Name == "Type" || p.Name == "PIDs" {
			t.Errorf("unexpected property %s: the reaper is a plain service, not oneshot or a scope", p.Name)
		}
	}

	// The directory, the copy and the plan.
	if filepath.Dir(sp.Dir) != spawnDir || !strings.HasPrefix(filepath.Base(sp.Dir), ReaperUnitPrefix) {
		t.Errorf("reaper directory %s not a decnet-reaper-* in %s", sp.Dir, spawnDir)
	}
	checkMode(t, sp.Dir, 0o700)
	checkMode(t, sp.Executable, 0o700)
	checkMode(t, sp.PlanFile, 0o600)
	a, _ := os.ReadFile(exe)
	b, _ := os.ReadFile(sp.Executable)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("the copy differs from the executable")
	}
	got, err := ReadPlan(sp.PlanFile)
	if err != nil {
		t.Fatal(err)
	}
	plan.Self = sp.Dir
	if d := cmp.Diff(plan, got); d != "" {
		t.Errorf("plan file (-want +got):\n%s", d)
	}
}

func checkMode(t *testing.T, p string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != want {
		t.Errorf("%s mode %o, want %o", p, m, want)
	}
}

func TestSpawnFailuresLeaveNothing(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		starter *fakeStarter
		class   error
	}{
		"unit exists": {&fakeStarter{err: godbus.Error{Name: "org.freedesktop.systemd1.UnitExists"}}, decnet.ErrConflict},
		"job failed":  {&fakeStarter{result: "failed"}, nil},
		"bus error":   {&fakeStarter{err: godbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}}, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Spawn(t.Context(), testPlan(t.TempDir()), SpawnOptions{Dir: dir, Executable: exe, Starter: c.starter})
			if err == nil || (c.class != nil && !errors.Is(err, c.class)) {
				t.Fatalf("Spawn: %v, want an error of class %v", err, c.class)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("a failed spawn left %v", entries)
			}
		})
	}
}

func TestSpawnRefusesBadInput(t *testing.T) {
	root := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	optDir := filepath.Join(root, "opt")
	if err := os.MkdirAll(optDir, 0o700); err != nil {
		t.Fatal(err)
	}
	bad := testPlan(root)
	bad.Delete = append(bad.Delete, "/usr")
	st := &fakeStarter{result: "done"}
	for name, c := range map[string]struct {
		plan Plan
		dir  string
	}{
		// /opt/decnet* matches the new directory /opt/decnet-reaper-*.
		"dir deleted by the plan": {testPlan(root), optDir},
		"relative dir":            {testPlan(root), "var/tmp"},
		"invalid plan":            {bad, t.TempDir()},
	} {
		_, err := Spawn(t.Context(), c.plan, SpawnOptions{Dir: c.dir, Executable: exe, Starter: st})
		if !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if entries, _ := os.ReadDir(optDir); len(entries) != 0 {
		t.Errorf("a refused spawn left %v", entries)
	}
	if st.calls != 0 {
		t.Errorf("a refused spawn started %d units", st.calls)
	}
}

func TestSelfDestructerSpawns(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st := &fakeStarter{result: "done"}
	plan := testPlan(t.TempDir())
	sd := &SelfDestructer{Plan: &plan, Options: SpawnOptions{Dir: dir, Executable: exe, Starter: st}}
	if err := sd.SelfDestruct(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st.calls != 1 {
		t.Fatalf("%d units started", st.calls)
	}
	// A second call while the unit exists is not an error and leaves no copy.
	st.err = godbus.Error{Name: "org.freedesktop.systemd1.UnitExists"}
	if err := sd.SelfDestruct(t.Context()); err != nil {
		t.Fatalf("second SelfDestruct: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("reaper directories: %v, want the first one only", entries)
	}
	// An invalid plan spawns nothing.
	bad := testPlan(t.TempDir())
	bad.Delete = []string{"/"}
	sd.Plan = &bad
	if err := sd.SelfDestruct(t.Context()); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("invalid plan: %v", err)
	}
	if st.calls != 2 {
		t.Fatalf("an invalid plan reached the starter")
	}
}

// TestSpawnDetachedOutlivesParent: a parent process spawns a detached reaper
// and exits at once; the reaper, in its own session, then runs the whole
// plan in a temporary root, deletes its own copy and reports.
func TestSpawnDetachedOutlivesParent(t *testing.T) {
	work := t.TempDir()
	root := filepath.Join(work, "root")
	outside := filepath.Join(work, "outside")
	writeTree(t, outside, map[string]string{"victim": "must survive"})
	installTree(t, root, outside)
	before := snapshot(t, root)
	spawnDir := filepath.Join(work, "spawn")
	if err := os.Mkdir(spawnDir, 0o700); err != nil {
		t.Fatal(err)
	}
	plan := testPlan(root)
	plan.StartDelay = decnet.Duration(time.Second) // the test reaper waits for the gate instead
	planFile := filepath.Join(work, "plan-in.json")
	data, _ := json.Marshal(plan)
	if err := os.WriteFile(planFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(work, "gate")
	result := filepath.Join(work, "result.json")

	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), envChild+"=spawner", envPlan+"="+planFile,
		envSpawnDir+"="+spawnDir, envGate+"="+gate, envResult+"="+result)
	parent.Stderr = os.Stderr
	out, err := parent.Output() // returns once the parent has exited
	if err != nil {
		t.Fatalf("parent: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("parent printed %q", out)
	}
	// The parent is gone; the reaper is alive, waiting for the gate, and
	// leads its own session.
	if sid := sessionID(pid); sid != pid {
		t.Fatalf("reaper %d session %d, want a session of its own", pid, sid)
	}
	if d := cmp.Diff(before, snapshot(t, root)); d != "" {
		t.Fatalf("the reaper acted before its delay ended:\n%s", d)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := waitForFile(t.Context(), result, time.Minute); err != nil {
		t.Fatal(err)
	}
	var res resultFile
	data, err = os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Error != "" || len(res.Failed) != 0 {
		t.Fatalf("reaper failed: %+v", res)
	}
	if d := cmp.Diff([]string{StepWait, StepRemoveContainers, StepStopUnits, StepDisableUnits, StepDeletePaths, StepDaemonReload, StepDeleteSelf}, res.Done); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if res.SID != pid {
		t.Errorf("reaper reported session %d", res.SID)
	}
	for _, g := range []string{"opt/decnet", "etc/decnet", "var/lib/decnet/state.json", "usr/local/bin/decnet-agent"} {
		if _, err := os.Lstat(filepath.Join(root, g)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived", g)
		}
	}
	for _, k := range []string{"var/log/decnet/agent.log", "opt/other/keep.txt"} {
		if _, err := os.Stat(filepath.Join(root, k)); err != nil {
			t.Errorf("%s was deleted", k)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "must survive" {
		t.Error("outside Root was touched")
	}
	if entries, _ := os.ReadDir(spawnDir); len(entries) != 0 {
		t.Errorf("the reaper's copy survived: %v", entries)
	}
}

func TestSpawnRefusesNoexecDir(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOEXEC, "size=64m"); err != nil {
		t.Skipf("cannot mount a noexec tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeStarter{result: "done"}
	_, err = Spawn(t.Context(), testPlan(t.TempDir()), SpawnOptions{Dir: dir, Executable: exe, Starter: st})
	if !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("Spawn into a noexec directory: %v, want ErrInvalid", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || st.calls != 0 {
		t.Fatalf("a refused spawn left %v and started %d units", entries, st.calls)
	}
}
