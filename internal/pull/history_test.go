package pull_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

func httpSource(t *testing.T) (*gitserver.Repo, pull.Config) {
	t.Helper()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	return repo, pull.Config{URL: h.URL("env"), Timeout: 20 * time.Second}
}

// TestRewrittenHistory follows force-pushes to older and to divergent
// history, and a branch deleted and made again.
func TestRewrittenHistory(t *testing.T) {
	t.Parallel()
	repo, cfg := httpSource(t)
	ctx := context.Background()
	c1 := repo.Commit(gitserver.Files{"a": "1"}, "one")
	c2 := repo.Commit(gitserver.Files{"a": "2"}, "two")
	c3 := repo.Commit(gitserver.Files{"a": "3"}, "three")
	r := open(t, cfg)
	if got := poll(t, r); got.Commit != c3 {
		t.Fatalf("Poll = %+v, want %s", got, c3)
	}

	steps := []struct {
		name   string
		change func() string // returns the new tip
		files  map[string]string
	}{
		{"force-push to a commit never fetched", func() string { repo.ForcePush("main", c2); return c2 }, map[string]string{"a": "2"}},
		{"force-push to an older commit", func() string { repo.ForcePush("main", c1); return c1 }, map[string]string{"a": "1"}},
		{"divergent history", func() string { return repo.Commit(gitserver.Files{"b": "x"}, "fork") }, map[string]string{"a": "1", "b": "x"}},
		{"back to a commit fetched before", func() string { repo.ForcePush("main", c3); return c3 }, map[string]string{"a": "3"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			want := st.change()
			if got := poll(t, r); got != (pull.Result{Commit: want, Changed: true}) {
				t.Fatalf("Poll = %+v, want %s changed", got, want)
			}
			if diff := cmp.Diff(st.files, readTree(t, r, want)); diff != "" {
				t.Errorf("Tree(%s) differs (-want +got):\n%s", want, diff)
			}
		})
	}

	t.Run("branch deleted", func(t *testing.T) {
		repo.DeleteBranch("main")
		_, err := r.Poll(ctx)
		if !errors.Is(err, pull.ErrBranchNotFound) {
			t.Fatalf("Poll of a deleted branch = %v, want ErrBranchNotFound", err)
		}
		choice, err := r.Resolve(ctx, c3, quick, 3)
		if err != nil || choice.Commit != c3 || choice.Offline || !errors.Is(choice.Fallback, pull.ErrBranchNotFound) {
			t.Errorf("Resolve of a deleted branch = %+v, %v; want the last good %s, not offline", choice, err, c3)
		}
	})
	t.Run("branch made again", func(t *testing.T) {
		c5 := repo.Commit(gitserver.Files{"new": "history"}, "again")
		if got := poll(t, r); got != (pull.Result{Commit: c5, Changed: true}) {
			t.Fatalf("Poll of a re-created branch = %+v, want %s changed", got, c5)
		}
		if diff := cmp.Diff(map[string]string{"new": "history"}, readTree(t, r, c5)); diff != "" {
			t.Errorf("Tree(%s) differs (-want +got):\n%s", c5, diff)
		}
	})
}

// packFiles returns the cache's pack files.
func packFiles(t *testing.T, dir string) []string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no pack in the cache %s: %v", dir, err)
	}
	return packs
}

// TestDamagedCache damages the clone cache in each way and checks that it
// is found, cloned again, and that the last good commit stays readable.
func TestDamagedCache(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"truncated pack", func(t *testing.T, dir string) {
			for _, p := range packFiles(t, dir) {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(p, fi.Size()/2); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"missing objects", func(t *testing.T, dir string) {
			for _, p := range packFiles(t, dir) {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				os.Remove(strings.TrimSuffix(p, ".pack") + ".idx")
			}
		}},
		{"broken ref", func(t *testing.T, dir string) {
			ref := filepath.Join(dir, "refs", "remotes", "origin", "main")
			if err := os.WriteFile(ref, []byte("not a hash\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"ref to a missing commit", func(t *testing.T, dir string) {
			ref := filepath.Join(dir, "refs", "remotes", "origin", "main")
			if err := os.WriteFile(ref, []byte(strings.Repeat("ab", 20)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage config", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte("[core\n\x00"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, cfg := httpSource(t)
			ctx := context.Background()
			good := repo.Commit(gitserver.Files{"a": "good", "dir/b": strings.Repeat("b", 5000)}, "good")
			dir := filepath.Join(t.TempDir(), "git")
			r, err := pull.Open(dir, cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			poll(t, r)
			tip := repo.Commit(gitserver.Files{"a": "bad"}, "newer, not yet good")
			poll(t, r)

			tt.damage(t, dir)

			var logs strings.Builder
			r2, err := pull.Open(dir, cfg, newLogger(&logs))
			if err != nil {
				t.Fatalf("Open of a damaged cache = %v, want it to be noted and cloned again", err)
			}
			if !strings.Contains(logs.String(), "damaged") {
				t.Errorf("Open of a damaged cache logged nothing about it: %q", logs.String())
			}
			choice, err := r2.Resolve(ctx, good, quick, 1)
			if err != nil || choice.Commit != tip {
				t.Fatalf("Resolve after damage = %+v, %v; want the tip %s", choice, err, tip)
			}
			if diff := cmp.Diff(map[string]string{"a": "good", "dir/b": strings.Repeat("b", 5000)}, readTree(t, r2, good)); diff != "" {
				t.Errorf("Tree(last good) after damage differs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{"a": "bad", "dir/b": strings.Repeat("b", 5000)}, readTree(t, r2, tip)); diff != "" {
				t.Errorf("Tree(tip) after damage differs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConcurrentReads reads a tree from several goroutines while polls
// fetch new commits.
func TestConcurrentReads(t *testing.T) {
	t.Parallel()
	repo, cfg := httpSource(t)
	c1 := repo.Commit(gitserver.Files{"a": "1", "b/c": "2"}, "one")
	r := open(t, cfg)
	poll(t, r)
	fsys, err := r.Tree(context.Background(), c1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 50; i++ {
				if b, err := fs.ReadFile(fsys, "b/c"); err != nil || string(b) != "2" {
					done <- fmt.Errorf("ReadFile(b/c) = %q, %v", b, err)
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 3; i++ {
		repo.Commit(gitserver.Files{"a": fmt.Sprint(i + 2)}, "more")
		if _, err := r.Poll(context.Background()); err != nil {
			t.Errorf("Poll = %v", err)
		}
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestCompact fetches more commits than the pack limit and checks that the
// packs are merged and every commit fetched before stays readable.
func TestCompact(t *testing.T) {
	t.Parallel()
	repo, cfg := httpSource(t)
	cfg = pull.WithMaxPacks(cfg, 3)
	dir := filepath.Join(t.TempDir(), "git")
	r, err := pull.Open(dir, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var commits []string
	for i := 0; i < 8; i++ {
		c := repo.Commit(gitserver.Files{fmt.Sprintf("f%d", i): fmt.Sprint(i), "common": fmt.Sprint(i)}, "more")
		if got := poll(t, r); got.Commit != c {
			t.Fatalf("Poll = %+v, want %s", got, c)
		}
		commits = append(commits, c)
		if n := len(packFiles(t, dir)); n > 4 {
			t.Errorf("packs after fetch %d = %d, want at most 4", i+1, n)
		}
	}
	for i, c := range commits {
		files := readTree(t, r, c)
		if files["common"] != fmt.Sprint(i) || files[fmt.Sprintf("f%d", i)] != fmt.Sprint(i) {
			t.Errorf("Tree(commit %d) = %v", i, files)
		}
	}
	// A new Repo on the merged cache finds it sound.
	var logs strings.Builder
	if _, err := pull.Open(dir, cfg, newLogger(&logs)); err != nil || strings.Contains(logs.String(), "damaged") {
		t.Errorf("Open of a merged cache = %v, logs %q", err, logs.String())
	}
}
