package pull_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// source is a repository served over one transport and the Config that
// reaches it.
type source struct {
	name string
	repo *gitserver.Repo
	cfg  pull.Config
	http *gitserver.HTTPServer // for the http transports
}

// secretFile writes content to a 0600 file of t and returns its path.
func secretFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sources serves one fresh repository over every transport Outpost reads.
func sources(t *testing.T) []source {
	t.Helper()
	root := gitserver.NewRoot(t)
	var out []source
	add := func(name string, cfg func(repo string) (pull.Config, *gitserver.HTTPServer)) {
		repo := root.Create(name)
		c, h := cfg(name)
		c.Timeout = 20 * time.Second
		out = append(out, source{name: name, repo: repo, cfg: c, http: h})
	}
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	add("http", func(n string) (pull.Config, *gitserver.HTTPServer) { return pull.Config{URL: h.URL(n)}, h })
	hs := root.ServeHTTP(gitserver.HTTPOptions{TLS: true, Username: "deploy", Password: "s3cret"})
	pw := secretFile(t, "password", "s3cret\n")
	add("https-basic-auth", func(n string) (pull.Config, *gitserver.HTTPServer) {
		return pull.Config{URL: hs.URL(n), Auth: pull.Auth{Username: "deploy", PasswordFile: pw, CAFile: hs.CAFile}}, hs
	})
	ht := root.ServeHTTP(gitserver.HTTPOptions{TLS: true, Tokens: gitserver.NewTokens("tok-123")})
	tok := secretFile(t, "token", "tok-123\n")
	add("https-token", func(n string) (pull.Config, *gitserver.HTTPServer) {
		return pull.Config{URL: ht.URL(n), Auth: pull.Auth{TokenFile: tok, CAFile: ht.CAFile}}, ht
	})
	d := root.ServeGit()
	add("git", func(n string) (pull.Config, *gitserver.HTTPServer) { return pull.Config{URL: d.URL(n)}, nil })
	s := root.ServeSSH()
	add("ssh", func(n string) (pull.Config, *gitserver.HTTPServer) {
		return pull.Config{URL: s.URL(n), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.KnownHostsFile}}, nil
	})
	add("file", func(n string) (pull.Config, *gitserver.HTTPServer) {
		return pull.Config{URL: "file://" + root.Path(n)}, nil
	})
	add("path", func(n string) (pull.Config, *gitserver.HTTPServer) { return pull.Config{URL: root.Path(n)}, nil })
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func open(t *testing.T, cfg pull.Config) *pull.Repo {
	t.Helper()
	r, err := pull.Open(filepath.Join(t.TempDir(), "git"), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.URL, err)
	}
	return r
}

func poll(t *testing.T, r *pull.Repo) pull.Result {
	t.Helper()
	res, err := r.Poll(context.Background())
	if err != nil {
		t.Fatalf("Poll = %v", err)
	}
	return res
}

func readTree(t *testing.T, r *pull.Repo, commit string) map[string]string {
	t.Helper()
	fsys, err := r.Tree(context.Background(), commit)
	if err != nil {
		t.Fatalf("Tree(%s) = %v", commit, err)
	}
	got := map[string]string{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := fs.ReadLink(fsys, p)
			got[p] = "-> " + target
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		got[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("walk Tree(%s) = %v", commit, err)
	}
	return got
}

// TestPoll pushes commits and polls them over every transport; an
// unchanged poll over HTTP is two small requests and fetches no pack.
func TestPoll(t *testing.T) {
	t.Parallel()
	for _, src := range sources(t) {
		t.Run(src.name, func(t *testing.T) {
			c1 := src.repo.Commit(gitserver.Files{"a.yaml": "a: 1\n", "dir/b.yaml": "b: 1\n"}, "first")
			r := open(t, src.cfg)
			if got, want := poll(t, r), (pull.Result{Commit: c1, Changed: true}); got != want {
				t.Fatalf("first Poll = %+v, want %+v", got, want)
			}
			if diff := cmp.Diff(map[string]string{"a.yaml": "a: 1\n", "dir/b.yaml": "b: 1\n"}, readTree(t, r, c1)); diff != "" {
				t.Errorf("Tree(c1) differs (-want +got):\n%s", diff)
			}

			if src.http != nil {
				src.http.Reset()
			}
			if got, want := poll(t, r), (pull.Result{Commit: c1}); got != want {
				t.Errorf("unchanged Poll = %+v, want %+v", got, want)
			}
			if src.http != nil {
				// Protocol v2: the capabilities, then ls-refs; no pack.
				if got := src.http.Requests(); got != 2 {
					t.Errorf("requests of an unchanged poll = %d (%v), want 2", got, src.http.Paths())
				}
				if got := src.http.Bytes(); got >= 500 {
					t.Errorf("an unchanged poll moved %d bytes (%v), want under 500: no pack", got, src.http.Paths())
				}
			}

			c2 := src.repo.Commit(gitserver.Files{"a.yaml": "a: 2\n"}, "second")
			if got, want := poll(t, r), (pull.Result{Commit: c2, Changed: true}); got != want {
				t.Fatalf("Poll after a push = %+v, want %+v", got, want)
			}
			if diff := cmp.Diff(map[string]string{"a.yaml": "a: 2\n", "dir/b.yaml": "b: 1\n"}, readTree(t, r, c2)); diff != "" {
				t.Errorf("Tree(c2) differs (-want +got):\n%s", diff)
			}
			// The older commit stays readable: rollback needs it.
			if diff := cmp.Diff(map[string]string{"a.yaml": "a: 1\n", "dir/b.yaml": "b: 1\n"}, readTree(t, r, c1)); diff != "" {
				t.Errorf("Tree(c1) after the second fetch differs (-want +got):\n%s", diff)
			}

			// A new Repo on the same cache sees no change.
			if dir := r.Dir(); dir != "" {
				r2, err := pull.Open(dir, src.cfg, testLogger(t))
				if err != nil {
					t.Fatalf("Open again = %v", err)
				}
				if got, want := poll(t, r2), (pull.Result{Commit: c2}); got != want {
					t.Errorf("Poll of a reopened cache = %+v, want %+v", got, want)
				}
			}
		})
	}
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
