package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// historySource is a source with a history of revisions, each a tree in
// memory, of which the newest is what Poll returns.
type historySource struct {
	mu    sync.Mutex
	revs  map[string]fstest.MapFS
	head  string
	polls int
	down  bool
	// snapshots counts the reads of each revision: the daemon renders a
	// revision each time it reads one.
	snapshots map[string]int
}

func (s *historySource) push(rev string, fsys fstest.MapFS) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revs == nil {
		s.revs = map[string]fstest.MapFS{}
	}
	s.revs[rev] = fsys
	s.head = rev
}

func (s *historySource) Poll(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.polls++
	if s.down {
		return "", errors.New("connection refused")
	}
	return s.head, nil
}

func (s *historySource) Snapshot(ctx context.Context, rev string) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fsys, ok := s.revs[rev]
	if !ok {
		return nil, fmt.Errorf("no revision %s", rev)
	}
	if s.snapshots == nil {
		s.snapshots = map[string]int{}
	}
	s.snapshots[rev]++
	return &Snapshot{FS: fsys, Revision: rev}, nil
}

func (s *historySource) Verify(ctx context.Context, rev string) error { return nil }

// healthDriver is a unit driver whose units are healthy unless their
// content says "unhealthy".
type healthDriver struct{ applied map[string]string }

func (d *healthDriver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	if d.applied[r.ID.Name] == string(systemd.Of(r).Content) {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	if apply {
		d.applied[r.ID.Name] = string(systemd.Of(r).Content)
	}
	return spec.Change{Action: spec.ActionUpdate, Fields: []string{"content"}}, nil
}

func (d *healthDriver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	if apply {
		delete(d.applied, id.Name)
	}
	return spec.Change{Action: spec.ActionDelete}, nil
}

func (d *healthDriver) Healthy(ctx context.Context, r *spec.Resource) (bool, string, error) {
	if d.applied[r.ID.Name] == "unhealthy\n" {
		return false, "the unit is failed", nil
	}
	return true, "", nil
}

// startDaemon runs the daemon over src (nil: the source cfg names) until
// the test ends.
func startDaemon(t *testing.T, src revSource, cfg *Config) (socket string) {
	t.Helper()
	return startDaemonWith(t, src, cfg, DaemonOptions{})
}

// startDaemonWith is startDaemon with opts, such as the drivers.
func startDaemonWith(t *testing.T, src revSource, cfg *Config, opts DaemonOptions) (socket string) {
	t.Helper()
	if src != nil {
		cfg.Source.URL = "test://"
		opts.newSource = func(*Config, *slog.Logger) (revSource, error) { return src, nil }
	}
	return runDaemon(t, cfg, opts)
}

// runDaemon runs the daemon with opts until the test ends; it fills in the
// state directory, host name, socket and logger when they are unset.
func runDaemon(t *testing.T, cfg *Config, opts DaemonOptions) (socket string) {
	t.Helper()
	dir := t.TempDir()
	socket = filepath.Join(dir, "run", "outpost.sock")
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(dir, "state")
	}
	if cfg.Host.Name == "" {
		cfg.Host.Name = "test-host"
	}
	opts.Socket = socket
	if opts.FullInterval == 0 {
		opts.FullInterval = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
	waitFor(t, "the control socket", func() bool {
		_, err := Control(context.Background(), socket, "status")
		return err == nil
	})
	return socket
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileManifest(path, content string) fstest.MapFS {
	return fstest.MapFS{"m.yaml": {Data: []byte(fmt.Sprintf("kind: file\npath: %s\ncontent: %q\n", path, content))}}
}

func TestDaemonAppliesRepairsAndFollows(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := &historySource{}
	src.push("r1", fileManifest("/etc/app.conf", "one\n"))
	socket := startDaemon(t, src, &Config{Root: root, HealthTimeout: Duration(5 * time.Second)})
	target := filepath.Join(root, "etc/app.conf")

	waitFor(t, "the first revision", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.Result != ""
	})
	if b, _ := os.ReadFile(target); string(b) != "one\n" {
		t.Errorf("content = %q, want %q", b, "one\n")
	}
	s, err := Control(context.Background(), socket, "status")
	if err != nil {
		t.Fatal(err)
	}
	if s.Commit != "r1" || s.Result != ResultApplied || s.LastGood != "r1" {
		t.Errorf("status = %s %s (last good %s), want r1 applied (last good r1)", s.Commit, s.Result, s.LastGood)
	}

	// A hand edit is put back by the file watcher, without a poll.
	if err := os.WriteFile(target, []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drift repair", func() bool {
		b, _ := os.ReadFile(target)
		return string(b) == "one\n"
	})
	waitFor(t, "the repair in status", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.DriftRepaired >= 1
	})

	// A new revision is applied on reconcile.
	src.push("r2", fileManifest("/etc/app.conf", "two\n"))
	s, err = Control(context.Background(), socket, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if s.Commit != "r2" || s.Result != ResultApplied {
		t.Errorf("after reconcile: %s %s, want r2 applied", s.Commit, s.Result)
	}
	if b, _ := os.ReadFile(target); string(b) != "two\n" {
		t.Errorf("content after r2 = %q, want %q", b, "two\n")
	}
}

func TestDaemonSuspendResume(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := &historySource{}
	src.push("r1", fileManifest("/etc/app.conf", "one\n"))
	socket := startDaemon(t, src, &Config{Root: root})
	target := filepath.Join(root, "etc/app.conf")
	waitFor(t, "the first revision", func() bool {
		b, err := os.ReadFile(target)
		return err == nil && string(b) == "one\n"
	})

	s, err := Control(context.Background(), socket, "suspend")
	if err != nil || !s.Suspended {
		t.Fatalf("suspend: %v, suspended %v", err, s != nil && s.Suspended)
	}
	src.push("r2", fileManifest("/etc/app.conf", "two\n"))
	if _, err := Control(context.Background(), socket, "reconcile"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte("maintenance\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drift report", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.DriftDetected >= 1
	})
	if b, _ := os.ReadFile(target); string(b) != "maintenance\n" {
		t.Errorf("content while suspended = %q, want the hand edit kept", b)
	}

	s, err = Control(context.Background(), socket, "resume")
	if err != nil {
		t.Fatal(err)
	}
	if s.Suspended || s.Commit != "r2" {
		t.Errorf("after resume: suspended %v, revision %s; want false, r2", s.Suspended, s.Commit)
	}
	if b, _ := os.ReadFile(target); string(b) != "two\n" {
		t.Errorf("content after resume = %q, want %q", b, "two\n")
	}
}

func TestDaemonRollsBackUnhealthyRevision(t *testing.T) {
	t.Parallel()
	units := &healthDriver{applied: map[string]string{}}
	drivers := withDriver(systemd.Kind, func(context.Context, converge.Env) (converge.Driver, error) { return units, nil })
	unit := func(content string) fstest.MapFS {
		return fstest.MapFS{"u.yaml": {Data: []byte(fmt.Sprintf("kind: unit\nname: web.service\ncontent: %q\n", content))}}
	}
	src := &historySource{}
	src.push("good", unit("healthy\n"))
	cfg := &Config{Root: t.TempDir(), HealthTimeout: Duration(time.Second)}
	socket := startDaemonWith(t, src, cfg, DaemonOptions{drivers: drivers})
	waitFor(t, "the good revision", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.LastGood == "good"
	})

	src.push("bad", unit("unhealthy\n"))
	s, err := Control(context.Background(), socket, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if s.Result != ResultRolledBack || s.LastGood != "good" || s.Commit != "good" || s.RolledBack != "bad" {
		t.Errorf("after the bad revision: %s %s (last good %s, rolled back %q), want good rolled-back (last good good, rolled back bad)", s.Commit, s.Result, s.LastGood, s.RolledBack)
	}
	if got := units.applied["web.service"]; got != "healthy\n" {
		t.Errorf("unit content after rollback = %q, want the good one", got)
	}
	if f, ok := s.Failed["bad"]; !ok || f.Result != ResultRolledBack {
		t.Errorf("failed revisions = %v, want bad rolled-back", s.Failed)
	}

	// The failed revision is not tried again by a poll...
	if _, err := Control(context.Background(), socket, "reconcile"); err != nil {
		t.Fatal(err)
	}
	if got := units.applied["web.service"]; got != "healthy\n" {
		t.Errorf("a poll retried the failed revision: unit content %q", got)
	}
	// ...but is on retry, and fails again.
	s, err = Control(context.Background(), socket, "retry")
	if err != nil {
		t.Fatal(err)
	}
	if s.Result != ResultRolledBack {
		t.Errorf("retry: result %s, want rolled-back again", s.Result)
	}

	st, err := state.New(cfg.StateDir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.LastGood != "good" || st.Failed["bad"].Result != ResultRolledBack || st.RolledBack != "bad" {
		t.Errorf("saved state: last good %q, failed %v, rolled back %q", st.LastGood, st.Failed, st.RolledBack)
	}
}

func TestDaemonOfflineKeepsLastGood(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := &historySource{}
	src.push("r1", fileManifest("/etc/app.conf", "one\n"))
	cfg := &Config{Root: root}
	socket := startDaemon(t, src, cfg)
	target := filepath.Join(root, "etc/app.conf")
	waitFor(t, "the first revision", func() bool {
		b, err := os.ReadFile(target)
		return err == nil && string(b) == "one\n"
	})
	src.mu.Lock()
	src.down = true
	src.mu.Unlock()
	s, err := Control(context.Background(), socket, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Offline || s.Commit != "r1" {
		t.Errorf("offline status: offline %v, revision %s; want true, r1", s.Offline, s.Commit)
	}
	if err := os.WriteFile(target, []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drift repair while offline", func() bool {
		b, _ := os.ReadFile(target)
		return string(b) == "one\n"
	})
}

// startAtR1 starts the daemon on a history whose revision r1 writes
// /etc/app.conf under root, and waits until r1 is its last good revision.
func startAtR1(t *testing.T) (root string, src *historySource, socket string) {
	t.Helper()
	root = t.TempDir()
	src = &historySource{}
	src.push("r1", fileManifest("/etc/app.conf", "one\n"))
	socket = startDaemon(t, src, &Config{Root: root})
	waitFor(t, "the first revision", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.LastGood == "r1"
	})
	return root, src, socket
}

func TestDaemonInvalidRevisionChangesNothing(t *testing.T) {
	t.Parallel()
	root, src, socket := startAtR1(t)
	src.push("broken", fstest.MapFS{"m.yaml": {Data: []byte("kind: file\npath: relative/path\ncontent: x\n")}})
	reconcileInvalid(t, socket, "broken", filepath.Join(root, "etc/app.conf"), "one\n")
}

// reconcileInvalid asks the daemon to reconcile, and checks that it found
// rev invalid, kept r1 as the last good revision and left the file at path
// with r1's content.
func reconcileInvalid(t *testing.T, socket, rev, path, content string) {
	t.Helper()
	s, err := Control(context.Background(), socket, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Failed[rev]; f.Result != ResultInvalid {
		t.Errorf("failed[%s] = %+v, want result invalid", rev, f)
	}
	if s.LastGood != "r1" {
		t.Errorf("last good = %s, want r1", s.LastGood)
	}
	if b, _ := os.ReadFile(path); string(b) != content {
		t.Errorf("content = %q, want r1's %q", b, content)
	}
}

// TestDaemonRefusesOverBudgetRevisionOnce pushes a revision whose template
// passes the render budget: it is recorded invalid with the reason, the host
// stays on its last good revision, and later polls do not render it again
// (before the budget, each poll rendered it and ran out of memory).
func TestDaemonRefusesOverBudgetRevisionOnce(t *testing.T) {
	t.Parallel()
	root, src, socket := startAtR1(t)
	bomb := `{{ $v := printf "%01000000d" 0 }}` + strings.Repeat(`{{ $v = printf "%s%s" $v $v }}`, 12) + `{{ len $v }}`
	src.push("bomb", fstest.MapFS{
		"m.yaml":   {Data: []byte("kind: file\npath: /etc/app.conf\nsource: app.tmpl\ntemplate: true\n")},
		"app.tmpl": {Data: []byte(bomb)},
	})
	var s *Status
	for range 3 {
		var err error
		if s, err = Control(context.Background(), socket, "reconcile"); err != nil {
			t.Fatal(err)
		}
	}
	f := s.Failed["bomb"]
	if f.Result != ResultInvalid || !strings.Contains(f.Reason, "template budget exceeded") || !strings.Contains(f.Reason, "app.tmpl:1:") {
		t.Errorf("failed[bomb] = %+v, want invalid for the template budget at app.tmpl:1", f)
	}
	if s.LastGood != "r1" {
		t.Errorf("last good = %s, want r1", s.LastGood)
	}
	src.mu.Lock()
	renders := src.snapshots["bomb"]
	src.mu.Unlock()
	if renders != 1 {
		t.Errorf("the refused revision was read %d times over 3 polls, want once", renders)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/app.conf")); string(b) != "one\n" {
		t.Errorf("content = %q, want r1's", b)
	}
}

// stallingSource is a historySource whose Poll, once stall is set, waits
// until it is released: a fetch over a network that went away.
type stallingSource struct {
	*historySource
	stall   atomic.Bool
	stalled chan struct{}
	release chan struct{}
}

func (s *stallingSource) Poll(ctx context.Context) (string, error) {
	if s.stall.Load() {
		select {
		case s.stalled <- struct{}{}:
		default:
		}
		select {
		case <-s.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return s.historySource.Poll(ctx)
}

// TestDaemonRepairsDriftWhileAFetchWaits stalls a fetch, as on a dead link
// where it waits for its timeout, and edits a managed file meanwhile: the
// edit is repaired before the fetch returns.
func TestDaemonRepairsDriftWhileAFetchWaits(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := &stallingSource{historySource: &historySource{}, stalled: make(chan struct{}), release: make(chan struct{})}
	src.push("r1", fileManifest("/etc/app.conf", "one\n"))
	socket := startDaemon(t, src, &Config{Root: root, HealthTimeout: Duration(5 * time.Second)})
	target := filepath.Join(root, "etc/app.conf")
	waitFor(t, "the first revision", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.Result == ResultApplied
	})

	src.stall.Store(true)
	reconciled := make(chan error, 1)
	go func() {
		_, err := Control(context.Background(), socket, "reconcile")
		reconciled <- err
	}()
	select {
	case <-src.stalled:
	case <-time.After(20 * time.Second):
		t.Fatal("the reconcile's fetch did not start")
	}
	if err := os.WriteFile(target, []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drift repair while the fetch waits", func() bool {
		b, _ := os.ReadFile(target)
		return string(b) == "one\n"
	})
	close(src.release)
	if err := <-reconciled; err != nil {
		t.Errorf("reconcile after the fetch returned: %v", err)
	}
}

// damagedFS is a tree whose files cannot be read: a local clone that lost
// objects.
type damagedFS struct{ tree fstest.MapFS }

func (f damagedFS) Open(name string) (fs.File, error) {
	if name == "." {
		return f.tree.Open(name)
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: blob missing", pull.ErrCorrupt)}
}

// damagingSource is a historySource whose revisions read as damaged while
// broken is set.
type damagingSource struct {
	*historySource
	broken atomic.Bool
}

func (s *damagingSource) Snapshot(ctx context.Context, rev string) (*Snapshot, error) {
	snap, err := s.historySource.Snapshot(ctx, rev)
	if err == nil && s.broken.Load() {
		snap.FS = damagedFS{snap.FS.(fstest.MapFS)}
	}
	return snap, err
}

// TestDaemonDoesNotFailARevisionItCannotRead gives the daemon a revision
// whose local copy is damaged: it is neither applied nor remembered as
// failed, and once it reads again it is applied.
func TestDaemonDoesNotFailARevisionItCannotRead(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := &damagingSource{historySource: &historySource{}}
	src.push("r1", fileManifest("/etc/app.conf", "one\n"))
	socket := startDaemon(t, src, &Config{Root: root, HealthTimeout: Duration(5 * time.Second)})
	waitFor(t, "the first revision", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.Result == ResultApplied
	})

	src.broken.Store(true)
	src.push("r2", fileManifest("/etc/app.conf", "two\n"))
	s, err := Control(context.Background(), socket, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if s.Commit != "r1" || len(s.Failed) != 0 {
		t.Errorf("after a damaged read, status = %s failed %v, want r1 and nothing failed", s.Commit, s.Failed)
	}

	src.broken.Store(false)
	s, err = Control(context.Background(), socket, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if s.Commit != "r2" || s.Result != ResultApplied {
		t.Errorf("once readable, status = %s %s, want r2 applied", s.Commit, s.Result)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/app.conf")); string(b) != "two\n" {
		t.Errorf("content = %q, want %q", b, "two\n")
	}
}
