package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/decnet-swarm/sdk/decnet"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command could not do its work
	exitUsage   = 2 // bad flags or configuration, or no enrolled bundle; nothing was done
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err))
}

// commands is the registration list of the subcommands.
var commands = []func(*app) *cobra.Command{
	newServeCmd,
	newPauseCmd,
	newVersionCmd,
	newReapCmd,
}

// app is what every subcommand gets: the output streams and the process
// environment, read only here in cmd (never by the library).
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// exitError carries the process exit code of a failed Run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks an error in the command line or configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

func classify(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, decnet.ErrInvalid) {
		return exitUsage
	}
	return exitFailure
}

// Run executes the decnet-agent command line args (without the program
// name). A failure is reported on stderr as one line and returned as an
// *exitError carrying the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := &app{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := &cobra.Command{
		Use:           "decnet-agent",
		Short:         "Worker agent of a decnet deception swarm",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	for _, newCmd := range commands {
		root.AddCommand(newCmd(a))
	}
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "decnet-agent: %v\n", err)
		return &exitError{code: classify(err), err: err}
	}
	return nil
}
