package main

import (
	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/spf13/cobra"
)

func newValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check an environment repository and print every error",
		Long: `Validate checks the environment repository in DIR (default: --source,
then the current directory) and prints every error as path:line:col: message.
Exit status: 0 valid, 1 invalid, 2 could not run.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := g.source
			if len(args) == 1 {
				dir = args[0]
			}
			if dir == "" {
				dir = "."
			}
			if _, err := g.logger(); err != nil {
				return err
			}
			rep, err := agent.Validate(cmd.Context(), dir, g.allowEmpty)
			if err != nil {
				return err
			}
			if g.json {
				err = agent.WriteJSON(g.stdout, rep)
			} else {
				err = rep.WriteText(g.stdout, g.stderr)
			}
			if err != nil {
				return err
			}
			if !rep.Valid {
				return exitStatus(exitNo)
			}
			return nil
		},
	}
}
