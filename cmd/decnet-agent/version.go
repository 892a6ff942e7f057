package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/internal/cli"
)

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the agent protocol",
		Args:  cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(a.stdout, "decnet-agent %s (protocol %d)\n", decnet.Version, decnet.ProtocolVersion)
			return err
		},
	}
}
