package rollout

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
)

const (
	commitOld = "1111111111111111111111111111111111111111"
	commitNew = "2222222222222222222222222222222222222222"
	commitFix = "3333333333333333333333333333333333333333"
)

// plan is a rollout of a canary (one host), an early ring (three hosts, two
// of which must be healthy, for 10 minutes) and the rest.
func plan(t *testing.T) *spec.Rollout {
	t.Helper()
	rp, err := spec.Load(fstest.MapFS{
		"fleet.yaml": {Data: []byte(`targets: [{path: app}]
rollout:
  - {name: canary, selector: {names: [c1]}, min_healthy: 1, soak: 5m}
  - {name: early, selector: {labels: {ring: early}}, min_healthy: 2, soak: 10m, max_failed: 1}
`)},
		"app/a.yaml": {Data: []byte("kind: container\nname: app\nimage: example.org/a\ntag: \"1\"\n")},
	}, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rp.Rollout()
}

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// host is a host's latest note: on commit with result, healthy ago (0:
// not healthy), written ago.
func host(name, ring, commit string, result status.Result, healthy, written time.Duration) status.HostStatus {
	n := status.New(name, commit, result, now.Add(-written))
	if ring != "" {
		n.Labels = map[string]string{"ring": ring}
	}
	if healthy > 0 {
		n.HealthyAt = now.Add(-healthy)
	}
	return status.HostStatus{Host: name, Note: &n}
}

func TestDecide(t *testing.T) {
	r := plan(t)
	const ok, bad = status.Applied, status.RolledBack
	m := time.Minute
	canaryOn := func(c string, res status.Result, healthy time.Duration) status.HostStatus {
		return host("c1", "", c, res, healthy, healthy)
	}
	early := func(name, c string, res status.Result, healthy, written time.Duration) status.HostStatus {
		return host(name, "early", c, res, healthy, written)
	}
	tests := []struct {
		name   string
		self   spec.Host
		hosts  []status.HostStatus
		since  time.Duration // how long ago the commit was first seen
		later  func(string) bool
		want   bool
		halted bool
		reason string
	}{
		{name: "the canary takes every commit", self: spec.Host{Name: "c1"}, want: true},
		{name: "early waits for the canary to apply",
			self:  spec.Host{Name: "e1", Labels: map[string]string{"ring": "early"}},
			hosts: []status.HostStatus{canaryOn(commitOld, ok, 30*m)}, since: time.Minute,
			reason: "waiting for wave canary (0/1 healthy)"},
		{name: "early waits for the canary's soak",
			self:   spec.Host{Name: "e1", Labels: map[string]string{"ring": "early"}},
			hosts:  []status.HostStatus{canaryOn(commitNew, ok, 2*m)},
			reason: "waiting for wave canary (0/1 healthy, soak 3m0s left)"},
		{name: "early goes once the canary soaked",
			self:  spec.Host{Name: "e1", Labels: map[string]string{"ring": "early"}},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 5*m)}, want: true},
		{name: "a descendant counts",
			self:  spec.Host{Name: "e1", Labels: map[string]string{"ring": "early"}},
			hosts: []status.HostStatus{canaryOn(commitFix, ok, 6*m)},
			later: func(c string) bool { return c == commitFix }, want: true},
		{name: "a commit that is not known to descend does not count",
			self:   spec.Host{Name: "e1", Labels: map[string]string{"ring": "early"}},
			hosts:  []status.HostStatus{canaryOn(commitFix, ok, 6*m)},
			reason: "waiting for wave canary (0/1 healthy)"},
		{name: "a canary that rolled back halts the commit",
			self:   spec.Host{Name: "x9"},
			hosts:  []status.HostStatus{canaryOn(commitNew, bad, 0), early("e1", commitOld, ok, 60*m, 10*time.Second)},
			halted: true, reason: "commit 222222222222 halted: wave canary failed on 1 of 1 hosts (max_failed 0)"},
		{name: "the rest wait for the early ring",
			self: spec.Host{Name: "x9"},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 60*m),
				early("e1", commitNew, ok, 11*m, 11*m), early("e2", commitNew, ok, 4*m, 4*m), early("e3", commitOld, ok, 50*m, 10*time.Second)},
			reason: "waiting for wave early (1/2 healthy, soak 6m0s left)"},
		{name: "the rest go when two of the early ring soaked",
			self: spec.Host{Name: "x9"},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 60*m),
				early("e1", commitNew, ok, 11*m, 11*m), early("e2", commitNew, ok, 10*m, 10*m), early("e3", commitOld, ok, 50*m, 10*time.Second)},
			want: true},
		{name: "one failure in the early ring is allowed",
			self: spec.Host{Name: "x9"},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 60*m),
				early("e1", commitNew, ok, 11*m, 11*m), early("e2", commitNew, ok, 10*m, 10*m), early("e3", commitNew, status.Failed, 0, m)},
			want: true},
		{name: "two failures in the early ring halt it",
			self: spec.Host{Name: "x9"},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 60*m),
				early("e1", commitNew, ok, 11*m, 11*m), early("e2", commitNew, status.Invalid, 0, m), early("e3", commitNew, status.Failed, 0, m)},
			halted: true, reason: "commit 222222222222 halted: wave early failed on 2 of 3 hosts (max_failed 1)"},
		{name: "an offline host stops counting after alive",
			self: spec.Host{Name: "x9"},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 60*m),
				early("e1", commitNew, ok, 11*m, 11*m), early("e3", commitOld, ok, 50*m, 50*m)},
			since: 10 * m, want: true},
		{name: "an offline host counts while the commit is young",
			self: spec.Host{Name: "x9"},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 60*m),
				early("e1", commitNew, ok, 11*m, 11*m), early("e3", commitOld, ok, 50*m, 50*m)},
			since: time.Minute, reason: "waiting for wave early (1/2 healthy)"},
		{name: "a wave whose every host is offline holds",
			self:   spec.Host{Name: "e1", Labels: map[string]string{"ring": "early"}},
			hosts:  []status.HostStatus{canaryOn(commitOld, ok, 50*m)},
			since:  10 * m,
			reason: "waiting for wave canary (0/1 healthy)"},
		{name: "a wave with no host passes",
			self:  spec.Host{Name: "x9"},
			hosts: []status.HostStatus{canaryOn(commitNew, ok, 60*m)}, want: true},
		{name: "a host's own note does not count",
			self:   spec.Host{Name: "e1", Labels: map[string]string{"ring": "early"}},
			hosts:  []status.HostStatus{early("e1", commitNew, ok, 60*m, 60*m), canaryOn(commitOld, ok, 60*m)},
			since:  time.Minute,
			reason: "waiting for wave canary (0/1 healthy)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Rollout: r, Commit: commitNew, Hosts: tt.hosts, Now: now, Alive: 3 * time.Minute, Since: now.Add(-tt.since), Later: tt.later}
			d := Decide(in, tt.self)
			if d.Go != tt.want || d.Halted != tt.halted || d.Reason != tt.reason {
				t.Errorf("Decide = go %v, halted %v, %q; want go %v, halted %v, %q\nwaves: %s", d.Go, d.Halted, d.Reason, tt.want, tt.halted, tt.reason, describe(d.Waves))
			}
		})
	}
}

func describe(ws []Wave) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "%s: %+v\n", w.Name, w)
	}
	return b.String()
}

// TestWavesStates classifies every host of a fleet view.
func TestWavesStates(t *testing.T) {
	r := plan(t)
	m := time.Minute
	hosts := []status.HostStatus{
		host("c1", "", commitNew, status.Applied, 10*m, 10*m),
		host("e1", "early", commitNew, status.Applied, 2*m, 2*m),
		host("e2", "early", commitNew, status.Applied, 0, 10*time.Second),
		host("e3", "early", commitNew, status.Failed, 0, m),
		host("x1", "", commitOld, status.Applied, 60*m, 20*time.Second),
		host("x2", "", commitOld, status.Applied, 60*m, 60*m),
		{Host: "x3"},
	}
	ws := Waves(Input{Rollout: r, Commit: commitNew, Hosts: hosts, Now: now, Alive: 3 * m})
	got := map[string]State{}
	for _, w := range ws {
		for _, h := range w.Hosts {
			got[h.Host] = h.State
		}
	}
	want := map[string]State{"c1": Healthy, "e1": Soaking, "e2": Applied, "e3": Failed, "x1": Waiting, "x2": Offline, "x3": Offline}
	for h, s := range want {
		if got[h] != s {
			t.Errorf("host %s is %q, want %q", h, got[h], s)
		}
	}
	if !ws[0].Passed || ws[1].Passed || ws[1].Halted || ws[2].Counted != 1 || Halted(ws) {
		t.Errorf("waves:\n%s", describe(ws))
	}
}
