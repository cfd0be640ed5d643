package main

import (
	"context"
	"log/slog"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/spf13/cobra"
)

func newApplyCmd(g *globals) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Converge this host to the source once and exit",
		Long: `Apply runs one pass, as the daemon does for a new revision: it renders the
source for this host, resolves the tags of containers that follow a registry
(asking the registry when its check is due), converges every resource, prunes
what left the repository, waits until what changed is healthy (up to
health_timeout; --wait=false skips the wait) and records the outcome in the
state directory and in a status note, pushed when status.push is set. A
revision whose changes do not become healthy is rolled back to the last good
one and recorded as failed.
When the source cannot be reached it converges the last good commit again and
says that it is offline. Exit status: 0 converged, 1 a resource failed or did
not become healthy (then the last good commit is back), or an invalid
repository (nothing is changed), or a tip that is not signed by a trusted key
(the last good commit is converged); 2 error (among them: offline with no good
commit yet).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			apply := func(ctx context.Context, cfg *agent.Config, log *slog.Logger) (*agent.Report, error) {
				return agent.Apply(ctx, cfg, log, agent.ApplyOptions{NoWait: !wait})
			}
			return g.converge(cmd, apply, func(rep *agent.Report) bool {
				// A tip refused for its signature leaves the host on its
				// last good commit: converged, but not to what the
				// branch says.
				return !rep.Valid || rep.Summary.Failed > 0 || (rep.Fallback != "" && !rep.Offline) ||
					rep.Result == agent.ResultFailed || rep.Result == agent.ResultRolledBack
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until what changed is healthy, and roll back when it is not")
	return cmd
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
	// A diff shows what content changes; apply shows it with -v, and
	// both in their JSON.
	if rep.Command == "diff" || g.verbose > 0 || g.json {
		rep.AddDiffs()
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
