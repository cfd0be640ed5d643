package main

import (
	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/spf13/cobra"
)

func newDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff",
		Short: "Print what apply would change on this host",
		Long: `Diff renders the source for this host and prints one line per resource
that apply would change, then a summary. It changes nothing. Under each
changed file and unit comes the unified diff of its content and drop-ins,
from the host to the source; binary and large content gets a size and hash
line, and content that holds a container's env value only the number of
lines that changed. A container names each setting that differs, as
before -> after, and env variables without their values.
Exit status: 0 nothing to change, 1 changes (or an invalid repository), 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.converge(cmd, agent.Diff, func(rep *agent.Report) bool {
				return !rep.Valid || rep.Summary.Changed() || rep.Summary.Failed > 0
			})
		},
	}
}
