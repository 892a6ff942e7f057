// Package cli is the scaffolding both reference binaries share: exit codes,
// usage errors, the cobra root and the one place that turns a command's
// error into a line on stderr and a process exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes of the decnet binaries.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command could not do its work
	ExitUsage   = 2 // bad flags, arguments, configuration or input; nothing was changed
)

// ExitError carries the process exit code of a failed Run.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// UsageError marks an error in the command line, configuration or input.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a formatted UsageError.
func Usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// ExitCode maps a Run result to a process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitFailure
}

// Main runs run with the process arguments under a context cancelled by
// SIGINT/SIGTERM and exits with its code: the binaries' only os.Exit.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(ExitCode(err))
}

// NewRoot returns a cobra root (or command group) that prints its help when
// run bare, rejects unknown subcommands and bad flags as usage errors and
// leaves error printing to Execute.
func NewRoot(use, short string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           use,
		Short:         short,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          NoSubcommand,
		RunE:          HelpWhenBare,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	return root
}

// NoSubcommand rejects arguments given to a command group: they can only be
// an unknown subcommand.
func NoSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return nil
}

// HelpWhenBare prints a command group's help.
func HelpWhenBare(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// ExactArgs is cobra.ExactArgs with a usage error.
func ExactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return UsageError{err}
		}
		return nil
	}
}

// Execute runs root with args. A failure is written to stderr as one line
// ("<name>: <error>") and returned as an *ExitError: ExitUsage for a
// UsageError or an error of one of usageClasses (decnet.ErrInvalid, …),
// ExitFailure otherwise.
func Execute(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer, usageClasses ...error) error {
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return nil
	}
	fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
	code := ExitFailure
	var ue UsageError
	if errors.As(err, &ue) {
		code = ExitUsage
	}
	for _, class := range usageClasses {
		if errors.Is(err, class) {
			code = ExitUsage
		}
	}
	return &ExitError{Code: code, Err: err}
}
