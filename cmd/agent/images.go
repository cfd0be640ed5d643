package main

import (
	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/spf13/cobra"
)

func newImagesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Show each container that follows its registry: policy, running tag, best candidate, and why",
		Long: `Images renders the source for this host, checks the registry of every
container that follows one (update:), and prints its policy, the tag@digest it
runs, the best candidate, the newer tags that were passed over and why (no
image for this platform, marked bad on this host, excluded), and the tags
marked bad.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, cfg, err := g.setup(cmd)
			if err != nil {
				return err
			}
			rows, err := agent.ImagesReport(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			if g.json {
				return registry.WriteJSON(g.stdout, rows)
			}
			return registry.WriteText(g.stdout, rows)
		},
	}
	cmd.AddCommand(newImagesUpdateCmd(g))
	return cmd
}
