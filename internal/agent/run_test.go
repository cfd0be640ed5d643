package agent

import (
	"bytes"
	"context"
	"errors"
	"filippo.io/age"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// writeTree writes files (slash paths relative to dir) into dir.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sandbox returns a configuration that converges repo into a fresh root.
func sandbox(t testing.TB, repo string) *Config {
	t.Helper()
	cfg := Default()
	cfg.Source.URL = repo
	cfg.Root = filepath.Join(t.TempDir(), "root")
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Host = HostConfig{Name: "h1", Labels: map[string]string{"role": "web"}}
	cfg.Secrets.Key = filepath.Join(cfg.StateDir, "..", "age.key")
	return cfg
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestApplyRecordsState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{
		"a.yaml": "kind: file\npath: /etc/a\ncontent: a\n",
		"b.yaml": "kind: file\npath: /etc/b\ncontent: b\n",
	})
	cfg := sandbox(t, repo)

	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	if want := (Summary{Create: 2}); rep.Summary != want {
		t.Errorf("Apply() summary = %+v, want %+v", rep.Summary, want)
	}
	statePath := filepath.Join(cfg.StateDir, "state.json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"file:/etc/a"`, `"file:/etc/b"`, `"commit": "` + rep.Revision + `"`, `"last_good": "` + rep.Revision + `"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("state after Apply() = %s, want it to hold %s", b, want)
		}
	}

	// A pass with nothing to do leaves the state document alone.
	before := inode(t, statePath)
	rep, err = Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("second Apply() error: %v", err)
	}
	if rep.Summary.Changed() {
		t.Errorf("second Apply() summary = %+v, want no change", rep.Summary)
	}
	if after := inode(t, statePath); after != before {
		t.Errorf("a no-op Apply() rewrote %s (inode %d -> %d)", statePath, before, after)
	}

	// Diff never writes, even when it finds changes.
	writeTree(t, repo, map[string]string{"a.yaml": "kind: file\npath: /etc/a\ncontent: changed\n"})
	rep, err = Diff(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Diff() error: %v", err)
	}
	want := []Change{{Kind: "file", Name: "/etc/a", Action: "update", Fields: []string{"content"}}}
	if diff := cmp.Diff(want, rep.Changes); diff != "" {
		t.Errorf("Diff() changes mismatch (-want +got):\n%s", diff)
	}
	if after := inode(t, statePath); after != before {
		t.Errorf("Diff() rewrote %s", statePath)
	}
	if got, _ := os.ReadFile(filepath.Join(cfg.Root, "etc/a")); string(got) != "a" {
		t.Errorf("after Diff() /etc/a = %q, want it untouched (%q)", got, "a")
	}
}

func TestApplyInvalidChangesNothing(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{
		"a.yaml": "kind: file\npath: /etc/a\ncontent: a\n",
		"b.yaml": "kind: file\npath: relative\ncontent: b\n",
	})
	cfg := sandbox(t, repo)
	rep, err := Apply(context.Background(), cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	want := []Problem{{File: filepath.Join(repo, "b.yaml"), Line: 2, Col: 7, Message: `path: "relative" must be an absolute path`}}
	if rep.Valid || !cmp.Equal(rep.Errors, want) {
		t.Errorf("Apply() = valid %v, errors %v; want invalid with %v", rep.Valid, rep.Errors, want)
	}
	if _, err := os.Stat(cfg.Root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Apply() of an invalid repository created %s (stat: %v)", cfg.Root, err)
	}
	// The revision is recorded as invalid, as the daemon records it, and
	// nothing else.
	st, err := state.New(cfg.StateDir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if f := st.Failed[rep.Revision]; f.Result != ResultInvalid || st.Commit != "" || len(st.Inventory) > 0 {
		t.Errorf("state after Apply() of an invalid repository = %+v, want only %s recorded invalid", st, rep.Revision)
	}
	if rep.Result != ResultInvalid {
		t.Errorf("Apply() result = %q, want %q", rep.Result, ResultInvalid)
	}
}

func TestCheckAllowedPaths(t *testing.T) {
	t.Parallel()
	file := func(p string, line int) *spec.Resource {
		return &spec.Resource{ID: spec.ID{Kind: file.Kind, Name: p}, Pos: spec.Pos{File: "f.yaml", Line: line, Col: 1}, Object: &file.File{Path: p}}
	}
	unit := &spec.Resource{ID: spec.ID{Kind: systemd.Kind, Name: "a.service"}, Object: &systemd.Unit{Name: "a.service"}}
	tests := []struct {
		name    string
		allowed []string
		paths   []string
		want    []string // the rejected resources
	}{
		{"no list allows everything", nil, []string{"/etc/passwd"}, nil},
		{"exact path", []string{"/etc/app.conf"}, []string{"/etc/app.conf"}, nil},
		{"under a prefix", []string{"/etc/app", "/srv"}, []string{"/etc/app/a", "/srv/x/y"}, nil},
		{"a sibling with the same prefix", []string{"/etc/app"}, []string{"/etc/application/x"}, []string{"/etc/application/x"}},
		{"the parent of a prefix", []string{"/etc/app"}, []string{"/etc"}, []string{"/etc"}},
		{"root allows everything", []string{"/"}, []string{"/etc/x"}, nil},
		{"every offender", []string{"/srv"}, []string{"/etc/a", "/srv/b", "/etc/c"}, []string{"/etc/a", "/etc/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &spec.State{Resources: []*spec.Resource{unit}}
			for i, p := range tt.paths {
				st.Resources = append(st.Resources, file(p, i+1))
			}
			err := checkAllowedPaths(st, tt.allowed)
			var got []string
			if err != nil {
				var es spec.Errors
				if !errors.As(err, &es) || !errors.Is(err, spec.ErrInvalid) {
					t.Fatalf("checkAllowedPaths() error %v is not spec.Errors", err)
				}
				for _, e := range es {
					got = append(got, strings.TrimPrefix(strings.Fields(e.Msg)[0], "file:"))
				}
			}
			for i := range got {
				got[i] = strings.TrimSuffix(got[i], ":")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("checkAllowedPaths(%v, %v) rejected (-want +got):\n%s", tt.paths, tt.allowed, diff)
			}
		})
	}
}

func TestOpenSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	writeTree(t, dir, map[string]string{"file": "x"})
	tests := []struct {
		url     string
		wantErr string // empty: opens
	}{
		{dir, ""},
		{"", "no source"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{notDir, "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg := Default()
			cfg.Source.URL = tt.url
			snap, err := openSource(context.Background(), cfg, nil)
			if tt.wantErr == "" {
				if err != nil || snap.Display != tt.url || !strings.HasPrefix(snap.Revision, "sha256:") {
					t.Errorf("openSource(%q) = %+v, %v; want the directory", tt.url, snap, err)
				}
				return
			}
			if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("openSource(%q) error = %v, want ErrSource saying %q", tt.url, err, tt.wantErr)
			}
		})
	}
}

func TestGitURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url string
		git bool
	}{
		{"/srv/env", false},
		{"env", false},
		{"./env:with-colon", false},
		{"https://git.example.com/env.git", true},
		{"ssh://git@git.example.com/env.git", true},
		{"git@git.example.com:fleet/env.git", true},
		{"file:///srv/env.git", true},
	}
	for _, tt := range tests {
		if got := gitURL.MatchString(tt.url); got != tt.git {
			t.Errorf("gitURL.MatchString(%q) = %v, want %v", tt.url, got, tt.git)
		}
	}
}

func TestTreeHash(t *testing.T) {
	t.Parallel()
	hash := func(files map[string]string) string {
		t.Helper()
		dir := t.TempDir()
		writeTree(t, dir, files)
		snap, err := dirSnapshot(dir)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Revision
	}
	base := map[string]string{"a.yaml": "a", "d/b.yaml": "b"}
	h := hash(base)
	tests := []struct {
		name  string
		files map[string]string
		same  bool
	}{
		{"same content elsewhere", map[string]string{"a.yaml": "a", "d/b.yaml": "b"}, true},
		{".git is ignored", map[string]string{"a.yaml": "a", "d/b.yaml": "b", ".git/HEAD": "ref"}, true},
		{"content", map[string]string{"a.yaml": "A", "d/b.yaml": "b"}, false},
		{"a renamed file", map[string]string{"a.yaml": "a", "d/c.yaml": "b"}, false},
		{"content moved between files", map[string]string{"a.yaml": "ab", "d/b.yaml": ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hash(tt.files); (got == h) != tt.same {
				t.Errorf("tree hash of %v = %s, base %s; want same %v", tt.files, got, h, tt.same)
			}
		})
	}
}

func TestReportText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rep  Report
		want string
	}{
		{
			"diff",
			Report{Command: "diff", Host: "h1", Revision: "sha256:0123456789abcdef", Valid: true,
				Changes: []Change{
					{Kind: "file", Name: "/etc/a", Action: "create"},
					{Kind: "file", Name: "/etc/b", Action: "update", Fields: []string{"content", "mode 0644 -> 0640"}},
					{Kind: "file", Name: "/etc/c", Action: "delete", Prune: true},
					{Kind: "container", Name: "web", Action: "none", Restarted: true},
					{Kind: "unit", Name: "b.service", Action: "none", Error: "no driver"},
					{Kind: "unit", Name: "c.service", Action: "none", Skipped: true, Error: "dependency failed"},
				},
				Summary: Summary{Create: 1, Update: 1, Delete: 1, Restart: 1, Failed: 2}},
			"+ file /etc/a (create)\n" +
				"~ file /etc/b (content, mode 0644 -> 0640)\n" +
				"- file /etc/c (prune)\n" +
				"~ container web (restart)\n" +
				"! unit b.service: no driver\n" +
				"! unit c.service (skipped): dependency failed\n" +
				"diff: 1 to create, 1 to update, 1 to prune, 1 to restart, 2 failed to check on host h1 at sha256:0123456789ab\n",
		},
		{
			"apply in sync",
			Report{Command: "apply", Host: "h1", Revision: "sha256:0123456789abcdef", Valid: true},
			"apply: nothing to do: host h1 at sha256:0123456789ab is in sync\n",
		},
		{
			"apply with a commit revision",
			Report{Command: "apply", Host: "h1", Revision: "0123456789abcdef0123", Valid: true,
				Changes: []Change{{Kind: "file", Name: "/etc/a", Action: "update", Fields: []string{"owner"}}},
				Summary: Summary{Update: 1}},
			"~ file /etc/a (owner)\napply: 1 updated on host h1 at 0123456789ab\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errw strings.Builder
			if err := tt.rep.WriteText(&out, &errw); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, out.String()); diff != "" {
				t.Errorf("WriteText() mismatch (-want +got):\n%s", diff)
			}
			if errw.Len() != 0 {
				t.Errorf("WriteText() wrote to stderr: %q", errw.String())
			}
		})
	}
}

// BenchmarkApplyNoopFiles1000 measures one whole `outpost apply` pass over a
// repository of 1,000 files that are already in sync: reading and hashing
// the source, loading and rendering it, the state, and the engine.
func BenchmarkApplyNoopFiles1000(b *testing.B) {
	repo := b.TempDir()
	files := map[string]string{}
	for i := range 1000 {
		files[fmt.Sprintf("d%02d/f%04d.yaml", i%50, i)] = fmt.Sprintf("kind: file\npath: /etc/bench/%04d.conf\ncontent: \"value %d\\n\"\nmode: \"0640\"\n", i, i)
	}
	writeTree(b, repo, files)
	cfg := sandbox(b, repo)
	ctx := context.Background()
	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Summary.Create != 1000 {
		b.Fatalf("first Apply() = %+v, %v; want 1000 created", rep, err)
	}
	b.ReportAllocs()
	// CPU time per pass, beside the wall time: on a shared machine it says
	// more about the code than the wall time does.
	start := cpuTime(b)
	n := 0
	for b.Loop() {
		rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
		if err != nil || rep.Summary.Changed() {
			b.Fatalf("Apply() = %+v, %v; want nothing to do", rep.Summary, err)
		}
		n++
	}
	b.ReportMetric(float64((cpuTime(b)-start).Milliseconds())/float64(n), "cpu-ms/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestApplyLockedStateDir(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{"a.yaml": "kind: file\npath: /etc/a\ncontent: a\n"})
	cfg := sandbox(t, repo)
	lock, err := state.Lock(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	_, err = Apply(context.Background(), cfg, nil, ApplyOptions{})
	if !errors.Is(err, state.ErrLocked) {
		t.Errorf("Apply() on a locked state directory = %v, want state.ErrLocked", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "etc/a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Apply() on a locked state directory wrote /etc/a (stat: %v)", err)
	}
	// Diff reads without the lock.
	if _, err := Diff(context.Background(), cfg, nil); err != nil {
		t.Errorf("Diff() on a locked state directory = %v, want it to run", err)
	}
}

// applyDefault is Apply with the default options, in the shape of Diff.
func applyDefault(ctx context.Context, cfg *Config, log *slog.Logger) (*Report, error) {
	return Apply(ctx, cfg, log, ApplyOptions{})
}

// TestApplyGatesOnHealth checks that apply waits for what a new revision
// changed to become healthy, rolls back to the last good revision when it
// does not, and records the revision as rolled back; with NoWait it does
// not wait.
func TestApplyGatesOnHealth(t *testing.T) {
	t.Parallel()
	units := &healthDriver{applied: map[string]string{}}
	src := &historySource{}
	unit := func(content string) fstest.MapFS {
		return fstest.MapFS{"u.yaml": {Data: []byte(fmt.Sprintf("kind: unit\nname: web.service\ncontent: %q\n", content))}}
	}
	cfg := sandbox(t, "test://")
	cfg.HealthTimeout = Duration(time.Second)
	opts := ApplyOptions{seams: seams{
		drivers:   withDriver(systemd.Kind, func(context.Context, converge.Env) (converge.Driver, error) { return units, nil }),
		newSource: func(*Config, *slog.Logger) (revSource, error) { return src, nil },
	}}
	apply := func(o ApplyOptions) *Report {
		t.Helper()
		rep, err := Apply(context.Background(), cfg, nil, o)
		if err != nil {
			t.Fatalf("Apply() error: %v", err)
		}
		return rep
	}

	src.push("good", unit("healthy\n"))
	if rep := apply(opts); rep.Result != ResultApplied {
		t.Fatalf("Apply(good) result = %q, want %q", rep.Result, ResultApplied)
	}
	src.push("bad", unit("unhealthy\n"))
	rep := apply(opts)
	if rep.Result != ResultRolledBack || rep.Revision != "bad" {
		t.Errorf("Apply(bad) = %s %q, want bad %q", rep.Revision, rep.Result, ResultRolledBack)
	}
	if got := units.applied["web.service"]; got != "healthy\n" {
		t.Errorf("after the rollback the unit holds %q, want the good revision's", got)
	}
	st, err := state.New(cfg.StateDir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.LastGood != "good" || st.Commit != "good" || st.Failed["bad"].Result != ResultRolledBack {
		t.Errorf("state = commit %s, last good %s, failed %v; want good, good and bad rolled back", st.Commit, st.LastGood, st.Failed)
	}

	noWait := opts
	noWait.NoWait = true
	if rep := apply(noWait); rep.Result != ResultApplied {
		t.Errorf("Apply(bad, NoWait) result = %q, want %q: nothing waits for its health", rep.Result, ResultApplied)
	}
}

// BenchmarkApplyNoopSecrets100 is a no-op pass over 100 files whose
// sources are age files; BenchmarkApplyNoopPlain100 is the same pass over
// the same files in plaintext. docs/benchmarks.md compares them.
func BenchmarkApplyNoopSecrets100(b *testing.B) { benchNoop100(b, true, false) }

// BenchmarkApplyNoopSecrets100Cold is that pass as a new process makes
// it (a one-shot `outpost apply`): nothing decrypted before.
func BenchmarkApplyNoopSecrets100Cold(b *testing.B) { benchNoop100(b, true, true) }

func BenchmarkApplyNoopPlain100(b *testing.B) { benchNoop100(b, false, false) }

func benchNoop100(b *testing.B, encrypted, cold bool) {
	repo := b.TempDir()
	cfg := sandbox(b, repo)
	recipient, err := EnsureSecretKey(cfg)
	if err != nil {
		b.Fatal(err)
	}
	to, err := parseRecipient(recipient)
	if err != nil {
		b.Fatal(err)
	}
	files := map[string]string{}
	for i := range 100 {
		plain := fmt.Sprintf("password-%04d\n", i)
		src := fmt.Sprintf("s%04d.txt", i)
		if encrypted {
			var buf bytes.Buffer
			w, err := age.Encrypt(&buf, to)
			if err != nil {
				b.Fatal(err)
			}
			w.Write([]byte(plain))
			w.Close()
			src += ".age"
			plain = buf.String()
		}
		files[fmt.Sprintf("d%02d/%s", i%10, src)] = plain
		files[fmt.Sprintf("d%02d/f%04d.yaml", i%10, i)] = fmt.Sprintf("kind: file\npath: /etc/bench/%04d.conf\nsource: %s\nmode: \"0600\"\n", i, src)
	}
	writeTree(b, repo, files)
	ctx := context.Background()
	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Summary.Create != 100 {
		b.Fatalf("first Apply() = %+v, %v; want 100 created", rep, err)
	}
	b.ReportAllocs()
	start := cpuTime(b)
	n := 0
	for b.Loop() {
		if cold {
			forgetPlaintexts()
		}
		if cold {
			forgetPlaintexts()
		}
		rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
		if err != nil || rep.Summary.Changed() {
			b.Fatalf("Apply() = %+v, %v; want nothing to do", rep.Summary, err)
		}
		n++
	}
	b.ReportMetric(float64((cpuTime(b)-start).Milliseconds())/float64(n), "cpu-ms/op")
}
