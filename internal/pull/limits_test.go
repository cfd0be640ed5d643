package pull_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/peak"
)

// TestFetchBounds makes each hostile commit on every transport and checks
// that it is refused with ErrTooLarge: by the fetch, before go-git indexes
// it, for the network transports; when the tree or the file is read, for a
// repository read in place.
func TestFetchBounds(t *testing.T) {
	t.Parallel()
	random := make([]byte, 256<<10)
	rand.Read(random)
	cases := []struct {
		name   string
		commit func(repo *gitserver.Repo) string
		cfg    func(c *pull.Config)
		// read is what fails in a repository read in place (nothing is
		// fetched): "" for the tree, or the file that cannot be read.
		read string
	}{
		{name: "big-blob", commit: func(repo *gitserver.Repo) string { return repo.CommitZeros("big.bin", 3<<20) },
			cfg: func(c *pull.Config) { c.MaxObjectBytes = 1 << 20 }, read: "big.bin"},
		{name: "fetch-bytes", commit: func(repo *gitserver.Repo) string {
			return repo.Commit(gitserver.Files{"random.bin": string(random)}, "random")
		}, cfg: func(c *pull.Config) { c.MaxFetchBytes = 64 << 10 }},
		{name: "many-paths", commit: func(repo *gitserver.Repo) string { return repo.CommitManyPaths(110, 1000) }},
		{name: "deep", commit: func(repo *gitserver.Repo) string { return repo.CommitDeep(pull.MaxTreeDepth + 1) }},
	}
	for _, src := range sources(t) {
		local := strings.HasPrefix(src.cfg.URL, "/") || strings.HasPrefix(src.cfg.URL, "file://")
		good := src.repo.Commit(gitserver.Files{"fleet.yaml": "targets: []\n"}, "good")
		for _, tc := range cases {
			if local && tc.name == "fetch-bytes" {
				continue // a repository read in place is not fetched
			}
			t.Run(src.name+"/"+tc.name, func(t *testing.T) {
				src.repo.ForcePush("main", good)
				cfg := src.cfg
				if tc.cfg != nil {
					tc.cfg(&cfg)
				}
				r := open(t, cfg)
				if got := poll(t, r); got.Commit != good {
					t.Fatalf("Poll() = %s, want %s", got.Commit, good)
				}
				bad := tc.commit(src.repo)
				res, err := r.Poll(context.Background())
				if local {
					if err != nil || res.Commit != bad {
						t.Fatalf("Poll() = %v, %v, want %s", res, err, bad)
					}
					fsys, err := r.Tree(context.Background(), bad)
					if tc.read != "" && err == nil {
						_, err = fs.ReadFile(fsys, tc.read)
					}
					if !errors.Is(err, pull.ErrTooLarge) {
						t.Fatalf("reading %s = %v, want ErrTooLarge", bad, err)
					}
					return
				}
				if !errors.Is(err, pull.ErrTooLarge) || !pull.IsPermanent(err) {
					t.Fatalf("Poll() = %v, %v, want a permanent ErrTooLarge", res, err)
				}
				var pe *pull.Error
				if !errors.As(err, &pe) || pe.Commit != bad {
					t.Fatalf("Poll() = %#v, want an *Error for commit %s", err, bad)
				}
				// The refused tip is not fetched again, and the cache
				// still serves the good commit.
				if _, err2 := r.Poll(context.Background()); err2 == nil || err2.Error() != err.Error() {
					t.Errorf("second Poll() = %v, want %v again", err2, err)
				}
				if tree := readTree(t, r, good); tree["fleet.yaml"] != "targets: []\n" {
					t.Errorf("Tree(good) = %v, want fleet.yaml", tree)
				}
				// Made without a work tree: checking the hostile tree
				// out would take long.
				blob := gitserver.RawHash(src.repo.WriteObject("blob", []byte("targets: []\n")))
				next := src.repo.CommitTree(src.repo.WriteObject("tree", []byte("100644 fleet.yaml\x00"+blob+"100644 new\x00"+blob)))
				if res := poll(t, r); res.Commit != next {
					t.Errorf("Poll() after a newer commit = %s, want %s", res.Commit, next)
				}
			})
		}
	}
}

// TestFetchPeakMemory fetches hostile commits in a child process and bounds
// its peak memory. Before the bounds, the 512 MiB blob peaked at more than
// 512 MB (go-git held it whole while indexing) and the tree of 10^6 paths at
// 393 MB.
func TestFetchPeakMemory(t *testing.T) {
	t.Parallel()
	const bound = raceMemory * 112 << 20
	cases := []struct {
		name   string
		url    func(root *gitserver.Root, name string) string
		commit func(repo *gitserver.Repo) string
	}{
		{"big-blob-git", func(root *gitserver.Root, name string) string { return root.ServeGit().URL(name) },
			func(repo *gitserver.Repo) string { return repo.CommitZeros("big.bin", 512<<20) }},
		{"big-blob-http", func(root *gitserver.Root, name string) string {
			return root.ServeHTTP(gitserver.HTTPOptions{}).URL(name)
		},
			func(repo *gitserver.Repo) string { return repo.CommitZeros("big.bin", 512<<20) }},
		{"many-paths-git", func(root *gitserver.Root, name string) string { return root.ServeGit().URL(name) },
			func(repo *gitserver.Repo) string { return repo.CommitManyPaths(1000, 1000) }},
		{"many-paths-local", func(root *gitserver.Root, name string) string { return root.Path(name) },
			func(repo *gitserver.Repo) string { return repo.CommitManyPaths(1000, 1000) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rss, msg := peak.Measure(t, func() error {
				root := gitserver.NewRoot(t)
				repo := root.Create("hostile")
				repo.Commit(gitserver.Files{"fleet.yaml": "targets: []\n"}, "good")
				bad := tc.commit(repo)
				r, err := pull.Open(filepath.Join(t.TempDir(), "git"), pull.Config{URL: tc.url(root, "hostile")}, nil)
				if err != nil {
					return err
				}
				if _, err := r.Poll(context.Background()); err != nil {
					return err
				}
				_, err = r.Tree(context.Background(), bad)
				return err
			})
			t.Logf("peak %d MiB: %s", rss>>20, msg)
			if !strings.Contains(msg, pull.ErrTooLarge.Error()) {
				t.Errorf("Poll and Tree = %q, want ErrTooLarge", msg)
			}
			if rss > bound {
				t.Errorf("peak memory %d MiB, want at most %d MiB", rss>>20, bound>>20)
			}
		})
	}
}

// packOf returns a pack of every object of a small repository, as git
// sends it: a seed for FuzzCheckPack.
func packOf(f *testing.F) []byte {
	root := gitserver.NewRoot(f)
	repo := root.Create("seed")
	repo.Commit(gitserver.Files{"a.yaml": "kind: file\n", "b.conf": strings.Repeat("port = 80\n", 50)}, "one")
	repo.Commit(gitserver.Files{"b.conf": strings.Repeat("port = 80\n", 49) + "port = 81\n"}, "two")
	cmd := exec.Command("git", "pack-objects", "--stdout", "--revs", "--delta-base-offset")
	cmd.Dir = repo.Path
	cmd.Stdin = strings.NewReader("main\n")
	out, err := cmd.Output()
	if err != nil {
		f.Fatalf("git pack-objects: %v", err)
	}
	return out
}

// FuzzCheckPack feeds arbitrary bytes to the check of a fetched pack: it
// must return, in bounded memory, and never accept a pack whose objects it
// could not read through.
func FuzzCheckPack(f *testing.F) {
	pack := packOf(f)
	if err := pull.CheckPack(bytes.NewReader(pack), 1<<20); err != nil {
		f.Fatalf("CheckPack(git's pack) = %v, want nil", err)
	}
	if err := pull.CheckPack(bytes.NewReader(pack), 100); !errors.Is(err, pull.ErrTooLarge) {
		f.Fatalf("CheckPack(git's pack, 100) = %v, want ErrTooLarge", err)
	}
	f.Add(pack)
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01\xbf\xff\xff\xff\xff\xff\xff\xff\xff\x7f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := pull.CheckPack(bytes.NewReader(data), 1<<20)
		if err == nil && len(data) < 12 {
			t.Errorf("CheckPack(%d bytes) = nil, want an error for a pack without its header", len(data))
		}
	})
}
