package reaper

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
)

// buildBinary builds the main package pkg (a path relative to this
// directory) into a temporary directory.
func buildBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// waitEmpty polls until dir is empty (the reaper deleted its own copy, its
// last step) or the deadline passes.
func waitEmpty(t *testing.T, dir string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reaper did not finish: %v left in %s", entries, dir)
		}
		pollPause()
	}
}

// TestSpawnRealAgentBinary spawns a detached copy of the real decnet-agent
// binary, which runs "reap --plan FILE" to completion in a temporary root.
func TestSpawnRealAgentBinary(t *testing.T) {
	bin := buildBinary(t, "../../cmd/decnet-agent", "decnet-agent")
	_, root, outside, spawnDir := installWork(t)
	sp, err := Spawn(t.Context(), testPlan(root), SpawnOptions{Dir: spawnDir, Executable: bin, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	if sp.PID == 0 || sp.Unit != "" {
		t.Fatalf("spawned %+v, want a detached process", sp)
	}
	waitEmpty(t, spawnDir, 30*time.Second)
	checkWiped(t, root, outside)
}

// installWork makes a work directory holding an installTree under root, an
// outside directory with a file that must survive, and an empty spawn
// directory for the reaper's copy.
func installWork(t *testing.T) (work, root, outside, spawnDir string) {
	t.Helper()
	work = t.TempDir()
	root = filepath.Join(work, "root")
	outside = filepath.Join(work, "outside")
	writeTree(t, outside, map[string]string{"victim": "must survive"})
	installTree(t, root, outside)
	spawnDir = filepath.Join(work, "spawn")
	if err := os.Mkdir(spawnDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return work, root, outside, spawnDir
}

// checkWiped checks the outcome of DefaultPlan on installTree.
func checkWiped(t *testing.T, root, outside string) {
	t.Helper()
	for _, g := range []string{"opt/decnet", "opt/decnet-extra", "opt/decnet-link", "etc/decnet",
		"var/lib/decnet/state.json", "usr/local/bin/decnet-agent", "etc/systemd/system/decnet-agent.service"} {
		if _, err := os.Lstat(filepath.Join(root, g)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived the reaper", g)
		}
	}
	for _, k := range []string{"var/log/decnet/agent.log", "opt/other/keep.txt", "etc/systemd/system/sshd.service"} {
		if _, err := os.Stat(filepath.Join(root, k)); err != nil {
			t.Errorf("%s was deleted", k)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); !strings.Contains(string(b), "must survive") {
		t.Error("outside Root was touched")
	}
}

// buildAgentProc builds testdata/agentproc (the real agent with the real
// SelfDestructer, its plan's Root moved into a temporary tree).
func buildAgentProc(t *testing.T) string {
	t.Helper()
	return buildBinary(t, "./testdata/agentproc", "agentproc")
}

// TestSelfDestructSurvivesAgentKill: the agent answers /self-destruct, and
// a millisecond later its whole process group gets SIGTERM then SIGKILL;
// the reaper it spawned (its own session and process group) still carries
// out the plan in the temporary root and deletes its own copy.
func TestSelfDestructSurvivesAgentKill(t *testing.T) {
	bin := buildAgentProc(t)
	p := agenttest.NewPKI(t, true)
	work, root, outside, spawnDir := installWork(t)
	addrFile := filepath.Join(work, "addr")
	args := []string{"serve", "-bundle", p.WorkerDir, "-state", filepath.Join(work, "state"),
		"-root", root, "-spawn-dir", spawnDir, "-addr-file", addrFile}
	if !(systemdBooted() && os.Geteuid() == 0) {
		// Without systemd the agent would choose a detached process by
		// itself; say so explicitly, so that a machine with systemd but
		// without the rights to start units does not fail here.
		args = append(args, "-detached")
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	if err := waitForFile(t.Context(), addrFile, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	addr, err := os.ReadFile(addrFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := agentclient.New(string(addr), agentclient.Credentials{Bundle: p.Master},
		agentclient.WithFingerprint(p.Worker.Fingerprint()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.SelfDestruct(t.Context()); err != nil {
		t.Fatalf("SelfDestruct: %v", err)
	}
	// The experiment: kill the agent's whole process group 1 ms after it
	// answered.
	time.Sleep(time.Millisecond)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	waited = true
	// The agent is dead and the reaper is still in its start delay (3 s):
	// everything that follows happens after the agent died.
	if _, err := os.Stat(filepath.Join(root, "etc/decnet/agent/tls.key")); err != nil {
		t.Fatalf("the install was touched before the agent died: %v", err)
	}

	// The reaper's directory was created before the 202; it disappears as
	// the reaper's last step.
	waitEmpty(t, spawnDir, 30*time.Second)
	checkWiped(t, root, outside)
}

// pollPause is the interval between two looks at a condition polled with a
// deadline.
func pollPause() { time.Sleep(10 * time.Millisecond) }
