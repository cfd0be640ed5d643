package pull_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// gitCmd runs the real git in dir with no user or system configuration
// and returns its combined output.
func gitCmd(t *testing.T, dir string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("these tests check the cache with git, which is not on PATH: %v", err)
	}
	cmd := exec.Command(bin, append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fsck fails t when git fsck --full finds an object of the cache missing
// or broken.
func fsck(t *testing.T, dir string) {
	t.Helper()
	out, err := gitCmd(t, dir, nil, "fsck", "--full", "--no-progress", "--no-dangling")
	if err != nil {
		t.Fatalf("git fsck --full of the cache = %v:\n%s", err, out)
	}
}

// history is a repository and the commits a cache has fetched from it.
type history struct {
	repo    *gitserver.Repo
	cfg     pull.Config
	dir     string
	commits []string
	files   map[string]string // the tip's tree
}

func newHistory(t *testing.T, repo *gitserver.Repo, cfg pull.Config) *history {
	return &history{repo: repo, cfg: cfg, dir: filepath.Join(t.TempDir(), "git"), files: map[string]string{}}
}

// push commits one more file of size bytes that does not compress much.
func (h *history) push(t *testing.T, size int) string {
	t.Helper()
	name := fmt.Sprintf("f%d", len(h.commits))
	h.files[name] = noise(t, size)
	c := h.repo.Commit(gitserver.Files{name: h.files[name]}, "add "+name)
	h.commits = append(h.commits, c)
	return c
}

// fetch pushes a commit and polls it with r.
func (h *history) fetch(t *testing.T, r *pull.Repo) {
	t.Helper()
	c := h.push(t, 2048)
	if got := poll(t, r); got.Commit != c {
		t.Fatalf("Poll = %+v, want %s", got, c)
	}
}

// sound opens the cache as a restarted agent does and checks that it is
// whole: Open finds no damage, git fsck --full passes, every commit fetched
// so far is in the cache without a fetch, and the tip's tree reads back.
func (h *history) sound(t *testing.T) *pull.Repo {
	t.Helper()
	var logs strings.Builder
	r, err := pull.Open(h.dir, h.cfg, newLogger(&logs))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if strings.Contains(logs.String(), "damaged") {
		t.Errorf("Open found damage:\n%s", logs.String())
	}
	fsck(t, h.dir)
	for i, c := range h.commits {
		if !r.Has(c) {
			t.Errorf("commit %d (%s) is no longer in the cache", i, c)
		}
	}
	if len(h.commits) > 0 {
		if diff := cmp.Diff(h.files, readTree(t, r, h.commits[len(h.commits)-1])); diff != "" {
			t.Errorf("Tree(tip) differs (-want +got):\n%s", diff)
		}
	}
	return r
}

// cacheFiles returns the names in the cache's objects/pack.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "objects", "pack"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// newestPack returns the pack that was fetched last: the one that holds
// the tip.
func newestPack(t *testing.T, dir string) string {
	t.Helper()
	var best string
	var when time.Time
	for _, p := range packFiles(t, dir) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if best == "" || fi.ModTime().After(when) {
			best, when = p, fi.ModTime()
		}
	}
	return best
}

func countSuffix(names []string, suffix string) int {
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, suffix) {
			n++
		}
	}
	return n
}

// TestFsckSeesMissingObjects proves that the fsck check of these tests
// fails on a cache that lost a pack.
func TestFsckSeesMissingObjects(t *testing.T) {
	t.Parallel()
	repo, cfg := httpSource(t)
	h := newHistory(t, repo, cfg)
	r := open(t, cfg)
	h.dir = r.Dir()
	h.fetch(t, r)
	h.fetch(t, r)
	if out, err := gitCmd(t, h.dir, nil, "fsck", "--full", "--no-progress", "--no-dangling"); err != nil {
		t.Fatalf("git fsck of a sound cache = %v:\n%s", err, out)
	}
	p := newestPack(t, h.dir)
	os.Remove(p)
	os.Remove(strings.TrimSuffix(p, ".pack") + ".idx")
	if out, err := gitCmd(t, h.dir, nil, "fsck", "--full", "--no-progress", "--no-dangling"); err == nil {
		t.Fatalf("git fsck of a cache without the tip's pack passed:\n%s", out)
	}
}

// TestMergeStopped stops the pack merge after each of its steps, as a
// killed process would, and checks that the cache is whole after each, and
// that the next fetch merges the packs.
func TestMergeStopped(t *testing.T) {
	t.Parallel()
	// Packs in objects/pack when the merge of three stops after each step.
	packsAfter := map[string]int{
		"pack written": 3, "index written": 3, "index renamed": 3,
		"pack renamed": 4, "old pack removed": 3,
	}
	for _, step := range pull.MergeSteps {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			repo, cfg := httpSource(t)
			cfg = pull.WithMaxPacks(cfg, 2)
			h := newHistory(t, repo, cfg)
			r, err := pull.Open(h.dir, pull.WithMergeStop(cfg, step), testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			h.fetch(t, r)
			h.fetch(t, r)
			h.fetch(t, r) // a third pack: the merge starts and stops
			r.Close()

			names := cacheFiles(t, h.dir)
			want, ok := packsAfter[step]
			if !ok {
				t.Fatalf("no expectation for the merge step %q", step)
			}
			if got := countSuffix(names, ".pack"); got != want {
				t.Errorf("packs after a merge stopped after %q = %d (%v), want %d", step, got, names, want)
			}
			r2 := h.sound(t)
			for _, name := range cacheFiles(t, h.dir) {
				if strings.HasPrefix(name, "tmp_") {
					t.Errorf("Open left %s in objects/pack", name)
				}
			}

			// The next fetch merges them all.
			h.fetch(t, r2)
			r2.Close()
			names = cacheFiles(t, h.dir)
			if got := countSuffix(names, ".pack"); got != 1 || countSuffix(names, ".idx") != 1 {
				t.Errorf("objects/pack after the next merge = %v, want one pack and its index", names)
			}
			h.sound(t)
		})
	}
}

// TestStrayPackFiles plants in the cache what interrupted fetches, merges
// and other Git tools leave, and checks that Open makes the cache whole
// again without cloning it, and that the next merge loses nothing.
func TestStrayPackFiles(t *testing.T) {
	t.Parallel()
	packDir := func(dir string) string { return filepath.Join(dir, "objects", "pack") }
	// plantServerPack writes a pack of every object of the server's
	// repository into the cache without an index, cut in half with cut.
	plantServerPack := func(t *testing.T, h *history, cut bool) {
		t.Helper()
		out := t.TempDir()
		name, err := gitCmd(t, h.repo.Path, []byte("refs/heads/main\n"), "pack-objects", "-q", "--revs", filepath.Join(out, "pack"))
		if err != nil {
			t.Fatalf("git pack-objects = %v: %s", err, name)
		}
		base := "pack-" + strings.TrimSpace(name) + ".pack"
		b, err := os.ReadFile(filepath.Join(out, base))
		if err != nil {
			t.Fatal(err)
		}
		if cut {
			b = b[:len(b)/2]
		}
		if err := os.WriteFile(filepath.Join(packDir(h.dir), base), b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		plant func(t *testing.T, h *history)
		// check looks at objects/pack after Open.
		check func(t *testing.T, names []string)
	}{
		{"partial fetch", func(t *testing.T, h *history) {
			b := append([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x09"), noise(t, 4096)...)
			if err := os.WriteFile(filepath.Join(packDir(h.dir), "tmp_pack_123456"), b, 0o444); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, names []string) {
			for _, n := range names {
				if strings.HasPrefix(n, "tmp_") {
					t.Errorf("the partial fetch %s is still there", n)
				}
			}
		}},
		{"partial index without its pack", func(t *testing.T, h *history) {
			idx, err := os.ReadFile(strings.TrimSuffix(newestPack(t, h.dir), ".pack") + ".idx")
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(packDir(h.dir), "pack-"+strings.Repeat("ab", 20)+".idx")
			if err := os.WriteFile(p, idx[:len(idx)/2], 0o444); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, names []string) {
			if countSuffix(names, ".idx") != countSuffix(names, ".pack") {
				t.Errorf("objects/pack = %v, want an index for each pack and no other", names)
			}
		}},
		{"index of the tip's pack lost", func(t *testing.T, h *history) {
			if err := os.Remove(strings.TrimSuffix(newestPack(t, h.dir), ".pack") + ".idx"); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, names []string) {
			if countSuffix(names, ".idx") != 3 || countSuffix(names, ".pack") != 3 {
				t.Errorf("objects/pack = %v, want the three packs indexed", names)
			}
		}},
		{"index truncated", func(t *testing.T, h *history) {
			p := strings.TrimSuffix(newestPack(t, h.dir), ".pack") + ".idx"
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, names []string) {
			if countSuffix(names, ".idx") != 3 || countSuffix(names, ".pack") != 3 {
				t.Errorf("objects/pack = %v, want the three packs indexed", names)
			}
		}},
		{"whole pack without index", func(t *testing.T, h *history) {
			plantServerPack(t, h, false)
		}, func(t *testing.T, names []string) {
			if countSuffix(names, ".idx") != 4 || countSuffix(names, ".pack") != 4 {
				t.Errorf("objects/pack = %v, want the planted pack indexed beside the three", names)
			}
		}},
		{"truncated pack without index", func(t *testing.T, h *history) {
			plantServerPack(t, h, true)
		}, func(t *testing.T, names []string) {
			if countSuffix(names, ".idx") != 3 || countSuffix(names, ".pack") != 3 {
				t.Errorf("objects/pack = %v, want the unreadable pack gone and the three kept", names)
			}
		}},
		{"objects only loose", func(t *testing.T, h *history) {
			p := newestPack(t, h.dir)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(p)
			os.Remove(strings.TrimSuffix(p, ".pack") + ".idx")
			if out, err := gitCmd(t, h.dir, b, "unpack-objects", "-q"); err != nil {
				t.Fatalf("git unpack-objects = %v: %s", err, out)
			}
		}, func(t *testing.T, names []string) {
			if countSuffix(names, ".pack") != 2 {
				t.Errorf("objects/pack = %v, want the two packs left", names)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo, cfg := httpSource(t)
			cfg = pull.WithMaxPacks(cfg, 3)
			h := newHistory(t, repo, cfg)
			r, err := pull.Open(h.dir, cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				h.fetch(t, r)
			}
			r.Close()

			tt.plant(t, h)
			r2 := h.sound(t)
			tt.check(t, cacheFiles(t, h.dir))

			// Two more fetches: at least one merge of every pack.
			h.fetch(t, r2)
			h.fetch(t, r2)
			r2.Close()
			h.sound(t)
			if n := countSuffix(cacheFiles(t, h.dir), ".pack"); n > 3 {
				t.Errorf("packs after two more fetches = %d, want them merged", n)
			}
		})
	}
}

// TestMergeAfterCutFetches cuts fetches at several points through the
// fault proxy, restarts on the cache each time, and lets the packs be
// merged in between: the cache stays whole throughout.
func TestMergeAfterCutFetches(t *testing.T) {
	t.Parallel()
	for name, mk := range faultSources(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := mk(t)
			src.cfg = pull.WithMaxPacks(src.cfg, 2)
			src.cfg.Timeout = 10 * time.Second
			h := newHistory(t, src.repo, src.cfg)
			r, err := pull.Open(h.dir, src.cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			h.fetch(t, r)
			for _, cut := range []int64{1 << 10, 8 << 10, 40 << 10, 90 << 10} {
				good := maps.Clone(h.files)
				goodCommits := h.commits
				c := h.push(t, 256<<10) // about 128 KiB packed: more than the cut
				src.proxy.CutAfter(cut)
				_, err := r.Poll(context.Background())
				src.proxy.CutAfter(0)
				if err == nil {
					t.Fatalf("Poll of %s cut after %d bytes = nil error", c, cut)
				}
				r.Close()

				// Restart on what the cut left: the last good commit is whole.
				files, commits := h.files, h.commits
				h.files, h.commits = good, goodCommits
				r = h.sound(t)
				h.files, h.commits = files, commits

				if got := poll(t, r); got.Commit != c {
					t.Fatalf("Poll after the cut = %+v, want %s", got, c)
				}
				r.Close()
				r = h.sound(t)
			}
			if n := countSuffix(cacheFiles(t, h.dir), ".pack"); n > 3 {
				t.Errorf("packs after %d fetches = %d, want them merged", len(h.commits), n)
			}
		})
	}
}
