package reaper

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/decnet-swarm/sdk/decnet"
)

// snapshot lists every entry under dir without following symlinks:
// relative path → "dir", "file:<content>" or "link:<target>".
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link:" + target
		case d.IsDir():
			out[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file:" + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(strings.TrimPrefix(content, "->"), p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// installTree mirrors a real install under root, plus an unrelated
// directory and a symlink to / and symlinks into outside.
func installTree(t *testing.T, root, outside string) {
	writeTree(t, root, map[string]string{
		"opt/decnet/bin/decnet-agent":             "agent",
		"opt/decnet-extra/data":                   "extra",
		"opt/decnet-extra/escape":                 "->" + outside, // must not be followed
		"opt/decnet-link":                         "->/",
		"opt/other/keep.txt":                      "other",
		"etc/decnet/agent/tls.key":                "KEY",
		"etc/decnet/agent/ca.crt":                 "CA",
		"etc/hostname":                            "host",
		"var/lib/decnet/state.json":               "{}",
		"var/lib/decnet/outside-link":             "->" + outside,
		"var/lib/other/x":                         "x",
		"usr/local/bin/decnet-agent":              "bin",
		"usr/local/bin/other-tool":                "tool",
		"etc/systemd/system/decnet-agent.service": "[Unit]",
		"etc/systemd/system/decnet-agent.timer":   "[Timer]",
		"etc/systemd/system/sshd.service":         "[Unit]",
		"var/log/decnet/agent.log":                "log",
	})
}

func minus(snap map[string]string, gone ...string) map[string]string {
	out := map[string]string{}
	for k, v := range snap {
		drop := false
		for _, g := range gone {
			if k == g || strings.HasPrefix(k, g+"/") {
				drop = true
			}
		}
		if !drop {
			out[k] = v
		}
	}
	return out
}

func TestExecuteDefaultPlanTempTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"victim": "must survive", "decnet-x": "must survive"})
	installTree(t, root, outside)
	before, outsideBefore := snapshot(t, root), snapshot(t, outside)
	rootBefore, err := os.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}

	p := DefaultPlan()
	p.Root = root
	p.Projects, p.Units = nil, nil // this test is about paths only
	p.StartDelay = 0
	res := Execute(t.Context(), p, Deps{})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}

	gone := []string{
		"opt/decnet", "opt/decnet-extra", "opt/decnet-link", "etc/decnet",
		"var/lib/decnet/state.json", "var/lib/decnet/outside-link",
		"usr/local/bin/decnet-agent",
		"etc/systemd/system/decnet-agent.service", "etc/systemd/system/decnet-agent.timer",
	}
	if d := cmp.Diff(minus(before, gone...), snapshot(t, root)); d != "" {
		t.Fatalf("tree after Execute (-want +got):\n%s", d)
	}
	if d := cmp.Diff(outsideBefore, snapshot(t, outside)); d != "" {
		t.Fatalf("a directory outside Root changed (-before +after):\n%s", d)
	}
	rootAfter, err := os.ReadDir("/")
	if err != nil || len(rootAfter) != len(rootBefore) {
		t.Fatalf("/ changed: %d entries before, %d after (%v)", len(rootBefore), len(rootAfter), err)
	}
	var removed []string
	for _, g := range gone {
		removed = append(removed, "path:/"+g)
	}
	slices.Sort(removed)
	got := slices.Clone(res.Removed)
	slices.Sort(got)
	if d := cmp.Diff(removed, got); d != "" {
		t.Errorf("Result.Removed (-want +got):\n%s", d)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "var/log/decnet/agent.log")); string(b) != "log" {
		t.Error("the kept log was touched")
	}
}

// A symlinked directory on the way to a deleted path that points outside
// Root is not traversed: the glob matches nothing through it.
func TestExecuteDoesNotTraverseSymlinkedParents(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"bin/decnet-agent": "outside binary", "etc/decnet/x": "outside conf"})
	writeTree(t, root, map[string]string{
		"usr/local/bin": "->" + filepath.Join(outside, "bin"),
		"etc":           "->" + filepath.Join(outside, "etc"),
	})
	outsideBefore := snapshot(t, outside)
	p := DefaultPlan()
	p.Root, p.Projects, p.Units, p.StartDelay = root, nil, nil, 0
	res := Execute(t.Context(), p, Deps{})
	if d := cmp.Diff(outsideBefore, snapshot(t, outside)); d != "" {
		t.Fatalf("Execute reached outside Root through a symlink (-before +after):\n%s", d)
	}
	if len(res.Removed) != 0 {
		t.Fatalf("removed %v", res.Removed)
	}
	// The patterns that could not be followed are reported, not silently
	// skipped.
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Item)
	}
	want := []string{"/etc/decnet", "/usr/local/bin/decnet*", "/etc/systemd/system/decnet-*.service", "/etc/systemd/system/decnet-*.timer"}
	if d := cmp.Diff(want, failed); d != "" {
		t.Errorf("failures (-want +got):\n%s", d)
	}
}

func TestExecuteInvalidPlanDoesNothing(t *testing.T) {
	root := t.TempDir()
	installTree(t, root, t.TempDir())
	before := snapshot(t, root)
	p := DefaultPlan()
	p.Root = root
	p.Delete = append(p.Delete, "/etc")
	calls := &callLog{}
	res := Execute(t.Context(), p, Deps{Containers: &fakeEngine{log: calls}, Units: &fakeUnits{log: calls}, Sleep: calls.sleep})
	if len(res.Failed) != 1 || res.Failed[0].Step != StepValidate || !errors.Is(res.Failed[0].Err, decnet.ErrInvalid) {
		t.Fatalf("result %+v, want one validate failure", res)
	}
	if len(res.Done) != 0 || len(calls.get()) != 0 {
		t.Fatalf("an invalid plan did something: done %v, calls %v", res.Done, calls.get())
	}
	if d := cmp.Diff(before, snapshot(t, root)); d != "" {
		t.Fatalf("an invalid plan changed the tree:\n%s", d)
	}
}

type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (c *callLog) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s)
}

func (c *callLog) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *callLog) sleep(_ context.Context, d time.Duration) error {
	c.add("sleep " + d.String())
	return nil
}

type fakeEngine struct {
	log         *callLog
	projects    []string
	projectsErr error
	removeErr   map[string]error
}

func (f *fakeEngine) Projects(context.Context) ([]string, error) {
	f.log.add("projects")
	return f.projects, f.projectsErr
}

func (f *fakeEngine) RemoveProject(_ context.Context, p string) error {
	f.log.add("remove " + p)
	return f.removeErr[p]
}

type fakeUnits struct {
	log     *callLog
	units   []Unit
	stopErr map[string]error
	root    string // when set, ListUnits/Reload record whether the unit file still exists
}

func (f *fakeUnits) ListUnits(_ context.Context, patterns []string) ([]Unit, error) {
	f.log.add("list " + strings.Join(patterns, ","))
	return f.units, nil
}

func (f *fakeUnits) StopUnit(_ context.Context, n string) error {
	f.log.add("stop " + n)
	return f.stopErr[n]
}

func (f *fakeUnits) DisableUnit(_ context.Context, n string) error {
	f.log.add("disable " + n)
	return nil
}

func (f *fakeUnits) Reload(context.Context) error {
	state := "files-present"
	if _, err := os.Lstat(filepath.Join(f.root, "etc/systemd/system/decnet-agent.service")); errors.Is(err, fs.ErrNotExist) {
		state = "files-gone"
	}
	f.log.add("reload " + state)
	return nil
}

func TestExecuteOrderAndContinuation(t *testing.T) {
	root := t.TempDir()
	installTree(t, root, t.TempDir())
	self := filepath.Join(t.TempDir(), "decnet-reaper-test")
	if err := os.Mkdir(self, 0o700); err != nil {
		t.Fatal(err)
	}
	calls := &callLog{}
	eng := &fakeEngine{log: calls,
		projects:  []string{"decnet", "decnet-extra", "other", "decnetx"},
		removeErr: map[string]error{"decnet-extra": decnet.ErrUnavailable}}
	units := &fakeUnits{log: calls, root: root,
		units: []Unit{
			{Name: "decnet-agent.service", HasFile: true},
			{Name: "decnet-reaper-42.service"},
			{Name: "decnet-updater.timer", HasFile: true},
			{Name: "decnet-run-1.scope"},
		},
		stopErr: map[string]error{"decnet-updater.timer": errors.New("boom")},
	}
	p := DefaultPlan()
	p.Root, p.Self = root, self
	res := Execute(t.Context(), p, Deps{Containers: eng, Units: units, Sleep: calls.sleep})

	want := []string{
		"sleep 3s",
		"projects", "remove decnet", "remove decnet-extra",
		"list decnet-*",
		"stop decnet-agent.service", "stop decnet-updater.timer", "stop decnet-run-1.scope",
		"disable decnet-agent.service", "disable decnet-updater.timer",
		"reload files-gone",
	}
	if d := cmp.Diff(want, calls.get()); d != "" {
		t.Fatalf("calls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{StepWait, StepDisableUnits, StepDeletePaths, StepDaemonReload, StepDeleteSelf}, res.Done); d != "" {
		t.Errorf("done steps (-want +got):\n%s", d)
	}
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Step+" "+f.Item)
	}
	if d := cmp.Diff([]string{StepRemoveContainers + " decnet-extra", StepStopUnits + " decnet-updater.timer"}, failed); d != "" {
		t.Errorf("failures (-want +got):\n%s", d)
	}
	if !errors.Is(res.Err(), decnet.ErrUnavailable) {
		t.Errorf("Result.Err() = %v, want it to wrap the engine's ErrUnavailable", res.Err())
	}
	if _, err := os.Stat(self); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the reaper's own directory survived: %v", err)
	}
}

func TestExecuteMissingDepsFailStepsAndContinue(t *testing.T) {
	root := t.TempDir()
	installTree(t, root, t.TempDir())
	p := DefaultPlan()
	p.Root, p.StartDelay = root, 0
	res := Execute(t.Context(), p, Deps{})
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Step)
		if !errors.Is(f.Err, decnet.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", f.Step, f.Err)
		}
	}
	if d := cmp.Diff([]string{StepRemoveContainers, StepStopUnits, StepDisableUnits, StepDaemonReload}, failed); d != "" {
		t.Errorf("failures (-want +got):\n%s", d)
	}
	if !slices.Contains(res.Done, StepDeletePaths) {
		t.Errorf("paths were not deleted after the engine step failed: %+v", res)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/decnet")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("etc/decnet survived")
	}
}

func TestExecuteWaitHonoursContext(t *testing.T) {
	p := Plan{StartDelay: decnet.Duration(time.Hour)}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := Execute(ctx, p, Deps{})
	if len(res.Failed) != 1 || res.Failed[0].Step != StepWait || !errors.Is(res.Failed[0].Err, context.Canceled) {
		t.Fatalf("result %+v, want the wait step cancelled", res)
	}
}

func TestRunPlanFileRefusesBadPlans(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	installTree(t, root, t.TempDir())
	before := snapshot(t, root)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]string{
		"unknown field": write("a.json", `{"root":"`+root+`","delete":["/etc/decnet"],"rm":true}`),
		"malformed":     write("b.json", `{"root":`),
		"invalid plan":  write("c.json", `{"root":"`+root+`","delete":["/etc"]}`),
		"foreign self":  write("d.json", `{"root":"`+root+`","delete":["/etc/decnet"],"self":"/var/tmp/decnet-reaper-zzz"}`),
	}
	for name, file := range cases {
		if _, err := RunPlanFile(t.Context(), file, Deps{}); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := RunPlanFile(t.Context(), filepath.Join(dir, "absent.json"), Deps{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent plan: %v", err)
	}
	if d := cmp.Diff(before, snapshot(t, root)); d != "" {
		t.Fatalf("a refused plan changed the tree:\n%s", d)
	}
}

// A symlinked directory on the way to a deleted path is not traversed even
// when it stays inside Root (in production Root is /, so every symlink does):
// /var/lib/decnet pointing at the kept /var/log/decnet must not make
// "/var/lib/decnet/*" delete the logs, and /opt pointing elsewhere must not
// make "/opt/decnet*" delete what lies there.
func TestExecuteDoesNotTraverseSymlinkedParentsInsideRoot(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"var/log/decnet/agent.log":   "log",
		"var/lib/decnet":             "->../log/decnet",
		"srv/decnet-data/precious":   "data",
		"opt":                        "->srv",
		"etc/decnet/agent/tls.key":   "KEY",
		"usr/local/bin/decnet-agent": "bin",
	})
	p := DefaultPlan()
	p.Root, p.Projects, p.Units, p.StartDelay = root, nil, nil, 0
	res := Execute(t.Context(), p, Deps{})
	for _, k := range []string{"var/log/decnet/agent.log", "srv/decnet-data/precious"} {
		if _, err := os.Lstat(filepath.Join(root, k)); err != nil {
			t.Errorf("%s was deleted through a symlinked parent: %v", k, err)
		}
	}
	for _, g := range []string{"etc/decnet", "usr/local/bin/decnet-agent"} {
		if _, err := os.Lstat(filepath.Join(root, g)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived", g)
		}
	}
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Item)
		if !errors.Is(f.Err, decnet.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", f.Item, f.Err)
		}
	}
	if d := cmp.Diff([]string{"/opt/decnet*", "/var/lib/decnet/*"}, failed); d != "" {
		t.Errorf("failures (-want +got):\n%s", d)
	}
}

// A reaper living in one of the units it stops (a detached reaper in the
// agent's unit) stops that unit last, after every other step: stopping it
// earlier would kill the reaper before it deleted anything.
func TestExecuteStopsOwnUnitLast(t *testing.T) {
	root := t.TempDir()
	installTree(t, root, t.TempDir())
	self := filepath.Join(t.TempDir(), "decnet-reaper-own")
	if err := os.Mkdir(self, 0o700); err != nil {
		t.Fatal(err)
	}
	calls := &callLog{}
	units := &fakeUnits{log: calls, root: root, units: []Unit{
		{Name: "decnet-agent.service", HasFile: true},
		{Name: "decnet-updater.timer", HasFile: true},
	}}
	p := DefaultPlan()
	p.Root, p.Self, p.Projects, p.StartDelay = root, self, nil, 0
	res := Execute(t.Context(), p, Deps{Units: units, OwnUnit: func() string { return "decnet-agent.service" }})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"list decnet-*",
		"stop decnet-updater.timer",
		"disable decnet-agent.service", "disable decnet-updater.timer",
		"reload files-gone",
		"stop decnet-agent.service",
	}
	if d := cmp.Diff(want, calls.get()); d != "" {
		t.Fatalf("calls (-want +got):\n%s", d)
	}
	wantDone := []string{StepWait, StepRemoveContainers, StepStopUnits, StepDisableUnits, StepDeletePaths,
		StepDaemonReload, StepDeleteSelf, StepStopOwnUnit}
	if d := cmp.Diff(wantDone, res.Done); d != "" {
		t.Errorf("done steps (-want +got):\n%s", d)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/decnet")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("etc/decnet survived")
	}
}

func TestUnitOfCgroup(t *testing.T) {
	for text, want := range map[string]string{
		"0::/system.slice/decnet-agent.service\n":                               "decnet-agent.service",
		"0::/system.slice/decnet-agent.service/payload\n":                       "decnet-agent.service",
		"0::/user.slice/user-0.slice/session-3.scope\n":                         "session-3.scope",
		"12:pids:/x\n1:name=systemd:/system.slice/decnet-agent.service\n0::/\n": "decnet-agent.service",
		"0::/\n":             "",
		"0::/system.slice\n": "",
		"":                   "",
		"garbage\n":          "",
		"3:cpu:/system.slice/decnet-agent.service": "",
	} {
		if got := unitOfCgroup(text); got != want {
			t.Errorf("unitOfCgroup(%q) = %q, want %q", text, got, want)
		}
	}
}
