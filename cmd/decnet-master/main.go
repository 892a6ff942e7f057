package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/internal/cli"
)

// Exit codes.
const (
	exitOK      = cli.ExitOK
	exitFailure = cli.ExitFailure
	exitUsage   = cli.ExitUsage // bad flags, arguments or input; nothing was changed
)

func main() { cli.Main(Run) }

// Run executes the decnet-master command line args (without the program
// name), writing results to stdout and errors to stderr. A failure is
// reported on stderr as one line and returned as an *cli.ExitError: exit
// code 2 for bad usage, invalid input or a missing input file.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Execute(ctx, newRootCmd(stdout, stderr), args, stderr, decnet.ErrInvalid, decnet.ErrNotFound)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := cli.NewRoot("decnet-master", "Master of a decnet deception swarm", stdout, stderr)
	root.Long = "decnet-master runs the master of a decnet swarm and the operator's PKI tools."
	root.AddCommand(newCACmd(), newVersionCmd())
	return root
}
