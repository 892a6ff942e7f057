package reaper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/decnet-swarm/sdk/decnet"
)

// DefaultSpawnDir is where Spawn creates the reaper's temporary directory:
// outside every path the default plan deletes, and on a file system that
// allows execution on common installs (/run is often mounted noexec).
//
// The transient unit runs in systemd's mount namespace: when the agent's
// own unit has PrivateTmp= (which gives it a private /tmp and /var/tmp),
// the copy would be invisible to the reaper unit, so such an agent must set
// SpawnOptions.Dir to a directory it shares with the host.
const DefaultSpawnDir = "/var/tmp"

// DefaultExecutable is the executable Spawn copies: the running one.
const DefaultExecutable = "/proc/self/exe"

// stNoExec is statfs(2)'s ST_NOEXEC mount flag.
const stNoExec = 0x8

// File names inside the reaper's temporary directory.
const (
	CopyName     = "decnet-reaper"
	PlanFileName = "plan.json"
)

// SpawnOptions tune Spawn; zero fields mean the documented defaults.
type SpawnOptions struct {
	// Dir is the parent of the reaper's temporary directory; "" means
	// DefaultSpawnDir. It must be absolute and the directory created in it
	// must not be deleted by the plan.
	Dir string
	// Executable is copied and run as "<copy> reap --plan <file>"; ""
	// means DefaultExecutable.
	Executable string
	// Starter starts the transient unit. nil means systemd over the system
	// bus when the machine runs systemd, else a detached process.
	Starter UnitStarter
	// Detached skips systemd and always starts a detached process.
	Detached bool
	// PID names the unit decnet-reaper-<PID>.service; 0 means os.Getpid().
	PID int
	// Logger receives what Spawn did; nil discards.
	Logger *slog.Logger
}

// Spawned describes a started reaper.
type Spawned struct {
	Dir        string   // the reaper's temporary directory (the plan's Self)
	Executable string   // the copy
	PlanFile   string   // the plan beside it
	Command    []string // what runs
	Unit       string   // the transient unit, when started through systemd
	PID        int      // the process, when started detached
}

// Spawn starts a reaper for plan that outlives the calling process: it
// copies the executable and the plan (mode 0600, with Self set to the new
// directory) to a fresh directory decnet-reaper-* in opts.Dir, then starts
// "<copy> reap --plan <file>" as the transient service unit
// decnet-reaper-<pid>.service (job mode fail), or, without systemd, as a
// process in a new session with its standard streams on /dev/null that is
// not waited for. It returns once the unit's start job is done or the
// process has started. An invalid plan or options, or a spawn directory the
// plan would delete or on a noexec file system, change nothing and wrap
// decnet.ErrInvalid; an existing unit of the same name wraps
// decnet.ErrConflict.
func Spawn(ctx context.Context, plan Plan, opts SpawnOptions) (Spawned, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := plan.Validate(); err != nil {
		return Spawned{}, err
	}
	parent := opts.Dir
	if parent == "" {
		parent = DefaultSpawnDir
	}
	if !cleanAbs(parent) {
		return Spawned{}, decnet.Errorf(decnet.ErrInvalid, "spawn_dir", parent, "spawn directory %q is not an absolute, clean path", parent)
	}
	exe := opts.Executable
	if exe == "" {
		exe = DefaultExecutable
	}
	pid := opts.PID
	if pid == 0 {
		pid = os.Getpid()
	}

	dir, err := os.MkdirTemp(parent, ReaperUnitPrefix+"*") // mode 0700
	if err != nil {
		return Spawned{}, fmt.Errorf("create reaper directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return Spawned{}, fmt.Errorf("resolve reaper directory: %w", err)
	}
	if plan.deletes(real) || plan.deletes(dir) {
		return Spawned{}, decnet.Errorf(decnet.ErrInvalid, "spawn_dir", dir, "reaper directory %s would be deleted by the plan", dir)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err == nil && sfs.Flags&stNoExec != 0 {
		return Spawned{}, decnet.Errorf(decnet.ErrInvalid, "spawn_dir", parent,
			"spawn directory %s is on a noexec file system: the reaper's copy could not run", parent)
	}
	plan.Self = dir
	if err := plan.Validate(); err != nil {
		return Spawned{}, err
	}
	sp := Spawned{
		Dir:        dir,
		Executable: filepath.Join(dir, CopyName),
		PlanFile:   filepath.Join(dir, PlanFileName),
	}
	if err := copyFile(exe, sp.Executable, 0o700); err != nil {
		return Spawned{}, err
	}
	data, err := json.Marshal(plan)
	if err != nil {
		return Spawned{}, fmt.Errorf("encode plan: %w", err)
	}
	if err := writeNew(sp.PlanFile, bytes.NewReader(data), 0o600); err != nil {
		return Spawned{}, err
	}
	sp.Command = []string{sp.Executable, "reap", "--plan", sp.PlanFile}

	starter := opts.Starter
	if starter == nil && !opts.Detached && systemdBooted() {
		units, err := ConnectSystemd(ctx)
		if err != nil {
			log.WarnContext(ctx, "reaper_systemd_unreachable", "error", err)
		} else {
			defer units.Close()
			starter = units.Starter()
		}
	}
	if starter != nil && !opts.Detached {
		sp.Unit = UnitName(pid)
		if err := startUnit(ctx, starter, sp.Unit, sp.Command); err != nil {
			return Spawned{}, err
		}
		log.InfoContext(ctx, "reaper_unit_started", "unit", sp.Unit, "dir", dir)
	} else {
		p, err := startDetached(sp.Command)
		if err != nil {
			return Spawned{}, err
		}
		sp.PID = p
		log.InfoContext(ctx, "reaper_process_started", "pid", p, "dir", dir)
	}
	ok = true
	return sp, nil
}

// startDetached starts cmd in a new session with its standard streams on
// /dev/null and releases it: the caller never waits for it, and it keeps
// running when the caller exits.
func startDetached(cmd []string) (int, error) {
	c := exec.Command(cmd[0], cmd[1:]...)
	c.Dir = "/"
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// nil Stdin, Stdout and Stderr are /dev/null.
	if err := c.Start(); err != nil {
		return 0, fmt.Errorf("start reaper process: %w", err)
	}
	pid := c.Process.Pid
	if err := c.Process.Release(); err != nil {
		return 0, fmt.Errorf("release reaper process: %w", err)
	}
	return pid, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open executable: %w", err)
	}
	defer in.Close()
	return writeNew(dst, in, mode)
}

// writeNew creates name (which must not exist) with mode, fills it from r
// and syncs it.
func writeNew(name string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// SelfDestructer implements the agent's Reaper: POST /self-destruct
// validates the plan and spawns the reaper, answering once it is started.
type SelfDestructer struct {
	// Plan is the plan to run; nil means DefaultPlan(). Set it only in tests
	// (a plan with a temporary Root): production always wipes the real
	// install.
	Plan *Plan
	// Options tune Spawn.
	Options SpawnOptions
}

// SelfDestruct spawns the reaper (Spawn validates the plan first: an
// invalid one changes nothing). A reaper already scheduled (its unit exists)
// is not an error.
func (s *SelfDestructer) SelfDestruct(ctx context.Context) error {
	plan := DefaultPlan()
	if s.Plan != nil {
		plan = *s.Plan
	}
	_, err := Spawn(ctx, plan, s.Options)
	if errors.Is(err, decnet.ErrConflict) {
		return nil
	}
	return err
}
