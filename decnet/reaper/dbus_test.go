package reaper

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"
)

// This machine has no systemd, so the transient-unit path is verified
// against a private dbus-daemon on which the test plays systemd's manager
// (org.freedesktop.systemd1 at /org/freedesktop/systemd1): the reaper talks
// to it through the real go-systemd connection, so the D-Bus method, its
// signature and the marshalled properties are the ones systemd receives.
// The fake then does what systemd would: runs ExecStart in its own session
// and reports the job done.

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// privateBus starts a dbus-daemon on a socket in a temporary directory and
// returns its address; the daemon is stopped at cleanup.
func privateBus(t *testing.T) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon not installed: cannot verify the D-Bus transient-unit call")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, filepath.Join(dir, "bus")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// stderr stays on /dev/null: in a container the daemon warns that it
	// cannot raise its fd limit.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr, err := bufio.NewReader(out).ReadString('\n') // printed once it listens
	if err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	return strings.TrimSpace(addr)
}

func dialBus(addr string) (*godbus.Conn, error) {
	c, err := godbus.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Auth(nil); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Hello(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

type busProperty struct {
	Name  string
	Value godbus.Variant
}

type busAux struct {
	Name  string
	Props []busProperty
}

type execStartEntry struct {
	Path             string
	Args             []string
	UncleanIsFailure bool
}

// fakeManager is the org.freedesktop.systemd1.Manager the test exports.
type fakeManager struct {
	conn *godbus.Conn

	mu    sync.Mutex
	name  string
	mode  string
	props []busProperty
	aux   []busAux
	procs []*exec.Cmd
	err   error
}

// StartTransientUnit has systemd's signature ssa(sv)a(sa(sv)) → o.
func (m *fakeManager) StartTransientUnit(name, mode string, props []busProperty, aux []busAux) (godbus.ObjectPath, *godbus.Error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.name, m.mode, m.props, m.aux = name, mode, props, aux
	job := godbus.ObjectPath("/org/freedesktop/systemd1/job/7")
	result := "done"
	for _, p := range props {
		if p.Name != "ExecStart" {
			continue
		}
		var es []execStartEntry
		if err := godbus.Store([]any{p.Value.Value()}, &es); err != nil || len(es) != 1 {
			m.err = fmt.Errorf("ExecStart %v: %v", p.Value, err)
			result = "failed"
			break
		}
		cmd := exec.Command(es[0].Path, es[0].Args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			m.err = err
			result = "failed"
			break
		}
		m.procs = append(m.procs, cmd)
	}
	// systemd reports the job's end with a JobRemoved signal.
	if err := m.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved",
		uint32(7), job, name, result); err != nil {
		m.err = err
	}
	return job, nil
}

func (m *fakeManager) wait() {
	m.mu.Lock()
	procs := m.procs
	m.mu.Unlock()
	for _, p := range procs {
		_ = p.Wait()
	}
}

// systemdBus starts a private bus and connects to it as systemd's manager
// (it owns org.freedesktop.systemd1); the connection is closed at cleanup.
func systemdBus(t *testing.T) (addr string, sysd *godbus.Conn) {
	t.Helper()
	addr = privateBus(t)
	sysd, err := dialBus(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sysd.Close() })
	if reply, err := sysd.RequestName("org.freedesktop.systemd1", godbus.NameFlagDoNotQueue); err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.systemd1: %v %v", reply, err)
	}
	return addr, sysd
}

// managerConn exports mgr as systemd's manager on sysd and returns a
// go-systemd connection to it over the bus at addr. Close it when done.
func managerConn(t *testing.T, addr string, sysd *godbus.Conn, mgr any) *sddbus.Conn {
	t.Helper()
	if err := sysd.Export(mgr, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	conn, err := sddbus.NewConnection(func() (*godbus.Conn, error) { return dialBus(addr) })
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestSpawnOverDBus(t *testing.T) {
	addr, sysd := systemdBus(t)
	mgr := &fakeManager{conn: sysd}
	defer mgr.wait()
	conn := managerConn(t, addr, sysd, mgr)
	defer conn.Close()

	_, root, outside, spawnDir := installWork(t)
	bin := buildBinary(t, "../../cmd/decnet-agent", "decnet-agent")
	sp, err := Spawn(t.Context(), testPlan(root), SpawnOptions{Dir: spawnDir, Executable: bin, Starter: conn, PID: 4242})
	if err != nil {
		t.Fatalf("Spawn over D-Bus: %v (manager: %v)", err, mgr.err)
	}
	mgr.mu.Lock()
	name, mode, props, aux, merr := mgr.name, mgr.mode, mgr.props, mgr.aux, mgr.err
	mgr.mu.Unlock()
	if merr != nil {
		t.Fatal(merr)
	}
	if name != "decnet-reaper-4242.service" || sp.Unit != name || mode != "fail" || len(aux) != 0 {
		t.Errorf("unit %q (reported %q) mode %q aux %v", name, sp.Unit, mode, aux)
	}
	var names []string
	got := map[string]any{}
	for _, p := range props {
		names = append(names, p.Name)
		got[p.Name] = p.Value.Value()
	}
	if strings.Join(names, ",") != "Description,ExecStart,CollectMode" {
		t.Errorf("properties %v, want exactly Description, ExecStart, CollectMode", names)
	}
	if got["Description"] != UnitDescription || got["CollectMode"] != "inactive-or-failed" {
		t.Errorf("Description %v, CollectMode %v", got["Description"], got["CollectMode"])
	}
	var es []execStartEntry
	if err := godbus.Store([]any{got["ExecStart"]}, &es); err != nil {
		t.Fatal(err)
	}
	want := execStartEntry{Path: sp.Executable, Args: sp.Command, UncleanIsFailure: false}
	if len(es) != 1 || es[0].Path != want.Path || strings.Join(es[0].Args, " ") != strings.Join(want.Args, " ") || es[0].UncleanIsFailure {
		t.Errorf("ExecStart %+v, want %+v", es, want)
	}
	// The "unit" ran the real decnet-agent reap to completion.
	waitEmpty(t, spawnDir, 30*time.Second)
	checkWiped(t, root, outside)
}

// unitManager is a systemd manager with a few units, recording the calls of
// the UnitManager methods.
type unitManager struct {
	conn   *godbus.Conn
	loaded []string // loaded units
	files  []string // unit files (under /etc/systemd/system)

	mu    sync.Mutex
	calls []string
}

func (m *unitManager) record(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, s)
}

func (m *unitManager) ListUnitsByPatterns(states, patterns []string) ([]sddbus.UnitStatus, *godbus.Error) {
	m.record("ListUnitsByPatterns " + strings.Join(patterns, ","))
	var out []sddbus.UnitStatus
	for _, n := range m.loaded {
		if matchAny(patterns, n) {
			out = append(out, sddbus.UnitStatus{Name: n, LoadState: "loaded", ActiveState: "active", SubState: "running",
				Path: godbus.ObjectPath("/org/freedesktop/systemd1/unit/x"), JobPath: "/"})
		}
	}
	return out, nil
}

func (m *unitManager) ListUnitFilesByPatterns(states, patterns []string) ([]sddbus.UnitFile, *godbus.Error) {
	m.record("ListUnitFilesByPatterns " + strings.Join(patterns, ","))
	var out []sddbus.UnitFile
	for _, n := range m.files {
		if matchAny(patterns, n) {
			out = append(out, sddbus.UnitFile{Path: "/etc/systemd/system/" + n, Type: "enabled"})
		}
	}
	return out, nil
}

func (m *unitManager) StopUnit(name, mode string) (godbus.ObjectPath, *godbus.Error) {
	m.record("StopUnit " + name + " " + mode)
	job := godbus.ObjectPath("/org/freedesktop/systemd1/job/" + fmt.Sprint(len(name)))
	if err := m.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved",
		uint32(len(name)), job, name, "done"); err != nil {
		return "", godbus.MakeFailedError(err)
	}
	return job, nil
}

func (m *unitManager) DisableUnitFiles(files []string, runtime bool) ([]sddbus.DisableUnitFileChange, *godbus.Error) {
	m.record(fmt.Sprintf("DisableUnitFiles %s %v", strings.Join(files, ","), runtime))
	return []sddbus.DisableUnitFileChange{{Type: "unlink", Filename: "/etc/systemd/system/multi-user.target.wants/" + files[0]}}, nil
}

func (m *unitManager) Reload() *godbus.Error {
	m.record("Reload")
	return nil
}

// TestSystemdUnitsOverDBus runs the units steps of a plan through the real
// SystemdUnits (go-systemd over D-Bus) against the private bus.
func TestSystemdUnitsOverDBus(t *testing.T) {
	addr, sysd := systemdBus(t)
	mgr := &unitManager{conn: sysd,
		loaded: []string{"decnet-agent.service", "decnet-reaper-9.service", "sshd.service"},
		files:  []string{"decnet-agent.service", "decnet-updater.timer", "sshd.service"},
	}
	conn := managerConn(t, addr, sysd, mgr)
	defer conn.Close()

	p := Plan{Units: []string{"decnet-*"}}
	res := Execute(t.Context(), p, Deps{Units: systemdUnitsFrom(conn)})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	mgr.mu.Lock()
	calls := slices.Clone(mgr.calls)
	mgr.mu.Unlock()
	want := []string{
		"ListUnitsByPatterns decnet-*",
		"ListUnitFilesByPatterns decnet-*",
		"StopUnit decnet-agent.service replace",
		"StopUnit decnet-updater.timer replace",
		"DisableUnitFiles decnet-agent.service false",
		"DisableUnitFiles decnet-updater.timer false",
		"Reload",
	}
	if d := cmp.Diff(want, calls); d != "" {
		t.Errorf("systemd calls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"unit:decnet-agent.service", "unit:decnet-updater.timer"}, res.Removed); d != "" {
		t.Errorf("removed (-want +got):\n%s", d)
	}
}
