package main

import (
	"time"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/spf13/cobra"
)

func newFleetCmd(g *globals) *cobra.Command {
	var commit string
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Show every host's last status note",
		Long: `Fleet reads every host's notes ref (refs/notes/outpost/*) from the source, or
--source, and prints each host's labels, commit (and whether it is the branch
tip), result, age and images. --commit C shows each host's result for one
commit. Exit status: 0 every host's result is applied, 1 some host's is not,
2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config(cmd)
			if err != nil {
				return err
			}
			o, src, err := agent.FleetOptions(cfg)
			if err != nil {
				return err
			}
			o.Commit = commit
			hosts, err := status.Fleet(cmd.Context(), src, o)
			if err != nil {
				return err
			}
			if g.json {
				err = status.WriteJSON(g.stdout, hosts)
			} else {
				err = status.WriteTable(g.stdout, hosts, time.Now())
			}
			if err != nil {
				return err
			}
			if code := status.ExitCode(hosts); code != 0 {
				return exitStatus(code)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&commit, "commit", "", "show each host's result for this `commit` (a hash or a unique prefix)")
	return cmd
}
