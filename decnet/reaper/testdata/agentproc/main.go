// Command agentproc is the worker agent of the reaper's process test: the
// real agent (decnet/agent over mTLS) with the real SelfDestructer, whose
// plan is DefaultPlan() with Root moved into a temporary tree (the one thing
// that differs from decnet-agent serve, which always wipes the real
// install). Its "reap --plan FILE" subcommand is what the spawned copy runs.
//
//	agentproc serve -bundle DIR -state DIR -root DIR -spawn-dir DIR -addr-file FILE [-detached]
//	agentproc reap --plan FILE
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/reaper"
	"github.com/decnet-swarm/sdk/decnet/state"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentproc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "reap":
		planFile := fs.String("plan", "", "plan file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		_, err := reaper.RunPlanFile(ctx, *planFile, reaper.Deps{Logger: log})
		return err
	case "serve":
		bundle := fs.String("bundle", "", "worker bundle directory")
		stateDir := fs.String("state", "", "state directory")
		root := fs.String("root", "", "the reaper plan's Root")
		spawnDir := fs.String("spawn-dir", "", "where the reaper's copy goes")
		addrFile := fs.String("addr-file", "", "the listening address is written here")
		detached := fs.Bool("detached", false, "never use systemd")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		st, err := state.Open(*stateDir)
		if err != nil {
			return err
		}
		eng, err := engine.New(engine.Config{Project: "dnt-reapproc"}) // no I/O until asked
		if err != nil {
			return err
		}
		defer eng.Close()
		plan := reaper.DefaultPlan()
		plan.Root = *root
		plan.Projects, plan.Units = nil, nil // no engine or systemd in the temp tree
		a, err := agent.New(agent.Config{
			BundleDir: *bundle,
			Engine:    eng,
			State:     st,
			Network: decnet.Network{
				Driver:  decnet.DriverBridge,
				Subnet:  netip.MustParsePrefix("172.30.254.0/24"),
				Gateway: netip.MustParseAddr("172.30.254.1"),
			},
			Reaper: &reaper.SelfDestructer{Plan: &plan, Options: reaper.SpawnOptions{
				Dir: *spawnDir, Detached: *detached, Logger: log,
			}},
			Logger: log,
		})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			return err
		}
		return a.Serve(ctx, ln)
	}
	return fmt.Errorf("unknown command %q", args[0])
}
