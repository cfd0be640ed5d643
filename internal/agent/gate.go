package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-gitops/outpost/internal/rollout"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/status"
)

// ImmediateTrailer is the commit trailer that skips the rollout's gates
// and the maintenance windows: an emergency fix goes to every host at its
// next poll. With source.verify set, only a verified commit is applied,
// trailer or not.
const ImmediateTrailer = "Outpost-Rollout: immediate"

// gatePolicy is what the revision in force says about taking a newer one:
// fleet.yaml's rollout and this host's maintenance windows.
type gatePolicy struct {
	rev     string
	rollout *spec.Rollout
	windows []spec.Window
}

// gateInput is what a gate decision reads of the runner, copied so that
// the daemon's poll goroutine decides beside its loop.
type gateInput struct {
	cfg *Config
	// inForce is the last good revision: the one whose policy counts.
	inForce string
	held    *state.Held
	policy  *gatePolicy // the policy read last, reused for the same revision
	now     time.Time
	// failed are the revisions that failed here (never changed in place:
	// the runner replaces the map), which are not applied again.
	failed    map[string]state.Failure
	suspended bool
}

// gateInput copies what a decision needs.
func (p *runner) gateInput() gateInput {
	return gateInput{cfg: p.cfg, inForce: p.st.LastGood, held: p.st.Held, policy: p.policy, now: time.Now(),
		failed: p.st.Failed, suspended: p.st.Suspended}
}

// gated is a gate's decision about a tip.
type gated struct {
	// hold is why the tip waits; nil when it may be applied.
	hold   *state.Held
	policy *gatePolicy
}

// commitReader is a revision source that reads commits: their messages
// and ancestry (Git).
type commitReader interface {
	Message(rev string) (string, error)
	Descends(commit, ancestor string) bool
}

// gate decides whether this host may take tip now. A host with nothing in
// force, a tip that is in force, a repository without a rollout or
// windows, and a commit with the immediate trailer go at once. The notes
// are read only when the host's wave is not the first, so a poll that
// brings nothing new costs nothing more.
func gate(ctx context.Context, in gateInput, src revSource, tip string) gated {
	if _, failed := in.failed[tip]; failed || in.suspended || in.inForce == "" || tip == in.inForce || tip == "" {
		return gated{policy: in.policy}
	}
	pol := in.policy
	if pol == nil || pol.rev != in.inForce {
		var err error
		if pol, err = readPolicy(ctx, in.cfg, src, in.inForce); err != nil {
			// The revision in force was valid when it was applied; one
			// that cannot be read now (a cache cloned again) holds
			// nothing back.
			return gated{}
		}
	}
	g := gated{policy: pol}
	if pol.rollout == nil && len(pol.windows) == 0 {
		return g
	}
	if cr, ok := src.(commitReader); ok {
		if msg, err := cr.Message(tip); err == nil && hasTrailer(msg, ImmediateTrailer) {
			return g
		}
	}
	since := in.now
	if in.held != nil && in.held.Commit == tip {
		since = in.held.Since
		if in.held.State == status.HoldHalted {
			// A halted commit stays halted: its notes are not read
			// again, and only a newer commit starts a rollout.
			return gated{hold: in.held, policy: pol}
		}
	}
	hold := &state.Held{Commit: tip, Since: since}
	if len(pol.windows) > 0 {
		next, open := windowState(pol.windows, in.now)
		hold.NextWindow = next
		if !open {
			hold.State = status.HoldWindow
			hold.Reason = "outside the maintenance windows; the next opens at " + next.Format(time.RFC3339)
			if next.IsZero() {
				hold.Reason = "outside the maintenance windows, none of which opens again"
			}
			g.hold = hold
			return g
		}
	}
	if pol.rollout == nil {
		return g
	}
	self := spec.Host{Name: in.cfg.Host.Name, Labels: in.cfg.Host.Labels}
	hold.Wave = pol.rollout.WaveName(pol.rollout.WaveOf(self))
	if pol.rollout.WaveOf(self) == 0 {
		return g
	}
	o, url, err := FleetOptions(in.cfg)
	var hosts []status.HostStatus
	if err == nil {
		hosts, err = status.Fleet(ctx, url, o)
	}
	if err != nil {
		hold.State = status.HoldWaiting
		hold.Reason = "cannot read the fleet's notes: " + err.Error()
		g.hold = hold
		return g
	}
	rin := rollout.Input{Rollout: pol.rollout, Commit: tip, Hosts: hosts, Now: in.now, Since: since, Alive: aliveTime(in.cfg, pol.rollout)}
	if cr, ok := src.(commitReader); ok {
		rin.Later = func(c string) bool { return cr.Descends(c, tip) }
	}
	d := rollout.Decide(rin, self)
	if d.Go {
		return g
	}
	hold.State, hold.Reason = status.HoldWaiting, d.Reason
	if d.Halted {
		hold.State = status.HoldHalted
	}
	g.hold = hold
	return g
}

// readPolicy reads the rollout and this host's windows from rev.
func readPolicy(ctx context.Context, cfg *Config, src revSource, rev string) (*gatePolicy, error) {
	snap, err := src.Snapshot(ctx, rev)
	if err != nil {
		return nil, err
	}
	repo, err := spec.Load(snap.FS, spec.Options{})
	if err != nil {
		return nil, err
	}
	host := spec.Host{Name: cfg.Host.Name, Labels: cfg.Host.Labels}
	return &gatePolicy{rev: rev, rollout: repo.Rollout(), windows: repo.Windows(host)}, nil
}

// aliveTime is the rollout's alive, or three poll intervals.
func aliveTime(cfg *Config, r *spec.Rollout) time.Duration {
	if r.Alive > 0 {
		return r.Alive
	}
	i := time.Duration(cfg.Source.Interval)
	if i <= 0 {
		i = time.Minute
	}
	return 3 * i
}

// windowState reports whether one of windows is open at now, and when the
// next one opens.
func windowState(windows []spec.Window, now time.Time) (next time.Time, open bool) {
	for _, w := range windows {
		if w.OpenAt(now) {
			open = true
		}
		if n := w.NextOpen(now); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next, open
}

// repairNow reports whether drift is repaired now: always, unless the
// host's windows (those of the revision in force) are all closed and one
// of them says drift_outside: warn.
func repairNow(desired *spec.State, now time.Time) bool {
	if desired == nil || len(desired.Windows) == 0 {
		return true
	}
	if _, open := windowState(desired.Windows, now); open {
		return true
	}
	for _, w := range desired.Windows {
		if !w.RepairOutside {
			return false
		}
	}
	return true
}

// hasTrailer reports whether msg's last paragraph holds the trailer line.
func hasTrailer(msg, trailer string) bool {
	msg = strings.TrimRight(msg, "\n")
	last := msg
	if i := strings.LastIndex(msg, "\n\n"); i >= 0 {
		last = msg[i+2:]
	}
	for _, line := range strings.Split(last, "\n") {
		if strings.EqualFold(strings.TrimSpace(line), trailer) {
			return true
		}
	}
	return false
}

// holdNote is what a note says of a hold.
func holdNote(h *state.Held) *status.Hold {
	if h == nil {
		return nil
	}
	return &status.Hold{Commit: h.Commit, Wave: h.Wave, State: h.State, Reason: h.Reason}
}

// describeHold is the one line that status, logs and reports use.
func describeHold(h *state.Held) string {
	return fmt.Sprintf("holding %s: %s", shortRev(h.Commit), h.Reason)
}
