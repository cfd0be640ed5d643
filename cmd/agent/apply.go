package main

import (
	"context"
	"log/slog"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/spf13/cobra"
)

func newApplyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apply",
		Short: "Converge this host to the source once and exit",
		Long: `Apply renders the source for this host, converges every resource, prunes
what left the repository, and records what it owns in the state directory.
When the source cannot be reached it converges the last good commit again and
says that it is offline. Exit status: 0 converged, 1 a resource failed (or an
invalid repository, and then nothing is changed; or a tip that is not signed by
a trusted key, and then the last good commit is converged), 2 error (among
them: offline with no good commit yet).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.converge(cmd, agent.Apply, func(rep *agent.Report) bool {
				// A tip refused for its signature leaves the host on its
				// last good commit: converged, but not to what the
				// branch says.
				return !rep.Valid || rep.Summary.Failed > 0 || (rep.Fallback != "" && !rep.Offline)
			})
		},
	}
}

// converge runs diff or apply, prints the report, and exits 1 when no
// says so.
func (g *globals) converge(cmd *cobra.Command, op func(context.Context, *agent.Config, *slog.Logger) (*agent.Report, error), no func(*agent.Report) bool) error {
	log, cfg, err := g.setup(cmd)
	if err != nil {
		return err
	}
	rep, err := op(cmd.Context(), cfg, log)
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
	if no(rep) {
		return exitStatus(exitNo)
	}
	return nil
}
