package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/internal/cli"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and protocol",
		Args:  cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "decnet-master %s (protocol %d, %s)\n",
				decnet.Version, decnet.ProtocolVersion, runtime.Version())
			return err
		},
	}
}
