package pull_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// fetchedV2 is what a Repo logs (at debug) when a fetch spoke v2.
const fetchedV2 = "fetched in git protocol v2"

// TestFetchV2 fetches new commits in protocol v2 from http-backend, git
// daemon and sshd, in a repository with 5,000 notes refs: the fetch does
// not list them (a v0 fetch does), brings the commit whole, keeps the
// cache shallow, and deepens it to bring an older commit back. Servers
// that answer in v0 only are fetched from in v0.
func TestFetchV2(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	c1 := repo.Commit(gitserver.Files{"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"}, "first")
	var notes []string
	for i := range 5000 {
		notes = append(notes, fmt.Sprintf("refs/notes/outpost/host-%05d", i))
	}
	repo.CreateRefs(notes, c1)
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	h0 := root.ServeHTTP(gitserver.HTTPOptions{})
	ignoreGitProtocol(h0)
	d := root.ServeGit()
	dp := gitserver.NewProxy(t, d.Addr)
	s := root.ServeSSH()
	sp := s.Proxied(t)
	known := sp.KnownHosts
	s0 := root.ServeSSHWith(gitserver.SSHOptions{RefuseGitProtocol: true})
	sshAuth := pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: known}

	type counted struct {
		name  string
		cfg   pull.Config
		bytes func() int64
		reset func()
		idle  func() bool
		proto pull.Protocol
		r     *pull.Repo
		logs  *logBuffer
	}
	srcs := []*counted{
		{name: "http bodies", cfg: pull.Config{URL: h.URL("env")}, bytes: h.Bytes, reset: h.Reset, proto: pull.ProtocolV2},
		{name: "git wire", cfg: pull.Config{URL: "git://" + dp.Addr + "/env.git"}, bytes: dp.Bytes, reset: dp.ResetBytes, idle: dp.WaitIdle, proto: pull.ProtocolV2},
		{name: "ssh wire", cfg: pull.Config{URL: sp.URL("env"), Auth: sshAuth}, bytes: sp.Bytes, reset: sp.ResetBytes, idle: sp.WaitIdle, proto: pull.ProtocolV2},
		{name: "v0 http bodies", cfg: pull.Config{URL: h0.URL("env")}, bytes: h0.Bytes, reset: h0.Reset, proto: pull.ProtocolV0},
		{name: "v0 ssh", cfg: pull.Config{URL: s0.URL("env"), Auth: pull.Auth{SSHKeyFile: s0.KeyFile, KnownHostsFile: s0.KnownHostsFile}}, proto: pull.ProtocolV0},
	}
	for _, src := range srcs {
		src.cfg.Timeout = time.Minute
		src.r, src.logs = openLogged(t, src.cfg)
		if got, want := poll(t, src.r), (pull.Result{Commit: c1, Changed: true}); got != want {
			t.Fatalf("%s: first Poll = %+v, want %+v", src.name, got, want)
		}
	}
	c2 := repo.Commit(gitserver.Files{"a.yaml": "a: 2\n", "b.yaml": "b: 1\n"}, "second")
	c3 := repo.Commit(gitserver.Files{"a.yaml": "a: 3\n", "b.yaml": "b: 1\n"}, "third")
	for _, src := range srcs {
		t.Run(src.name, func(t *testing.T) {
			if src.reset != nil {
				src.reset()
			}
			if got, want := poll(t, src.r), (pull.Result{Commit: c3, Changed: true}); got != want {
				t.Fatalf("Poll after two pushes = %+v, want %+v", got, want)
			}
			if src.idle != nil && !src.idle() {
				t.Fatalf("the proxy still has connections open after a poll")
			}
			if got := src.r.Protocol(); got != src.proto {
				t.Fatalf("Protocol() = %v, want %v", got, src.proto)
			}
			v2 := src.proto == pull.ProtocolV2
			if n := src.logs.count(fetchedV2); (n == 2) != v2 {
				t.Errorf("fetches in v2 = %d (both polls), want v2 = %v", n, v2)
			}
			if n := src.logs.count(fallbackMsg); (n == 1) == v2 {
				t.Errorf("fallback logged %d times, want once for a v0 server, never for v2", n)
			}
			if src.bytes != nil {
				b := src.bytes()
				t.Logf("bytes of a poll that fetched a new commit, with %d notes refs: %d", len(notes), b)
				// One notes ref costs about 70 bytes in a v0 listing.
				if v2 && b > 20_000 {
					t.Errorf("bytes of a v2 poll and fetch = %d, want under 20,000 (the notes refs not listed)", b)
				}
				if !v2 && b < 2*70*int64(len(notes)) {
					t.Errorf("bytes of a v0 poll and fetch = %d, want the notes listed twice", b)
				}
			}
			tree := readTree(t, src.r, c3)
			if tree["a.yaml"] != "a: 3\n" || tree["b.yaml"] != "b: 1\n" {
				t.Errorf("Tree(c3) = %v, want a: 3 and b: 1", tree)
			}
			// The boundary keeps c1, whose parents are missing too, as
			// git's does.
			shallow, err := os.ReadFile(filepath.Join(src.r.Dir(), "shallow"))
			if got := strings.Fields(string(shallow)); err != nil || len(got) != 2 || got[0] != c1 && got[1] != c1 || got[0] != c3 && got[1] != c3 {
				t.Errorf("shallow file = %q, %v, want %s and %s", shallow, err, c1, c3)
			}
			if src.r.Has(c2) {
				t.Fatalf("Has(c2) before a deeper fetch = true, want a shallow cache")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := src.r.Fetch(ctx, c2); err != nil {
				t.Fatalf("Fetch(c2) = %v", err)
			}
			if tree := readTree(t, src.r, c2); tree["a.yaml"] != "a: 2\n" {
				t.Errorf("Tree(c2) = %v, want a: 2", tree)
			}
			if n := src.logs.count(fetchedV2); (n == 3) != v2 {
				t.Errorf("fetches in v2 after a deeper one = %d, want v2 = %v", n, v2)
			}
		})
	}
}

// TestFetchV2Bounds fetches, in v2, a commit whose pack passes the
// Repo's max_fetch_bytes: it is refused as in v0, and the cache keeps the
// good commit.
func TestFetchV2Bounds(t *testing.T) {
	t.Parallel()
	random := make([]byte, 256<<10)
	rand.Read(random)
	root := gitserver.NewRoot(t)
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	d := root.ServeGit()
	s := root.ServeSSH()
	for _, tt := range []struct {
		name string
		url  func(string) string
		auth pull.Auth
	}{
		{"http", h.URL, pull.Auth{}},
		{"git", d.URL, pull.Auth{}},
		{"ssh", s.URL, pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.KnownHostsFile}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			repo := root.Create("bounds-" + tt.name)
			good := repo.Commit(gitserver.Files{"fleet.yaml": "targets: []\n"}, "good")
			r, logs := openLogged(t, pull.Config{URL: tt.url("bounds-" + tt.name), Auth: tt.auth, MaxFetchBytes: 64 << 10, Timeout: time.Minute})
			if got := poll(t, r); got.Commit != good {
				t.Fatalf("Poll() = %s, want %s", got.Commit, good)
			}
			bad := repo.Commit(gitserver.Files{"random.bin": string(random)}, "random")
			_, err := r.Poll(context.Background())
			if !errors.Is(err, pull.ErrTooLarge) {
				t.Fatalf("Poll() of a pack over the bound = %v, want ErrTooLarge", err)
			}
			var pe *pull.Error
			if !errors.As(err, &pe) || pe.Commit != bad {
				t.Errorf("Poll() = %#v, want an *Error for commit %s", err, bad)
			}
			if got := r.Protocol(); got != pull.ProtocolV2 {
				t.Errorf("Protocol() = %v, want v2", got)
			}
			if n := logs.count(fetchedV2); n != 1 {
				t.Errorf("fetches in v2 = %d, want the good one alone", n)
			}
			if tree := readTree(t, r, good); tree["fleet.yaml"] != "targets: []\n" {
				t.Errorf("Tree(good) = %v, want fleet.yaml", tree)
			}
		})
	}
}
