package status

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// gitCLI runs the git command line in dir with no user configuration and
// returns its trimmed output.
func gitCLI(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@outpost.invalid",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@outpost.invalid",
		"GIT_AUTHOR_DATE=2026-11-26T10:00:00Z", "GIT_COMMITTER_DATE=2026-11-26T10:00:00Z",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRepo makes a repository with n empty commits on main and returns its
// path and the commits, oldest first.
func newRepo(t testing.TB, n int) (string, []string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (test/run installs it): %v", err)
	}
	dir := filepath.Join(t.TempDir(), "clone")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gitCLI(t, dir, "init", "-q", "-b", "main")
	var commits []string
	for i := range n {
		gitCLI(t, dir, "commit", "-q", "--allow-empty", "-m", "change "+string(rune('a'+i)))
		commits = append(commits, gitCLI(t, dir, "rev-parse", "HEAD"))
	}
	return dir, commits
}

func openNotes(t testing.TB, dir, host string) *Notes {
	t.Helper()
	notes, err := OpenPath(dir, host)
	if err != nil {
		t.Fatalf("OpenPath(%s, %s) error = %v", dir, host, err)
	}
	notes.now = func() time.Time { return t0 }
	return notes
}

func mustWrite(t testing.TB, notes *Notes, n Note, o WriteOptions) bool {
	t.Helper()
	wrote, err := notes.Write(context.Background(), n, o)
	if err != nil {
		t.Fatalf("Write(%s %s) error = %v", n.Result, n.Commit, err)
	}
	return wrote
}

func TestWriteReadWithGit(t *testing.T) {
	dir, commits := newRepo(t, 2)
	notes := openNotes(t, dir, "edge-042")

	first := New("edge-042", commits[0], Applied, t0)
	first.Images = map[string]string{"web": "1.4.2@sha256:" + strings.Repeat("0", 64)}
	if !mustWrite(t, notes, first, WriteOptions{}) {
		t.Fatalf("Write(first note) = false, want true")
	}
	want, err := first.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got := gitCLI(t, dir, "notes", "--ref=outpost/edge-042", "show", commits[0]); got != strings.TrimSpace(string(want)) {
		t.Errorf("git notes show = %s, want %s", got, want)
	}

	again := first
	again.AppliedAt = t0.Add(time.Minute)
	again.DriftRepairs = 2
	if mustWrite(t, notes, again, WriteOptions{}) {
		t.Errorf("Write(same outcome) = true, want false")
	}
	if !mustWrite(t, notes, again, WriteOptions{Force: true}) {
		t.Errorf("Write(same outcome, Force) = false, want true")
	}
	second := New("edge-042", commits[1], Failed, t0.Add(2*time.Minute))
	second.Failed = []Failure{{Resource: "container:web", Error: "boom"}}
	if !mustWrite(t, notes, second, WriteOptions{}) {
		t.Errorf("Write(new commit) = false, want true")
	}

	latest, ok, err := notes.Latest()
	if err != nil || !ok {
		t.Fatalf("Latest() = _, %v, %v, want a note", ok, err)
	}
	if diff := cmp.Diff(second.normalized(), latest); diff != "" {
		t.Errorf("Latest() differs (-want +got):\n%s", diff)
	}
	shown, ok, err := notes.Show(commits[0])
	if err != nil || !ok {
		t.Fatalf("Show(first) = _, %v, %v, want a note", ok, err)
	}
	if diff := cmp.Diff(again.normalized(), shown); diff != "" {
		t.Errorf("Show(first) differs (-want +got):\n%s", diff)
	}
	if _, ok, err := notes.Show(commitB); ok || err != nil {
		t.Errorf("Show(unnoted) = _, %v, %v, want false, nil", ok, err)
	}

	// A flat tree: one blob per annotated commit, named by its hash.
	tree := strings.Fields(gitCLI(t, dir, "ls-tree", "--name-only", "refs/notes/outpost/edge-042"))
	if diff := cmp.Diff(slices.Sorted(slices.Values(commits)), tree); diff != "" {
		t.Errorf("git ls-tree notes differs (-want +got):\n%s", diff)
	}
	if got := gitCLI(t, dir, "rev-list", "--count", "refs/notes/outpost/edge-042"); got != "3" {
		t.Errorf("notes commits = %s, want 3", got)
	}
	log := gitCLI(t, dir, "log", "--notes=outpost/*", "--format=%H%n%N", "main")
	for _, s := range []string{`"result": "failed"`, `"result": "applied"`, `"drift_repairs": 2`} {
		if !strings.Contains(log, s) {
			t.Errorf("git log --notes='outpost/*' lacks %s:\n%s", s, log)
		}
	}
	if err := exec.Command("git", "-C", dir, "fsck", "--strict", "--no-dangling").Run(); err != nil {
		t.Errorf("git fsck after notes = %v, want clean", err)
	}
}

func TestWriteErrors(t *testing.T) {
	dir, commits := newRepo(t, 1)
	notes := openNotes(t, dir, "h1")
	tests := []struct {
		name string
		note Note
	}{
		{name: "other host", note: New("h2", commits[0], Applied, t0)},
		{name: "short commit", note: New("h1", commits[0][:7], Applied, t0)},
		{name: "unknown result", note: New("h1", commits[0], "fine", t0)},
		{name: "no time", note: New("h1", commits[0], Applied, time.Time{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := notes.Write(context.Background(), tt.note, WriteOptions{}); !errors.Is(err, ErrInvalidNote) {
				t.Errorf("Write() error = %v, want ErrInvalidNote", err)
			}
		})
	}
	if _, err := OpenPath(dir, "a/b"); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("OpenPath(a/b) error = %v, want ErrInvalidHost", err)
	}
}

func TestWriteRedacts(t *testing.T) {
	dir, commits := newRepo(t, 1)
	notes := openNotes(t, dir, "h1")
	n := New("h1", commits[0], Failed, t0)
	n.Message = "source https://deploy:pa55word@git.example.com/env.git"
	n.Failed = []Failure{{Resource: "container:web", Error: "create: env DB_PASSWORD=correct-horse rejected"}}
	mustWrite(t, notes, n, WriteOptions{Secrets: []string{"correct-horse", "x"}})
	got := gitCLI(t, dir, "notes", "--ref=outpost/h1", "show", commits[0])
	for _, secret := range []string{"pa55word", "deploy", "correct-horse"} {
		if strings.Contains(got, secret) {
			t.Errorf("note contains %q:\n%s", secret, got)
		}
	}
	if !strings.Contains(got, "DB_PASSWORD=[redacted]") {
		t.Errorf("note lacks DB_PASSWORD=[redacted]:\n%s", got)
	}
}

// Notes added by the git command line (no trailer in the notes commit)
// are found by comparing a notes commit with its parent.
func TestLatestOfGitWrittenNotes(t *testing.T) {
	dir, commits := newRepo(t, 3)
	for i, c := range []string{commits[2], commits[0]} {
		n := New("h", c, Applied, t0.Add(-time.Duration(i)*time.Hour)) // the later note is older by applied_at
		b, err := n.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		gitCLI(t, dir, "notes", "--ref=outpost/h", "add", "-m", string(b), c)
	}
	notes := openNotes(t, dir, "h")
	got, ok, err := notes.Latest()
	if err != nil || !ok {
		t.Fatalf("Latest() = _, %v, %v, want a note", ok, err)
	}
	if got.Commit != commits[0] {
		t.Errorf("Latest().Commit = %s, want %s (the one the last notes commit added)", got.Commit, commits[0])
	}
}
