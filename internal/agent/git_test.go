package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// TestApplyGitOfflineFallsBackToLastGood runs apply against a real git
// daemon, stops it, and applies again: the last good commit is converged and
// the report says the host is offline.
func TestApplyGitOfflineFallsBackToLastGood(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: /etc/app.conf\ncontent: one\n"}, "first")
	srv := root.ServeGit()

	cfg := Default()
	cfg.Source.URL = srv.URL("env")
	cfg.StateDir = t.TempDir()
	cfg.Root = t.TempDir()
	cfg.Host.Name = "edge-1"
	ctx := context.Background()

	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if rep.Revision != first || rep.Offline {
		t.Fatalf("Apply = revision %s offline %v, want %s online", rep.Revision, rep.Offline, first)
	}

	repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: /etc/app.conf\ncontent: two\n"}, "second")
	srv.Close()
	// A hand edit while the server is away is still reverted, to the last
	// good commit's content.
	target := filepath.Join(cfg.Root, "etc/app.conf")
	if err := os.WriteFile(target, []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply while offline: %v", err)
	}
	if rep.Revision != first || !rep.Offline || rep.Fallback == "" {
		t.Errorf("Apply while offline = revision %s offline %v fallback %q, want %s offline with a reason", rep.Revision, rep.Offline, rep.Fallback, first)
	}
	if b, _ := os.ReadFile(target); string(b) != "one" {
		t.Errorf("content while offline = %q, want the last good %q", b, "one")
	}

	// A host that never had a good commit cannot fall back.
	fresh := *cfg
	fresh.StateDir = t.TempDir()
	if _, err := Apply(ctx, &fresh, nil, ApplyOptions{}); !errors.Is(err, pull.ErrNoGoodCommit) {
		t.Errorf("Apply with no good commit while offline: %v, want ErrNoGoodCommit", err)
	}
}

// TestApplyGitUnsignedTipStaysOnLastGood serves a repository whose tip is
// unsigned, with verification on: the signed commit before it stays applied.
func TestApplyGitUnsignedTipStaysOnLastGood(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	key := gitserver.NewSSHKey(t)
	signers := filepath.Join(t.TempDir(), "allowed_signers")
	if err := os.WriteFile(signers, []byte(key.AllowedSigner("ops@example.com")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	signed := repo.CommitWith(gitserver.CommitOptions{
		Files:  gitserver.Files{"m.yaml": "kind: file\npath: /etc/app.conf\ncontent: signed\n"},
		SSHKey: key.PrivateFile,
	})
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	cfg := Default()
	cfg.Source.URL = srv.URL("env")
	cfg.Source.Verify.AllowedSigners = signers
	cfg.StateDir = t.TempDir()
	cfg.Root = t.TempDir()
	cfg.Host.Name = "edge-2"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Revision != signed {
		t.Fatalf("Apply of a signed commit = %+v, %v; want %s", rep, err, signed)
	}
	unsigned := repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: /etc/app.conf\ncontent: unsigned\n"}, "unsigned")
	rep, err = Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply with an unsigned tip: %v", err)
	}
	if rep.Revision != signed || rep.Tip != unsigned || rep.Offline {
		t.Errorf("Apply with an unsigned tip = revision %s tip %s offline %v, want %s and tip %s", rep.Revision, rep.Tip, rep.Offline, signed, unsigned)
	}
	if b, _ := os.ReadFile(filepath.Join(cfg.Root, "etc/app.conf")); string(b) != "signed" {
		t.Errorf("content = %q, want the signed commit's", b)
	}
}

// TestDaemonNotesOverHTTP runs the daemon against a real smart HTTP server:
// the host's note on the applied commit arrives on the server, in the host's
// own ref, readable with git itself; a failed revision gets its own note.
func TestDaemonNotesOverHTTP(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: /etc/app.conf\ncontent: one\n"}, "first")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	cfg := Default()
	cfg.Source.URL = srv.URL("env")
	cfg.Source.Interval = Duration(time.Hour)
	cfg.Root = t.TempDir()
	// Not Default's /var/lib/outpost, which other runs share.
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Host.Name = "edge-7"
	cfg.Host.Labels = map[string]string{"site": "berlin"}
	socket := startDaemon(t, nil, cfg)

	note := func(commit string) string {
		out, err := gitOutput(repo.Path, "notes", "--ref=outpost/edge-7", "show", commit)
		if err != nil {
			return ""
		}
		return out
	}
	waitFor(t, "the note of the first commit on the server", func() bool { return note(first) != "" })
	n, err := status.Parse([]byte(note(first)))
	if err != nil {
		t.Fatalf("parse the note: %v", err)
	}
	if n.Host != "edge-7" || n.Commit != first || n.Result != status.Applied || n.Labels["site"] != "berlin" {
		t.Errorf("note = %+v, want edge-7 applied %s with its labels", n, first)
	}

	broken := repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: relative\ncontent: x\n"}, "broken")
	if _, err := Control(context.Background(), socket, "reconcile"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the note of the invalid commit", func() bool { return note(broken) != "" })
	if n, err := status.Parse([]byte(note(broken))); err != nil || n.Result != status.Invalid {
		t.Errorf("note of the broken commit = %+v, %v; want invalid", n, err)
	}
}

func gitOutput(dir string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
	return string(out), err
}

// TestDaemonRefusesTooLargeFetch runs the daemon against a real smart HTTP
// server with source.max_fetch_bytes set: a commit whose pack passes it is
// recorded invalid, in the state, the status and the note, the host stays
// on its last good commit, and later polls do not fetch it again.
func TestDaemonRefusesTooLargeFetch(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: /etc/app.conf\ncontent: one\n"}, "first")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	cfg := Default()
	cfg.Source.URL = srv.URL("env")
	cfg.Source.Interval = Duration(time.Hour)
	cfg.Source.MaxFetchBytes = 1 << 20
	cfg.Root = t.TempDir()
	cfg.Host.Name = "edge-8"
	cfg.StateDir = t.TempDir()
	socket := startDaemon(t, nil, cfg)
	waitFor(t, "the first commit", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.LastGood == first
	})

	random := make([]byte, 2<<20)
	rand.Read(random)
	big := repo.Commit(gitserver.Files{"blob.bin": string(random)}, "big")
	s, err := Control(context.Background(), socket, "reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Failed[big]; f.Result != ResultInvalid || !strings.Contains(f.Reason, "too large") {
		t.Errorf("failed[%s] = %+v, want invalid, too large", big, f)
	}
	if s.LastGood != first || s.Offline {
		t.Errorf("status = last good %s, offline %v; want %s, online", s.LastGood, s.Offline, first)
	}
	var out string
	waitFor(t, "the note of the big commit on the server", func() bool {
		out, err = gitOutput(repo.Path, "notes", "--ref=outpost/edge-8", "show", big)
		return err == nil
	})
	if n, err := status.Parse([]byte(out)); err != nil || n.Result != status.Invalid {
		t.Errorf("note of the big commit = %q, %v; want invalid", out, err)
	}
	before := srv.Bytes()
	for range 2 {
		if _, err := Control(context.Background(), socket, "reconcile"); err != nil {
			t.Fatal(err)
		}
	}
	if sent := srv.Bytes() - before; sent >= 1<<20 {
		t.Errorf("two more polls moved %d bytes, want no fetch of the refused commit", sent)
	}
	st, err := state.New(cfg.StateDir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if f := st.Failed[big]; f.Result != ResultInvalid {
		t.Errorf("state failed[%s] = %+v, want invalid", big, f)
	}
}

// TestDaemonRefusesTooManyPaths runs the daemon on a repository read in
// place (file://), whose commit names 10^6 paths in a few KiB: the commit
// is refused when its tree is read and recorded invalid, and the host stays
// on its last good commit.
func TestDaemonRefusesTooManyPaths(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: /etc/app.conf\ncontent: one\n"}, "first")
	cfg := Default()
	cfg.Source.URL = "file://" + root.Path("env")
	cfg.Source.Interval = Duration(time.Hour)
	cfg.Root = t.TempDir()
	cfg.StateDir = t.TempDir()
	cfg.Status.Push = false
	socket := startDaemon(t, nil, cfg)
	waitFor(t, "the first commit", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.LastGood == first
	})
	wide := repo.CommitManyPaths(1000, 1000)
	var s *Status
	for range 2 {
		var err error
		if s, err = Control(context.Background(), socket, "reconcile"); err != nil {
			t.Fatal(err)
		}
	}
	if f := s.Failed[wide]; f.Result != ResultInvalid || !strings.Contains(f.Reason, "more than 100000 entries") {
		t.Errorf("failed[%s] = %+v, want invalid for its entries", wide, f)
	}
	if s.LastGood != first {
		t.Errorf("last good = %s, want %s", s.LastGood, first)
	}
}
