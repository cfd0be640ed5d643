package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// rolloutFleet is fleet.yaml with a canary wave of host canary, soaking for
// an hour, and optional extra lines.
func rolloutFleet(extra string) string {
	return "targets: [{path: app}]\nrollout:\n  - {name: canary, selector: {names: [canary]}, min_healthy: 1, soak: 1h}\n" + extra
}

func rolloutApp(content string) string {
	return fmt.Sprintf("kind: file\npath: /etc/app.conf\ncontent: %q\n", content)
}

// TestApplyHeldByRollout applies through the one-shot path: a host of the
// last wave holds a new commit while the canary has not soaked, converges
// its last good commit, records the hold in its state, status and note;
// a commit with the emergency trailer goes through; a closed window holds
// a commit whatever the waves say.
func TestApplyHeldByRollout(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(gitserver.Files{"fleet.yaml": rolloutFleet(""), "app/app.yaml": rolloutApp("one")}, "first")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	cfg := sandbox(t, srv.URL("env"))
	cfg.Host.Name = "edge-7"
	cfg.Status.Push = true
	ctx := context.Background()
	if rep, err := Apply(ctx, cfg, nil, ApplyOptions{}); err != nil || rep.Revision != first || rep.Result != ResultApplied {
		t.Fatalf("first Apply = %+v, %v; want %s applied", rep, err, first)
	}

	// The canary runs the first commit, healthy.
	canary, err := status.OpenPath(repo.Path, "canary")
	if err != nil {
		t.Fatal(err)
	}
	cn := status.New("canary", first, status.Applied, time.Now())
	cn.HealthyAt = cn.AppliedAt
	if _, err := canary.Write(ctx, cn, status.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := repo.Commit(gitserver.Files{"app/app.yaml": rolloutApp("two")}, "second")
	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Revision != first || rep.Held == "" {
		t.Fatalf("Apply with the canary pending = revision %s, held %q; want %s held", rep.Revision, rep.Held, first)
	}
	target := filepath.Join(cfg.Root, "etc/app.conf")
	if b, _ := os.ReadFile(target); string(b) != "one" {
		t.Errorf("app.conf = %q while the commit is held, want one", b)
	}
	s, err := StatusFromState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Held == nil || s.Held.Commit != second || s.Held.State != status.HoldWaiting || s.Held.Wave != "the rest" {
		t.Errorf("status held = %+v, want %s waiting in the rest", s.Held, second)
	}
	n := readNoteOf(t, repo.Path, "edge-7", first)
	if n.Rollout == nil || n.Rollout.Commit != second || n.Rollout.State != status.HoldWaiting || n.ReportedAt.IsZero() {
		t.Errorf("note on %s = %+v, want it to hold %s", first, n, second)
	}

	urgent := repo.Commit(gitserver.Files{"app/app.yaml": rolloutApp("three")}, "urgent\n\n"+ImmediateTrailer)
	if rep, err := Apply(ctx, cfg, nil, ApplyOptions{}); err != nil || rep.Revision != urgent || rep.Result != ResultApplied || rep.Held != "" {
		t.Fatalf("Apply of the trailer's commit = %+v, %v; want %s applied", rep, err, urgent)
	}
	if s, _ := StatusFromState(cfg); s.Held != nil {
		t.Errorf("status still holds %+v after the commit applied", s.Held)
	}

	// A window that opened hours ago for one minute is closed.
	start := time.Now().UTC().Add(-3 * time.Hour)
	closed := fmt.Sprintf("windows:\n  - {cron: \"%d %d * * *\", duration: 1m}\n", start.Minute(), start.Hour())
	withWindow := repo.Commit(gitserver.Files{"fleet.yaml": rolloutFleet(closed)}, "window\n\n"+ImmediateTrailer)
	if rep, err := Apply(ctx, cfg, nil, ApplyOptions{}); err != nil || rep.Revision != withWindow {
		t.Fatalf("Apply of the window = %+v, %v", rep, err)
	}
	fourth := repo.Commit(gitserver.Files{"app/app.yaml": rolloutApp("four")}, "fourth")
	rep, err = Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Revision != withWindow || rep.Held == "" {
		t.Fatalf("Apply outside the window = %+v, %v; want %s held", rep, err, withWindow)
	}
	if s, _ := StatusFromState(cfg); s.Held == nil || s.Held.Commit != fourth || s.Held.State != status.HoldWindow || s.Held.NextWindow.IsZero() {
		t.Errorf("status held = %+v, want %s outside the window, with the next", s.Held, fourth)
	}
}

// readNoteOf reads host's note on commit from the bare repository dir.
func readNoteOf(t *testing.T, dir, host, commit string) status.Note {
	t.Helper()
	notes, err := status.OpenPath(dir, host)
	if err != nil {
		t.Fatal(err)
	}
	n, ok, err := notes.Show(commit)
	if err != nil || !ok {
		t.Fatalf("note of %s on %s: %v, %v", host, commit, ok, err)
	}
	return n
}

// BenchmarkGate1000 is the gate's decision for a host of the last wave
// when a commit is pending, in a fleet of 1,000 hosts that each wrote a
// note (ten canaries healthy on the new commit, the others on the old
// one), served by git http-backend after git gc: one listing of the notes
// refs, one shallow fetch of their tips, and the decision. The policy is
// the one read at the first poll, as the daemon keeps it.
func BenchmarkGate1000(b *testing.B) {
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	fleet := "targets: [{path: app}]\nrollout:\n  - {name: canary, selector: {labels: {ring: canary}}, min_healthy: 10, soak: 1m}\n  - {name: early, share: 10%}\n"
	old := repo.Commit(gitserver.Files{"fleet.yaml": fleet, "app/app.yaml": rolloutApp("one")}, "old")
	tip := repo.Commit(gitserver.Files{"app/app.yaml": rolloutApp("two")}, "new")
	ctx := context.Background()
	at := time.Now().Add(-time.Hour)
	for i := range 1000 {
		host := fmt.Sprintf("host-%04d", i)
		notes, err := status.OpenPath(repo.Path, host)
		if err != nil {
			b.Fatal(err)
		}
		n := status.New(host, old, status.Applied, at)
		n.HealthyAt = at
		n.Labels = map[string]string{"site": fmt.Sprint("site-", i%20)}
		if i < 10 {
			n = status.New(host, tip, status.Applied, at)
			n.HealthyAt = at
			n.Labels = map[string]string{"ring": "canary"}
		}
		if _, err := notes.Write(ctx, n, status.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	repo.Git("gc", "-q")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	cfg := sandbox(b, srv.URL("env"))
	cfg.Host.Name = "self-host-in-the-rest" // not in the early wave: checked below
	src, err := newRevSource(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if rev, err := src.Poll(ctx); err != nil || rev != tip {
		b.Fatalf("Poll = %s, %v", rev, err)
	}
	in := gateInput{cfg: cfg, inForce: old, now: time.Now()}
	g := gate(ctx, in, src, tip)
	// The ten canaries soaked; the early wave (about 99 hosts) is on the
	// old commit, so the host waits for it.
	if g.policy == nil || g.policy.rollout.WaveOf(spec.Host{Name: cfg.Host.Name}) != 2 || g.hold == nil || !strings.HasPrefix(g.hold.Reason, "waiting for wave early (0/") {
		b.Fatalf("first gate = %+v; want the host in the last wave, waiting for the early wave", g.hold)
	}
	in.policy = g.policy
	srv.Reset()
	for b.Loop() {
		if g := gate(ctx, in, src, tip); g.hold == nil || g.hold.State != status.HoldWaiting {
			b.Fatalf("gate = %+v, want waiting", g.hold)
		}
	}
	b.ReportMetric(float64(srv.Bytes())/float64(b.N), "fetched-B/op")
	b.ReportMetric(float64(srv.Requests())/float64(b.N), "requests/op")
}

// TestApplyInRealWindow uses a real window of five seconds at the start of
// every minute: outside it, apply holds the new commit; at the next start,
// apply takes it.
func TestApplyInRealWindow(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	fleet := "targets: [{path: app}]\nwindows:\n  - {cron: \"* * * * *\", duration: 5s}\n"
	first := repo.Commit(gitserver.Files{"fleet.yaml": fleet, "app/app.yaml": rolloutApp("one")}, "first")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	cfg := sandbox(t, srv.URL("env"))
	ctx := context.Background()
	if rep, err := Apply(ctx, cfg, nil, ApplyOptions{}); err != nil || rep.Revision != first {
		t.Fatalf("first Apply = %+v, %v", rep, err)
	}
	second := repo.Commit(gitserver.Files{"app/app.yaml": rolloutApp("two")}, "second")
	sleepUntil := func(sec int) {
		now := time.Now()
		at := now.Truncate(time.Minute).Add(time.Duration(sec) * time.Second)
		if !at.After(now) {
			at = at.Add(time.Minute)
		}
		time.Sleep(time.Until(at))
	}
	// The window is closed from 5 s into a minute; 57 s leaves the apply
	// time to finish before the next one opens.
	if s := time.Now().Second(); s < 6 || s > 57 {
		sleepUntil(6)
	}
	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Revision != first || rep.Held == "" {
		t.Fatalf("Apply outside the window = revision %s, held %q, %v; want %s held", rep.Revision, rep.Held, err, first)
	}
	s, _ := StatusFromState(cfg)
	if s.Held == nil || s.Held.State != status.HoldWindow || s.Held.NextWindow.Second() != 0 || time.Until(s.Held.NextWindow) > time.Minute {
		t.Errorf("status held = %+v, want the window state and the next minute's start", s.Held)
	}
	sleepUntil(1)
	rep, err = Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Revision != second || rep.Result != ResultApplied {
		t.Fatalf("Apply in the window = %+v, %v; want %s applied", rep, err, second)
	}
}

// TestRepairNow decides drift repair by the windows of the revision in
// force: always without windows or inside one; outside, unless a window
// says drift_outside: warn.
func TestRepairNow(t *testing.T) {
	load := func(windows string) *spec.State {
		t.Helper()
		rp, err := spec.Load(fstestMap(map[string]string{
			"fleet.yaml": "targets: [{path: app}]\n" + windows,
			"app/a.yaml": "kind: file\npath: /etc/a\ncontent: a\n",
		}), spec.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := rp.Render(spec.Host{Name: "h"})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	noon := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC) // a Monday
	night := time.Date(2026, 12, 7, 2, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		windows string
		at      time.Time
		want    bool
	}{
		{"no windows", "", noon, true},
		{"outside, repair", "windows: [{cron: \"0 2 * * *\", duration: 1h}]\n", noon, true},
		{"outside, warn", "windows: [{cron: \"0 2 * * *\", duration: 1h, drift_outside: warn}]\n", noon, false},
		{"inside, warn", "windows: [{cron: \"0 2 * * *\", duration: 1h, drift_outside: warn}]\n", night, true},
		{"one of two says warn", "windows: [{cron: \"0 2 * * *\", duration: 1h}, {cron: \"0 3 * * 6\", duration: 1h, drift_outside: warn}]\n", noon, false},
	} {
		if got := repairNow(load(tt.windows), tt.at); got != tt.want {
			t.Errorf("%s: repairNow = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func fstestMap(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}
