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
	exitUsage   = cli.ExitUsage // bad flags or configuration, or no enrolled bundle; nothing was done
)

func main() { cli.Main(Run) }

// commands is the registration list of the subcommands.
var commands = []func(*app) *cobra.Command{
	newServeCmd,
	newPauseCmd,
	newVersionCmd,
	newReapCmd,
}

// app is what every subcommand gets: the output streams.
type app struct {
	stdout, stderr io.Writer
}

// Run executes the decnet-agent command line args (without the program
// name). A failure is reported on stderr as one line and returned as an
// *cli.ExitError carrying the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a := &app{stdout: stdout, stderr: stderr}
	root := cli.NewRoot("decnet-agent", "Worker agent of a decnet deception swarm", stdout, stderr)
	for _, newCmd := range commands {
		root.AddCommand(newCmd(a))
	}
	return cli.Execute(ctx, root, args, stderr, decnet.ErrInvalid)
}
