package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/spf13/cobra"
)

// socketFlag adds --socket to a command that talks to the daemon.
func socketFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "socket", agent.DefaultSocket, "the control socket's `path`")
}

func newRunCmd(g *globals) *cobra.Command {
	var socket string
	var full time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: keep this host converged to the source",
		Long: `Run polls the source, applies each new revision once it validates (and is
signed, when verify is set), rolls back a revision whose changed resources do not
become healthy, and repairs drift as soon as a watcher sees it. SIGHUP reloads
the configuration; an invalid one is refused and the old one kept. SIGTERM
finishes the resource in hand, saves state and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, cfg, err := g.setup(cmd)
			if err != nil {
				return err
			}
			if err := agent.CheckCredentials(cfg); err != nil {
				return err
			}
			reload := make(chan *agent.Config)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			done := make(chan struct{})
			defer func() { cancel(); <-done }()
			go func() {
				defer close(done)
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						next, err := g.config(cmd)
						if err == nil {
							err = agent.CheckCredentials(next)
						}
						if err != nil {
							log.Error("configuration not reloaded; keeping the old one", "err", err)
							continue
						}
						select {
						case reload <- next:
						case <-ctx.Done():
							return
						}
					}
				}
			}()
			return agent.Run(ctx, cfg, agent.DaemonOptions{
				Logger:       log,
				Socket:       socket,
				FullInterval: full,
				Reload:       reload,
				Notify:       agent.SystemdNotifier(),
			})
		},
	}
	socketFlag(cmd, &socket)
	cmd.Flags().DurationVar(&full, "full-interval", agent.DefaultFullInterval, "how often to run a full converge as a backstop")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this host's state, from the agent or the state directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := agent.Control(cmd.Context(), socket, "status")
			if errors.Is(err, agent.ErrNoDaemon) {
				cfg, cerr := g.config(cmd)
				if cerr != nil {
					return cerr
				}
				s, err = agent.StatusFromState(cfg)
			}
			if err != nil {
				return err
			}
			return g.printStatus(s)
		},
	}
	socketFlag(cmd, &socket)
	return cmd
}

// newControlCmd builds reconcile, suspend, resume and retry: each asks the
// running agent to act and prints its status afterwards.
func newControlCmd(op, short string) func(g *globals) *cobra.Command {
	return func(g *globals) *cobra.Command {
		var socket string
		var timeout time.Duration
		cmd := &cobra.Command{
			Use:   op,
			Short: short,
			Long:  controlLong[op],
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				s, err := agent.Control(ctx, socket, op)
				if err != nil {
					return err
				}
				if err := g.printStatus(s); err != nil {
					return err
				}
				if op == "reconcile" || op == "retry" {
					return controlExit(s)
				}
				return nil
			},
		}
		socketFlag(cmd, &socket)
		cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the agent")
		return cmd
	}
}

// exitSuspended is reconcile's and retry's exit status while changes are
// suspended: the host was checked, but not changed.
const exitSuspended = 3

// controlExit turns the status after reconcile or retry into the exit
// status: 0 the host runs the revision it was asked to, 1 that revision
// failed, was rolled back or refused (invalid, unverified), 3 changes are
// suspended.
func controlExit(s *agent.Status) error {
	switch {
	case s.Suspended:
		return exitStatus(exitSuspended)
	case s.Commit == "", s.Result != agent.ResultApplied, s.LastError != "":
		// No revision in force yet (an invalid first tip, offline
		// from the start) is not converged either, nor is a host that
		// keeps its last good revision because the tip was refused
		// (the result is then the last good one's).
		return exitStatus(exitNo)
	}
	return nil
}

// controlLong is the help of the control commands whose exit status says
// more than "it ran".
var controlLong = map[string]string{
	"reconcile": `Reconcile asks the running agent to poll the source and run a full converge
now, waits for the result and prints the status.
Exit status: 0 the host runs the revision, applied; 1 that revision failed,
was rolled back or refused (invalid, unverified), or none is in force yet;
3 changes are suspended; 2 error (no agent on the socket, the timeout).`,
	"retry": `Retry forgets the failed revisions and the image tags marked bad on this host,
tries the newest revision again and prints the status.
Exit status: as reconcile's.`,
}

var (
	newReconcileCmd = newControlCmd("reconcile", "Ask the agent to poll and converge now, and wait for the result")
	newSuspendCmd   = newControlCmd("suspend", "Pause changes on this host for maintenance; drift is reported, not repaired")
	newResumeCmd    = newControlCmd("resume", "Resume changes after suspend")
	newRetryCmd     = newControlCmd("retry", "Try failed revisions again")
)

// withDigest is an OCI artifact's digest, shown beside the commit it was
// packed from.
func withDigest(d string) string {
	if d == "" {
		return ""
	}
	return " (" + spec.Quote(d) + ")"
}

func (g *globals) printStatus(s *agent.Status) error {
	if g.json {
		return agent.WriteJSON(g.stdout, s)
	}
	w := g.stdout
	// Every string here may come from the repository, the host or the state
	// file: q quotes one that holds a control character, so that it can
	// neither forge a line nor drive the terminal.
	q := spec.Quote
	fmt.Fprintf(w, "host:      %s (from the %s)\n", q(s.Host), q(s.Source))
	if s.RolledBack != "" {
		// The result is the pass's, not the commit's: the commit in
		// force is the good one that the host went back to.
		fmt.Fprintf(w, "revision:  %s%s in force again after a rollback\n", q(orDash(s.Commit)), withDigest(s.Digest))
		fmt.Fprintf(w, "rolled back: %s%s (not retried until a newer commit or outpost retry)\n", q(s.RolledBack), withDigest(s.RolledBackDigest))
	} else {
		fmt.Fprintf(w, "revision:  %s%s %s\n", q(orDash(s.Commit)), withDigest(s.Digest), q(s.Result))
	}
	fmt.Fprintf(w, "last good: %s%s\n", q(orDash(s.LastGood)), withDigest(s.LastGoodDigest))
	if s.Suspended {
		fmt.Fprintln(w, "suspended: yes (changes paused; drift is reported, not repaired)")
	}
	if h := s.Held; h != nil {
		fmt.Fprintf(w, "held:      %s since %s (%s)\n", q(h.Commit), h.Since.Format(time.RFC3339), q(h.Reason))
	}
	switch {
	case s.WindowOpen:
		fmt.Fprintln(w, "window:    open")
	case !s.NextWindow.IsZero():
		fmt.Fprintf(w, "window:    closed; the next opens at %s\n", s.NextWindow.Format(time.RFC3339))
	case s.Held != nil && !s.Held.NextWindow.IsZero():
		fmt.Fprintf(w, "window:    the next opens at %s\n", s.Held.NextWindow.Format(time.RFC3339))
	}
	if !s.LastPoll.IsZero() {
		line := s.LastPoll.Format(time.RFC3339)
		if s.Offline {
			line += " (offline: " + q(s.LastPollError) + ")"
		}
		fmt.Fprintf(w, "last poll: %s\n", line)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "error:     %s\n", q(s.LastError))
	}
	if s.Source == "daemon" {
		fmt.Fprintf(w, "drift:     %d repaired, %d reported\n", s.DriftRepaired, s.DriftDetected)
	}
	for rev, f := range s.Failed {
		fmt.Fprintf(w, "failed:    %s %s: %s\n", q(rev), q(f.Result), q(f.Reason))
	}
	for _, r := range s.Resources {
		line := fmt.Sprintf("  %-9s %-40s %s", q(r.Kind), q(r.Name), q(r.State))
		if r.Repairs > 0 {
			line += fmt.Sprintf(" (%d repairs)", r.Repairs)
		}
		if r.Drifted {
			line += " (drifted)"
		}
		if r.Error != "" {
			line += ": " + q(r.Error)
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
