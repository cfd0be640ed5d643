package main

import (
	"fmt"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/plan"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/spf13/cobra"
)

func newPlanCmd(g *globals) *cobra.Command {
	var base, head, groupBy string
	var markdown bool
	cmd := &cobra.Command{
		Use:   "plan --base REV --head REV",
		Short: "Show which hosts of the fleet a change touches, and how",
		Long: `Plan renders every host that the fleet knows at the base and at the head
revision of the environment repository, and prints which hosts change and
what changes for them, with diffs; hosts whose changes are identical are
one group. It touches no host and calls no driver: what it compares is what
the repository says at each revision, not what the hosts run.

The repository is --source, or the current directory: a local Git
repository holding both revisions and the hosts' notes refs
(git fetch origin 'refs/notes/outpost/*:refs/notes/outpost/*'). The fleet is
every host of the notes with the labels of its latest note, every host that
fleet.yaml names, and the host of --host with the labels of --label.

Hosts whose render fails come first. --markdown prints a merge-request
comment, --json the whole plan. Exit status: 0 nothing changes, 1 some host
changes, 2 a render fails or the plan could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if base == "" || head == "" {
				return usageError{fmt.Errorf("plan needs --base and --head")}
			}
			if markdown && g.json {
				return usageError{fmt.Errorf("--markdown and --json exclude each other")}
			}
			o := plan.Options{Repo: g.source, Base: base, Head: head, GroupBy: groupBy, Log: log}
			if o.Repo == "" {
				o.Repo = "."
			}
			if g.host != "" {
				h := spec.Host{Name: g.host, Labels: map[string]string{}}
				for _, l := range g.labels {
					k, v, err := agent.ParseLabel(l)
					if err != nil {
						return usageError{fmt.Errorf("--label: %w", err)}
					}
					h.Labels[k] = v
				}
				o.Hosts = append(o.Hosts, h)
			} else if len(g.labels) > 0 {
				return usageError{fmt.Errorf("--label needs --host")}
			}
			p, err := plan.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			switch {
			case g.json:
				err = p.WriteJSON(g.stdout)
			case markdown:
				err = p.WriteMarkdown(g.stdout)
			default:
				err = p.WriteText(g.stdout)
			}
			if err != nil {
				return err
			}
			if code := p.ExitCode(); code != 0 {
				return exitStatus(code)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&base, "base", "", "the `revision` the change starts from (a hash, branch, tag or HEAD~1)")
	f.StringVar(&head, "head", "", "the `revision` of the change")
	f.BoolVar(&markdown, "markdown", false, "print a merge-request comment in markdown")
	f.StringVar(&groupBy, "summary-label", "role", "the `label` whose values the summary counts changed hosts by")
	return cmd
}
