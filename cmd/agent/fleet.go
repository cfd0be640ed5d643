package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/outpost-gitops/outpost/internal/rollout"
	"github.com/outpost-gitops/outpost/internal/spec"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/spf13/cobra"
)

func newFleetCmd(g *globals) *cobra.Command {
	var commit string
	var rollout bool
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Show every host's last status note",
		Long: `Fleet reads every host's notes ref (refs/notes/outpost/*) from the source, or
--source, and prints each host's labels, commit (and whether it is the branch
tip), result, age and images. --commit C shows each host's result for one
commit. Exit status: 0 every host's result is applied, 1 some host's is not,
2 error.

--rollout prints the rollout of the branch's tip (or --commit) through the
waves of fleet.yaml: per wave, the hosts that are healthy, soaking, applied,
failed, waiting or offline, and whether the wave passed. Exit status: 1 when
a wave halted the commit, else 0; 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config(cmd)
			if err != nil {
				return err
			}
			if rollout {
				return g.printRollout(cmd, cfg, commit)
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
	cmd.Flags().BoolVar(&rollout, "rollout", false, "show the commit's rollout through fleet.yaml's waves")
	return cmd
}

// printRollout prints a commit's rollout, wave by wave, and exits 1 when
// it is halted.
func (g *globals) printRollout(cmd *cobra.Command, cfg *agent.Config, commit string) error {
	v, err := agent.FleetRollout(cmd.Context(), cfg, commit)
	if err != nil {
		return err
	}
	if g.json {
		err = agent.WriteJSON(g.stdout, v)
	} else {
		err = writeRollout(g.stdout, v)
	}
	if err != nil {
		return err
	}
	if v.Halted {
		return exitStatus(1)
	}
	return nil
}

// writeRollout writes one block per wave: its name, selector and progress,
// then a line per state with its hosts.
func writeRollout(w io.Writer, v *agent.RolloutView) error {
	q := spec.Quote
	state := "in progress"
	switch {
	case v.Halted:
		state = "halted"
	case len(v.Waves) > 0 && v.Waves[len(v.Waves)-1].Passed:
		state = "done"
	}
	fmt.Fprintf(w, "commit %s: %s\n", q(v.Commit), state)
	for _, wave := range v.Waves {
		verdict := "waiting"
		switch {
		case wave.Halted:
			verdict = "halted"
		case wave.Passed:
			verdict = "passed"
		}
		fmt.Fprintf(w, "\nwave %s (%s): %s, %s\n", q(wave.Name), q(wave.Selector), verdict, wave.Progress())
		byState := map[rollout.State][]string{}
		for _, h := range wave.Hosts {
			byState[h.State] = append(byState[h.State], q(h.Host))
		}
		for _, s := range []rollout.State{rollout.Healthy, rollout.Soaking, rollout.Applied, rollout.Failed, rollout.Waiting, rollout.Offline} {
			if hs := byState[s]; len(hs) > 0 {
				fmt.Fprintf(w, "  %-8s %s\n", s+":", strings.Join(hs, " "))
			}
		}
	}
	return nil
}
