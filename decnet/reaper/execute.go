package reaper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
)

// ContainerRemover removes compose projects' containers through the Docker
// Engine API; *engine.Engine implements it.
type ContainerRemover interface {
	// Projects lists the compose projects that have containers on the engine.
	Projects(ctx context.Context) ([]string, error)
	// RemoveProject force-removes every container (and network) of project.
	RemoveProject(ctx context.Context, project string) error
}

// Unit is a systemd unit a plan's patterns matched.
type Unit struct {
	Name string
	// HasFile is true when the unit has a unit file that can be disabled
	// (transient and generated units have none).
	HasFile bool
}

// UnitManager is the slice of systemd the reaper uses; [SystemdUnits]
// implements it over D-Bus.
type UnitManager interface {
	// ListUnits returns the loaded units and unit files matching patterns.
	ListUnits(ctx context.Context, patterns []string) ([]Unit, error)
	// StopUnit stops the unit and waits for the stop job to finish.
	StopUnit(ctx context.Context, name string) error
	// DisableUnit disables the unit's file.
	DisableUnit(ctx context.Context, name string) error
	// Reload makes systemd reread its unit files (daemon-reload).
	Reload(ctx context.Context) error
}

// Deps are what Execute acts through. Every field may be nil: a step whose
// dependency is missing fails (when the plan needs it) and the next runs.
type Deps struct {
	Containers ContainerRemover
	Units      UnitManager
	// Sleep waits d or until ctx ends; nil uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// OwnUnit returns the systemd unit the reaper itself runs in ("" for
	// none); nil reads it from /proc/self/cgroup. A reaper started as a
	// detached process on a machine with systemd lives in the agent's unit:
	// that unit is stopped last, after every other step, since stopping it
	// ends the reaper.
	OwnUnit func() string
	// Logger receives one line per action and per failure; nil discards.
	Logger *slog.Logger
}

// The steps of Execute, in order.
const (
	StepValidate         = "validate"
	StepWait             = "wait"
	StepRemoveContainers = "remove_containers"
	StepStopUnits        = "stop_units"
	StepDisableUnits     = "disable_units"
	StepDeletePaths      = "delete_paths"
	StepDaemonReload     = "daemon_reload"
	StepDeleteSelf       = "delete_self"
	// StepStopOwnUnit runs only when the reaper's own unit matched the plan;
	// when it succeeds the reaper is gone, so it is never reported done.
	StepStopOwnUnit = "stop_own_unit"
)

// Failure is one thing a step could not do.
type Failure struct {
	Step string // one of the Step* names
	Item string // the project, unit or path concerned; may be empty
	Err  error
}

func (f Failure) Error() string {
	if f.Item == "" {
		return fmt.Sprintf("%s: %v", f.Step, f.Err)
	}
	return fmt.Sprintf("%s %s: %v", f.Step, f.Item, f.Err)
}

func (f Failure) Unwrap() error { return f.Err }

// Result is what Execute did.
type Result struct {
	// Done lists the steps that ran without a failure, in order (a step with
	// nothing to do counts as done).
	Done []string
	// Failed lists every failure, in order.
	Failed []Failure
	// Removed lists what was removed: "project:<name>", "unit:<name>" (stopped
	// and, when it has a file, disabled) and "path:<abs>" (as the plan names
	// it, without Root).
	Removed []string
}

// Err joins the failures; nil when every step succeeded.
func (r Result) Err() error {
	errs := make([]error, len(r.Failed))
	for i, f := range r.Failed {
		errs[i] = f
	}
	return errors.Join(errs...)
}

type run struct {
	plan Plan
	deps Deps
	log  *slog.Logger
	res  Result
}

func (r *run) step(ctx context.Context, name string, fn func() []Failure) {
	fails := fn()
	for _, f := range fails {
		f.Step = name
		r.res.Failed = append(r.res.Failed, f)
		r.log.ErrorContext(ctx, "reaper_step_failed", "step", name, "item", f.Item, "error", f.Err)
	}
	if len(fails) == 0 {
		r.res.Done = append(r.res.Done, name)
		r.log.InfoContext(ctx, "reaper_step_done", "step", name)
	}
}

// Execute carries out plan: the steps in order, each failure logged and
// recorded and the next step still run. An invalid plan does nothing at all
// and fails the validate step.
func Execute(ctx context.Context, plan Plan, deps Deps) Result {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &run{plan: plan, deps: deps, log: log}
	if err := plan.Validate(); err != nil {
		r.res.Failed = append(r.res.Failed, Failure{Step: StepValidate, Err: err})
		log.ErrorContext(ctx, "reaper_plan_invalid", "error", err)
		return r.res
	}
	r.step(ctx, StepWait, func() []Failure { return r.wait(ctx) })
	r.step(ctx, StepRemoveContainers, func() []Failure { return r.removeContainers(ctx) })
	var units []Unit
	var own string
	r.step(ctx, StepStopUnits, func() []Failure {
		var fails []Failure
		units, own, fails = r.stopUnits(ctx)
		return fails
	})
	r.step(ctx, StepDisableUnits, func() []Failure { return r.disableUnits(ctx, units) })
	r.step(ctx, StepDeletePaths, func() []Failure { return r.deletePaths(ctx) })
	r.step(ctx, StepDaemonReload, func() []Failure { return r.reload(ctx) })
	r.step(ctx, StepDeleteSelf, func() []Failure { return r.deleteSelf(ctx) })
	if own != "" {
		r.step(ctx, StepStopOwnUnit, func() []Failure {
			r.log.WarnContext(ctx, "reaper_stopping_own_unit", "unit", own)
			if err := r.deps.Units.StopUnit(ctx, own); err != nil {
				return []Failure{{Item: own, Err: err}}
			}
			return nil
		})
	}
	return r.res
}

func (r *run) wait(ctx context.Context) []Failure {
	d := r.plan.StartDelay.D()
	if d <= 0 {
		return nil
	}
	sleep := r.deps.Sleep
	if sleep == nil {
		sleep = timerSleep
	}
	if err := sleep(ctx, d); err != nil {
		return []Failure{{Err: err}}
	}
	return nil
}

func timerSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *run) removeContainers(ctx context.Context) []Failure {
	if len(r.plan.Projects) == 0 {
		return nil
	}
	if r.deps.Containers == nil {
		return []Failure{{Err: decnet.Errorf(decnet.ErrUnavailable, "engine", "", "no container engine")}}
	}
	projects, err := r.deps.Containers.Projects(ctx)
	if err != nil {
		return []Failure{{Err: err}}
	}
	var fails []Failure
	for _, p := range projects {
		if !matchAny(r.plan.Projects, p) {
			continue
		}
		if err := r.deps.Containers.RemoveProject(ctx, p); err != nil {
			fails = append(fails, Failure{Item: p, Err: err})
			continue
		}
		r.res.Removed = append(r.res.Removed, "project:"+p)
		r.log.InfoContext(ctx, "reaper_project_removed", "project", p)
	}
	return fails
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if m, _ := path.Match(p, name); m {
			return true
		}
	}
	return false
}

func noSystemd() error {
	return decnet.Errorf(decnet.ErrUnavailable, "systemd", "", "no systemd unit manager")
}

// stopUnits stops the units the plan matches and returns them (for the
// disable step), except the reaper's own unit, which it returns apart for
// Execute to stop last.
func (r *run) stopUnits(ctx context.Context) (units []Unit, own string, fails []Failure) {
	if len(r.plan.Units) == 0 {
		return nil, "", nil
	}
	if r.deps.Units == nil {
		return nil, "", []Failure{{Err: noSystemd()}}
	}
	all, err := r.deps.Units.ListUnits(ctx, r.plan.Units)
	if err != nil {
		return nil, "", []Failure{{Err: err}}
	}
	self := r.ownUnit()
	for _, u := range all {
		if strings.HasPrefix(u.Name, ReaperUnitPrefix) || !matchAny(r.plan.Units, u.Name) {
			continue
		}
		units = append(units, u)
		if u.Name == self {
			own = u.Name
			r.log.WarnContext(ctx, "reaper_own_unit_deferred", "unit", u.Name)
			continue
		}
		if err := r.deps.Units.StopUnit(ctx, u.Name); err != nil {
			fails = append(fails, Failure{Item: u.Name, Err: err})
			continue
		}
		r.log.InfoContext(ctx, "reaper_unit_stopped", "unit", u.Name)
	}
	return units, own, fails
}

func (r *run) ownUnit() string {
	if r.deps.OwnUnit != nil {
		return r.deps.OwnUnit()
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	return unitOfCgroup(string(data))
}

// unitOfCgroup returns the systemd unit (the deepest .service or .scope
// component) of the systemd hierarchy in a /proc/<pid>/cgroup text: the
// unified line "0::<path>" or, on cgroup v1, the "name=systemd" line.
func unitOfCgroup(text string) string {
	for line := range strings.Lines(text) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 || !(f[0] == "0" && f[1] == "" || f[1] == "name=systemd") {
			continue
		}
		comps := strings.Split(f[2], "/")
		for i := len(comps) - 1; i >= 0; i-- {
			if strings.HasSuffix(comps[i], ".service") || strings.HasSuffix(comps[i], ".scope") {
				return comps[i]
			}
		}
	}
	return ""
}

func (r *run) disableUnits(ctx context.Context, units []Unit) []Failure {
	if len(r.plan.Units) == 0 {
		return nil
	}
	if r.deps.Units == nil {
		return []Failure{{Err: noSystemd()}}
	}
	var fails []Failure
	for _, u := range units {
		if u.HasFile {
			if err := r.deps.Units.DisableUnit(ctx, u.Name); err != nil {
				fails = append(fails, Failure{Item: u.Name, Err: err})
				continue
			}
			r.log.InfoContext(ctx, "reaper_unit_disabled", "unit", u.Name)
		}
		r.res.Removed = append(r.res.Removed, "unit:"+u.Name)
	}
	return fails
}

func (r *run) reload(ctx context.Context) []Failure {
	if len(r.plan.Units) == 0 {
		return nil
	}
	if r.deps.Units == nil {
		return []Failure{{Err: noSystemd()}}
	}
	if err := r.deps.Units.Reload(ctx); err != nil {
		return []Failure{{Err: err}}
	}
	return nil
}

// deletePaths expands every Delete pattern inside an os.Root opened on the
// plan's Root, so no lookup can leave Root through a symlink, and removes
// each match: a symlink is unlinked, never followed; a directory is removed
// without following the symlinks inside it. A symlinked directory on the way
// to a match is never traversed, even one pointing inside Root (with Root /
// every symlink does): the pattern or match behind it fails instead, so a
// link such as /var/lib/decnet -> /var/log/decnet cannot delete kept paths.
func (r *run) deletePaths(ctx context.Context) []Failure {
	if len(r.plan.Delete) == 0 {
		return nil
	}
	rootDir := r.plan.rootDir()
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return []Failure{{Item: rootDir, Err: err}}
	}
	defer root.Close()
	var fails []Failure
	for _, pat := range r.plan.Delete {
		rel := strings.TrimPrefix(pat, "/")
		// fs.Glob skips directories it cannot read; say so when the
		// pattern's literal parent exists but cannot be read (for instance
		// a symlink leading out of Root).
		if dir := path.Dir(rel); literalPrefix(dir) == dir {
			if err := symlinkedParent(root, rel); err != nil {
				fails = append(fails, Failure{Item: pat, Err: err})
				continue
			}
			if _, err := fs.ReadDir(root.FS(), dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				fails = append(fails, Failure{Item: pat, Err: err})
				continue
			}
		}
		matches, err := fs.Glob(root.FS(), rel)
		if err != nil {
			fails = append(fails, Failure{Item: pat, Err: err})
			continue
		}
		for _, m := range matches {
			abs := "/" + m
			if err := r.deleteOne(root, m, abs); err != nil {
				fails = append(fails, Failure{Item: abs, Err: err})
				continue
			}
			r.res.Removed = append(r.res.Removed, "path:"+abs)
			r.log.InfoContext(ctx, "reaper_path_deleted", "path", abs)
		}
	}
	return fails
}

func (r *run) deleteOne(root *os.Root, rel, abs string) error {
	if slices.Contains(protected, abs) {
		return decnet.Errorf(decnet.ErrInvalid, "path", abs, "refusing to delete the protected directory %s", abs)
	}
	if r.plan.isKept(abs) {
		return decnet.Errorf(decnet.ErrInvalid, "path", abs, "refusing to delete %s: it is or holds a kept path", abs)
	}
	if err := symlinkedParent(root, rel); err != nil {
		return err
	}
	fi, err := root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // gone since the glob
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir() {
		return root.Remove(rel)
	}
	return root.RemoveAll(rel)
}

// symlinkedParent returns an error wrapping decnet.ErrInvalid when a
// directory on the way to rel (Root itself excepted) is a symlink: deleting
// through it would delete what the link points at, not what the plan names.
// A missing directory is no error (there is nothing behind it to delete).
func symlinkedParent(root *os.Root, rel string) error {
	dir := path.Dir(rel)
	if dir == "." {
		return nil
	}
	for i := range len(dir) + 1 {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		fi, err := root.Lstat(dir[:i])
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			abs := "/" + dir[:i]
			return decnet.Errorf(decnet.ErrInvalid, "path", abs, "refusing to delete under %s: it is a symlink", abs)
		}
	}
	return nil
}

func (r *run) deleteSelf(ctx context.Context) []Failure {
	if r.plan.Self == "" {
		return nil
	}
	if err := os.RemoveAll(r.plan.Self); err != nil {
		return []Failure{{Item: r.plan.Self, Err: err}}
	}
	r.log.InfoContext(ctx, "reaper_self_deleted", "path", r.plan.Self)
	return nil
}

// ReadPlan reads and validates a plan file written by Spawn. Unknown fields
// and trailing data are refused; every failure wraps decnet.ErrInvalid or is
// the file's read error.
func ReadPlan(file string) (Plan, error) {
	f, err := os.Open(file)
	if err != nil {
		return Plan{}, fmt.Errorf("open plan: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, decnet.MaxRequestBytes+1))
	if err != nil {
		return Plan{}, fmt.Errorf("read plan %s: %w", file, err)
	}
	if len(data) > decnet.MaxRequestBytes {
		return Plan{}, decnet.Errorf(decnet.ErrInvalid, "plan", file, "plan %s is larger than %d bytes", file, decnet.MaxRequestBytes)
	}
	var p Plan
	if err := decnet.DecodeStrict(data, &p); err != nil {
		return Plan{}, fmt.Errorf("plan %s: %w", file, err)
	}
	if err := p.Validate(); err != nil {
		return Plan{}, fmt.Errorf("plan %s: %w", file, err)
	}
	return p, nil
}

// RunPlanFile reads the plan file and executes it: the body of
// "decnet-agent reap --plan FILE". A plan that cannot be read or is invalid
// is returned as an error and nothing is done; otherwise the result's
// failures are returned joined (the reaper went through every step anyway).
func RunPlanFile(ctx context.Context, file string, deps Deps) (Result, error) {
	p, err := ReadPlan(file)
	if err != nil {
		return Result{}, err
	}
	if p.Self != "" && filepath.Dir(file) != p.Self {
		return Result{}, decnet.Errorf(decnet.ErrInvalid, "plan", file, "plan %s does not live in its reaper directory %s", file, p.Self)
	}
	res := Execute(ctx, p, deps)
	return res, res.Err()
}
