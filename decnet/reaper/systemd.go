package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/decnet-swarm/sdk/decnet"
)

// UnitStarter starts a transient systemd unit. It mirrors the method of
// go-systemd's *dbus.Conn, which implements it; tests substitute a fake to
// see the exact unit the reaper asks for.
type UnitStarter interface {
	StartTransientUnitContext(ctx context.Context, name, mode string, properties []sddbus.Property, ch chan<- string) (int, error)
}

// UnitDescription is the Description of the reaper's transient unit.
const UnitDescription = "decnet self-destruct reaper"

// JobMode is the job mode the reaper's unit is started with: fail rather
// than replace a conflicting job.
const JobMode = "fail"

// UnitName returns the name of the transient unit a reaper spawned by the
// process pid runs in.
func UnitName(pid int) string { return fmt.Sprintf("%s%d.service", ReaperUnitPrefix, pid) }

// UnitProperties returns the exact properties of the reaper's transient
// service unit for command cmd: its Description, ExecStart (an unclean exit
// is not a failure: the wipe is best effort) and CollectMode
// inactive-or-failed, so systemd forgets the unit once it has run even when
// it failed. It is a plain service (not a scope, not oneshot): the reaper
// lives in its own cgroup, outside the agent's.
func UnitProperties(cmd []string) []sddbus.Property {
	return []sddbus.Property{
		sddbus.PropDescription(UnitDescription),
		sddbus.PropExecStart(cmd, false),
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
	}
}

// startUnit starts cmd as the transient unit name and waits for the start
// job's result.
func startUnit(ctx context.Context, s UnitStarter, name string, cmd []string) error {
	ch := make(chan string, 1)
	if _, err := s.StartTransientUnitContext(ctx, name, JobMode, UnitProperties(cmd), ch); err != nil {
		var de godbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.UnitExists" {
			return decnet.Errorf(decnet.ErrConflict, "unit", name, "unit %s already exists: a reaper is already scheduled", name)
		}
		return fmt.Errorf("start transient unit %s: %w", name, err)
	}
	return waitJob(ctx, ch, "start transient unit "+name)
}

// waitJob waits for a systemd job's result on ch; anything but "done" (or
// the end of ctx) is an error naming what.
func waitJob(ctx context.Context, ch <-chan string, what string) error {
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s: job result %q", what, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// systemdBooted reports whether the machine runs systemd (sd_booted(3)).
func systemdBooted() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// SystemdUnits is the real UnitManager: systemd's manager over the system
// bus.
type SystemdUnits struct {
	conn *sddbus.Conn
}

var _ UnitManager = (*SystemdUnits)(nil)

// ConnectSystemd connects to systemd over the system bus. When the machine
// does not run systemd, or the bus cannot be reached, the error wraps
// decnet.ErrUnavailable. Close the result when done.
func ConnectSystemd(ctx context.Context) (*SystemdUnits, error) {
	if !systemdBooted() {
		return nil, decnet.Errorf(decnet.ErrUnavailable, "systemd", "", "this machine does not run systemd")
	}
	conn, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd over the system bus: %w: %w", decnet.ErrUnavailable, err)
	}
	return systemdUnitsFrom(conn), nil
}

func systemdUnitsFrom(conn *sddbus.Conn) *SystemdUnits { return &SystemdUnits{conn: conn} }

// Close closes the bus connection.
func (s *SystemdUnits) Close() { s.conn.Close() }

// Starter returns the connection as a UnitStarter.
func (s *SystemdUnits) Starter() UnitStarter { return s.conn }

// ListUnits implements UnitManager: loaded units and unit files matching
// patterns, merged by name.
func (s *SystemdUnits) ListUnits(ctx context.Context, patterns []string) ([]Unit, error) {
	loaded, err := s.conn.ListUnitsByPatternsContext(ctx, nil, patterns)
	if err != nil {
		return nil, fmt.Errorf("list units: %w", err)
	}
	files, err := s.conn.ListUnitFilesByPatternsContext(ctx, nil, patterns)
	if err != nil {
		return nil, fmt.Errorf("list unit files: %w", err)
	}
	var out []Unit
	idx := map[string]int{}
	for _, f := range files {
		name := path.Base(f.Path)
		idx[name] = len(out)
		out = append(out, Unit{Name: name, HasFile: true})
	}
	for _, u := range loaded {
		if _, ok := idx[u.Name]; !ok {
			idx[u.Name] = len(out)
			out = append(out, Unit{Name: u.Name})
		}
	}
	return out, nil
}

// StopUnit implements UnitManager.
func (s *SystemdUnits) StopUnit(ctx context.Context, name string) error {
	ch := make(chan string, 1)
	if _, err := s.conn.StopUnitContext(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return waitJob(ctx, ch, "stop "+name)
}

// DisableUnit implements UnitManager.
func (s *SystemdUnits) DisableUnit(ctx context.Context, name string) error {
	if _, err := s.conn.DisableUnitFilesContext(ctx, []string{name}, false); err != nil {
		return fmt.Errorf("disable %s: %w", name, err)
	}
	return nil
}

// Reload implements UnitManager (systemctl daemon-reload).
func (s *SystemdUnits) Reload(ctx context.Context) error {
	if err := s.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("daemon-reload: %w", err)
	}
	return nil
}
