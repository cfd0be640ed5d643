package spec

import (
	"fmt"
	"testing"
	"testing/fstest"
	"time"
)

// loadFleet loads a repository of one manifest and fleet.yaml.
func loadFleet(t *testing.T, fleet string) *Repo {
	t.Helper()
	fsys := fstest.MapFS{
		"fleet.yaml":   {Data: []byte(fleet)},
		"app/app.yaml": {Data: []byte("kind: file\npath: /etc/app\ncontent: x\n")},
	}
	rp, err := Load(fsys, Options{})
	if err != nil {
		t.Fatalf("Load:\n%s\n= %v", fleet, err)
	}
	return rp
}

func TestRolloutForms(t *testing.T) {
	list := loadFleet(t, "targets: [{path: app}]\nrollout:\n  - {name: canary, selector: {names: [c1]}, soak: 5m}\n  - {share: 10%, min_healthy: 90%, max_failed: 2}\n")
	full := loadFleet(t, "targets: [{path: app}]\nrollout:\n  alive: 4m\n  max_failed: 1\n  waves:\n    - {selector: {labels: {ring: early}}, min_healthy: 2}\n")
	tests := []struct {
		name string
		r    *Rollout
		want []Wave
		live time.Duration
	}{
		{"list", list.Rollout(), []Wave{
			{Name: "canary", MinHealthy: Quota{Percent: 100}, Soak: 5 * time.Minute},
			{Name: "wave 2", Share: 0.1, MinHealthy: Quota{Percent: 90}, MaxFailed: 2},
		}, 0},
		{"mapping", full.Rollout(), []Wave{
			{Name: "wave 1", MinHealthy: Quota{Count: 2}, MaxFailed: 1},
		}, 4 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r == nil {
				t.Fatal("Rollout() = nil")
			}
			if tt.r.Alive != tt.live {
				t.Errorf("Alive = %v, want %v", tt.r.Alive, tt.live)
			}
			if len(tt.r.Waves) != len(tt.want) {
				t.Fatalf("%d waves, want %d", len(tt.r.Waves), len(tt.want))
			}
			for i, w := range tt.r.Waves {
				want := tt.want[i]
				if w.Name != want.Name || w.Share != want.Share || w.MinHealthy != want.MinHealthy || w.Soak != want.Soak || w.MaxFailed != want.MaxFailed {
					t.Errorf("wave %d = %+v, want %+v", i, w, want)
				}
			}
		})
	}
	if r := loadFleet(t, "targets: [{path: app}]\n").Rollout(); r != nil {
		t.Errorf("Rollout() without rollout = %+v, want nil", r)
	}
}

// TestWaveOf checks that selector waves pick by labels and names in order,
// that share waves take their share of what is left, the same for every
// run, and that the rest fall into the last wave.
func TestWaveOf(t *testing.T) {
	r := loadFleet(t, "targets: [{path: app}]\nrollout:\n  - {selector: {names: [canary]}}\n  - {share: 10%}\n  - {selector: {labels: {ring: early}}}\n  - {share: 50%}\n").Rollout()
	for _, tt := range []struct {
		host Host
		want int
	}{
		{Host{Name: "canary", Labels: map[string]string{"ring": "early"}}, 0},
	} {
		if got := r.WaveOf(tt.host); got != tt.want {
			t.Errorf("WaveOf(%v) = %d, want %d", tt.host, got, tt.want)
		}
	}
	counts := make([]int, 5)
	const n = 20000
	for i := range n {
		h := Host{Name: fmt.Sprintf("edge-%05d", i)}
		w := r.WaveOf(h)
		if again := r.WaveOf(h); again != w {
			t.Fatalf("WaveOf(%s) = %d, then %d", h.Name, w, again)
		}
		if w == 2 {
			t.Fatalf("WaveOf(%s) = 2, a selector wave that it does not match", h.Name)
		}
		counts[w]++
	}
	// 10% of all, then 50% of the remaining 90% (45%), then the rest
	// (45%), each within 1.5 points.
	for _, c := range []struct {
		wave int
		want float64
	}{{1, 0.10}, {3, 0.45}, {4, 0.45}} {
		if got := float64(counts[c.wave]) / n; got < c.want-0.015 || got > c.want+0.015 {
			t.Errorf("wave %d took %.3f of the hosts, want %.2f", c.wave, got, c.want)
		}
	}
	if h := (Host{Name: "x", Labels: map[string]string{"ring": "early"}}); r.WaveOf(h) != 1 && r.WaveOf(h) != 2 {
		t.Errorf("WaveOf(ring=early) = %d, want the 10%% wave (when its hash falls there) or the early wave", r.WaveOf(h))
	}
}

func TestQuotaOf(t *testing.T) {
	for _, tt := range []struct {
		q    Quota
		n    int
		want int
	}{
		{Quota{Count: 3}, 5, 3},
		{Quota{Count: 3}, 2, 2},
		{Quota{Percent: 100}, 5, 5},
		{Quota{Percent: 75}, 4, 3},
		{Quota{Percent: 75}, 3, 3},
		{Quota{Percent: 10}, 1, 1},
		{Quota{Percent: 50}, 0, 0},
	} {
		if got := tt.q.Of(tt.n); got != tt.want {
			t.Errorf("%s.Of(%d) = %d, want %d", tt.q, tt.n, got, tt.want)
		}
	}
}

// TestWindows reads windows at instants around their edges, across both
// daylight saving changes of Europe/Berlin in 2026 (29 March: 02:00 CET
// becomes 03:00 CEST; 25 October: 03:00 CEST becomes 02:00 CET).
func TestWindows(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	rp := loadFleet(t, `targets:
  - path: app
    windows:
      - {cron: "30 2 * * *", duration: 1h, timezone: Europe/Berlin}
windows:
  - {cron: "0 22 * * 1-5", duration: 2h, selector: {labels: {site: office}}, drift_outside: warn}
  - {cron: "0 12 1 * *", duration: 30m}
`)
	office := rp.Windows(Host{Name: "a", Labels: map[string]string{"site": "office"}})
	other := rp.Windows(Host{Name: "b"})
	if len(office) != 3 || len(other) != 2 {
		t.Fatalf("Windows = %d for the office host, %d for another; want 3 and 2", len(office), len(other))
	}
	weekday, monthly, night := office[0], office[1], office[2]
	if night.Cron != "30 2 * * *" || weekday.RepairOutside || !night.RepairOutside || monthly.Location != time.UTC {
		t.Fatalf("windows read as %+v, %+v, %+v", night, weekday, monthly)
	}
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tt := range []struct {
		w    Window
		at   time.Time
		open bool
		next time.Time
	}{
		// An ordinary night: 02:30 to 03:30 CET is 01:30 to 02:30 UTC.
		{night, utc("2026-01-10T01:29:59Z"), false, utc("2026-01-10T01:30:00Z")},
		{night, utc("2026-01-10T01:30:00Z"), true, utc("2026-01-11T01:30:00Z")},
		{night, utc("2026-01-10T02:29:59Z"), true, utc("2026-01-11T01:30:00Z")},
		{night, utc("2026-01-10T02:30:00Z"), false, utc("2026-01-11T01:30:00Z")},
		// 29 March: 02:30 does not exist; the window starts when the
		// clocks have moved, at 03:30 CEST (01:30 UTC), for its hour.
		{night, utc("2026-03-29T01:00:00Z"), false, utc("2026-03-29T01:30:00Z")},
		{night, utc("2026-03-29T01:45:00Z"), true, utc("2026-03-30T00:30:00Z")},
		{night, utc("2026-03-29T02:30:00Z"), false, utc("2026-03-30T00:30:00Z")},
		// The next night, 02:30 CEST is 00:30 UTC.
		{night, utc("2026-03-30T00:30:00Z"), true, utc("2026-03-31T00:30:00Z")},
		// 25 October: 02:30 comes twice; the window opens once, for an
		// hour.
		{night, utc("2026-10-25T00:15:00Z"), false, time.Date(2026, 10, 25, 2, 30, 0, 0, berlin)},
		{night, time.Date(2026, 10, 25, 2, 30, 0, 0, berlin).Add(59 * time.Minute), true, utc("2026-10-26T01:30:00Z")},
		{night, time.Date(2026, 10, 25, 2, 30, 0, 0, berlin).Add(61 * time.Minute), false, utc("2026-10-26T01:30:00Z")},
		// Weekdays at 22:00 UTC for 2h: Friday night runs into Saturday.
		{weekday, utc("2026-12-04T23:59:00Z"), true, utc("2026-12-07T22:00:00Z")},
		{weekday, utc("2026-12-05T22:30:00Z"), false, utc("2026-12-07T22:00:00Z")},
		// A window on the first of each month.
		{monthly, utc("2026-12-01T12:29:59Z"), true, utc("2027-01-01T12:00:00Z")},
		{monthly, utc("2026-12-02T12:10:00Z"), false, utc("2027-01-01T12:00:00Z")},
	} {
		if got := tt.w.OpenAt(tt.at); got != tt.open {
			t.Errorf("%q (%v in %s).OpenAt(%s) = %v, want %v", tt.w.Cron, tt.w.Duration, tt.w.Location, tt.at.UTC().Format(time.RFC3339), got, tt.open)
		}
		if got := tt.w.NextOpen(tt.at); !got.Equal(tt.next) {
			t.Errorf("%q.NextOpen(%s) = %s, want %s", tt.w.Cron, tt.at.UTC().Format(time.RFC3339), got.UTC().Format(time.RFC3339), tt.next.UTC().Format(time.RFC3339))
		}
	}
}
