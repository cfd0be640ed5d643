// Package rollout decides whether a host may take a new commit: the waves
// of fleet.yaml's rollout, gated on the other hosts' status notes, and the
// host's maintenance windows. It reads notes and the fleet file's rollout;
// it fetches nothing and changes nothing, so the agent's pass and `outpost
// fleet --rollout` make the same decision from the same notes.
package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
)

// State is where one host stands in the rollout of a commit.
type State string

// The states of a host in a rollout.
const (
	// Healthy: applied the commit (or a later one) and stayed healthy for
	// the wave's soak.
	Healthy State = "healthy"
	// Soaking: applied and healthy, for less than the wave's soak.
	Soaking State = "soaking"
	// Applied: applied, not healthy yet.
	Applied State = "applied"
	// Failed: its note on the commit reports a failure (failed,
	// rolled-back, invalid, unverified).
	Failed State = "failed"
	// Waiting: not on the commit yet, and alive.
	Waiting State = "waiting"
	// Offline: not on the commit, and no note within the alive time: it
	// does not count in its wave.
	Offline State = "offline"
)

// Input is what a decision is made from.
type Input struct {
	Rollout *spec.Rollout
	// Commit is the commit being rolled out.
	Commit string
	// Hosts are the fleet's hosts, as their latest notes say.
	Hosts []status.HostStatus
	// Later reports whether a note's commit is Commit or descends from it;
	// nil means equality.
	Later func(commit string) bool
	Now   time.Time
	// Alive is how recent a host's note must be for the host to count.
	Alive time.Duration
	// Since is when the deciding host first saw Commit pending: for Alive
	// after it, every host counts, so that hosts have time to poll.
	Since time.Time
}

// HostState is one host's state in the rollout.
type HostState struct {
	Host  string `json:"host"`
	State State  `json:"state"`
	// Commit is the commit of the host's latest note.
	Commit string `json:"commit,omitempty"`
}

// Wave is the state of one wave.
type Wave struct {
	Name     string      `json:"name"`
	Selector string      `json:"selector"`
	Hosts    []HostState `json:"hosts"`
	// Counted is the number of hosts that count: all but the offline.
	Counted int `json:"counted"`
	// Healthy counts the hosts healthy for the soak; Need is how many
	// must be.
	Healthy int `json:"healthy"`
	Need    int `json:"need"`
	Failed  int `json:"failed"`
	// MaxFailed is how many may fail before the commit is halted.
	MaxFailed int `json:"max_failed"`
	// SoakLeft is the time until the next soaking host has soaked, when
	// the wave waits on one.
	SoakLeft time.Duration `json:"soak_left,omitempty"`
	Passed   bool          `json:"passed"`
	Halted   bool          `json:"halted"`
}

// Waves returns the state of every wave of in.Rollout, the implicit last
// wave included, for in.Commit.
func Waves(in Input) []Wave {
	r := in.Rollout
	out := make([]Wave, len(r.Waves)+1)
	for i := range out {
		out[i] = Wave{Name: r.WaveName(i), Hosts: []HostState{}, Need: 0}
		if i < len(r.Waves) {
			out[i].Selector = r.Waves[i].Selector()
			out[i].MaxFailed = r.Waves[i].MaxFailed
		} else {
			out[i].Selector = "every other host"
		}
	}
	soakLeft := make([][]time.Duration, len(out))
	for _, h := range in.Hosts {
		labels := map[string]string{}
		if h.Note != nil {
			labels = h.Note.Labels
		}
		i := r.WaveOf(spec.Host{Name: h.Host, Labels: labels})
		hs, left := in.state(h, soakOf(r, i))
		w := &out[i]
		w.Hosts = append(w.Hosts, hs)
		switch hs.State {
		case Healthy:
			w.Healthy++
		case Soaking:
			soakLeft[i] = append(soakLeft[i], left)
		case Failed:
			w.Failed++
		}
		if hs.State != Offline {
			w.Counted++
		}
	}
	for i := range out {
		w := &out[i]
		if i < len(r.Waves) {
			w.Need = r.Waves[i].MinHealthy.Of(w.Counted)
			if w.Need == 0 && w.Counted == 0 && len(w.Hosts) > 0 && r.Waves[i].MinHealthy != (spec.Quota{}) {
				// Every host of the wave is offline: nothing has
				// tried the commit, so the wave does not pass.
				w.Need = 1
			}
		} else {
			w.Need = w.Counted // the last wave gates nothing after it
		}
		w.Halted = w.Failed > w.MaxFailed
		w.Passed = !w.Halted && w.Healthy >= w.Need
		if !w.Passed && len(soakLeft[i]) > 0 {
			w.SoakLeft = slices.Min(soakLeft[i])
		}
	}
	return out
}

// soakOf is wave i's soak (0 for the implicit last wave).
func soakOf(r *spec.Rollout, i int) time.Duration {
	if i < len(r.Waves) {
		return r.Waves[i].Soak
	}
	return 0
}

// state classifies one host, and returns what is left of its soak.
func (in Input) state(h status.HostStatus, soak time.Duration) (HostState, time.Duration) {
	hs := HostState{Host: h.Host, State: Offline}
	n := h.Note
	if n == nil {
		return hs, 0
	}
	hs.Commit = n.Commit
	later := n.Commit == in.Commit || (in.Later != nil && in.Later(n.Commit))
	switch {
	case later && n.Result.Failure():
		hs.State = Failed
	case later && n.HealthyAt.IsZero():
		hs.State = Applied
	case later && in.Now.Sub(n.HealthyAt) >= soak:
		hs.State = Healthy
	case later:
		hs.State = Soaking
		return hs, soak - in.Now.Sub(n.HealthyAt)
	case in.Now.Sub(reportedAt(n)) <= in.Alive || (!in.Since.IsZero() && in.Now.Sub(in.Since) < in.Alive):
		hs.State = Waiting
	}
	return hs, 0
}

// reportedAt is when a note was last written: its reported_at, or for a
// note without one, its latest time.
func reportedAt(n *status.Note) time.Time {
	t := n.ReportedAt
	if n.AppliedAt.After(t) {
		t = n.AppliedAt
	}
	if n.HealthyAt.After(t) {
		t = n.HealthyAt
	}
	return t
}

// Decision is whether one host may take the commit.
type Decision struct {
	// Wave is the host's wave.
	Wave string
	// Go is true when every earlier wave has passed.
	Go bool
	// Halted is true when an earlier wave failed the commit: no later
	// wave takes it.
	Halted bool
	// Reason says why the host waits, for status and its note.
	Reason string
	Waves  []Wave
}

// Decide decides for self, a host of the fleet.
func Decide(in Input, self spec.Host) Decision {
	r := in.Rollout
	k := r.WaveOf(self)
	d := Decision{Wave: r.WaveName(k), Go: true}
	if k == 0 {
		return d // the first wave takes every commit
	}
	hosts := make([]status.HostStatus, 0, len(in.Hosts))
	for _, h := range in.Hosts {
		if h.Host != self.Name {
			hosts = append(hosts, h)
		}
	}
	in.Hosts = hosts
	d.Waves = Waves(in)
	for j := range k {
		if w := d.Waves[j]; w.Halted {
			d.Go, d.Halted = false, true
			d.Reason = fmt.Sprintf("commit %s halted: wave %s failed on %d of %d hosts (max_failed %d)", short(in.Commit), w.Name, w.Failed, w.Counted, w.MaxFailed)
			return d
		}
	}
	for j := range k {
		if w := d.Waves[j]; !w.Passed {
			d.Go = false
			d.Reason = "waiting for wave " + w.Name + " (" + w.Progress() + ")"
			return d
		}
	}
	return d
}

// Progress says how far the wave is: "3/5 healthy, soak 4m left".
func (w Wave) Progress() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d healthy", w.Healthy, w.Need)
	if w.SoakLeft > 0 {
		fmt.Fprintf(&b, ", soak %s left", w.SoakLeft.Round(time.Second))
	}
	if w.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", w.Failed)
	}
	return b.String()
}

// Halted reports whether any wave halted the commit.
func Halted(waves []Wave) bool {
	return slices.ContainsFunc(waves, func(w Wave) bool { return w.Halted })
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
