package main

import (
	"errors"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/reaper"
	"github.com/decnet-swarm/sdk/internal/cli"
)

// newReapCmd is the internal "reap --plan FILE" subcommand: the process
// POST /self-destruct spawns (as a transient systemd unit, or detached) to
// carry out a reaper plan.
func newReapCmd(a *app) *cobra.Command {
	var planFile, dockerHost string
	cmd := &cobra.Command{
		Use:    "reap --plan FILE",
		Short:  "Carry out a self-destruct plan (internal: started by the agent)",
		Hidden: true,
		Args:   cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if planFile == "" {
				return cli.Usagef("reap: --plan is required")
			}
			ctx := cmd.Context()
			plan, err := reaper.ReadPlan(planFile)
			if err != nil {
				return err // unreadable or invalid: nothing is done
			}
			log := slog.New(slog.NewJSONHandler(a.stderr, nil)).With("component", "reaper")
			deps := reaper.Deps{Logger: log}
			if len(plan.Projects) > 0 {
				eng, err := engine.New(engine.Config{Host: dockerHost, Logger: log})
				if err != nil {
					log.ErrorContext(ctx, "reaper_engine_unavailable", "error", err)
				} else {
					defer eng.Close()
					deps.Containers = eng
				}
			}
			if len(plan.Units) > 0 {
				units, err := reaper.ConnectSystemd(ctx)
				if err != nil {
					log.WarnContext(ctx, "reaper_systemd_unavailable", "error", err)
				} else {
					defer units.Close()
					deps.Units = units
				}
			}
			res, err := reaper.RunPlanFile(ctx, planFile, deps)
			if len(res.Done) == 0 && len(res.Failed) == 0 && err != nil {
				return err // the plan could not be read or is invalid: nothing was done
			}
			log.InfoContext(ctx, "reaper_finished", "done", res.Done, "failed", len(res.Failed), "removed", len(res.Removed))
			if err != nil {
				return errors.New("reap: some steps failed (see the log)")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&planFile, "plan", "", "the plan file written by the agent")
	cmd.Flags().StringVar(&dockerHost, "docker-host", engine.DefaultHost, "Docker Engine endpoint")
	return cmd
}
