package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/decnet-swarm/sdk/internal/cli"
)

func newPauseCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "pause",
		Short:  "Run as a decky's base container process: sleep until SIGTERM or SIGINT",
		Hidden: true,
		Args:   cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			pause(nil)
			return nil
		},
	}
}

// pause sleeps until SIGTERM or SIGINT, reaping every child that exits (as
// PID 1 of the base container it inherits orphans), and returns. ready, when
// not nil, is called once the signal handlers are in place.
func pause(ready func()) {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	defer signal.Stop(sig)
	if ready != nil {
		ready()
	}
	reapChildren()
	for s := range sig {
		if s == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		reapChildren()
		return
	}
}

// reapChildren waits for every child that has exited, without blocking.
func reapChildren() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
