package pull_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// faultSource is a repository behind a fault proxy, over one transport.
type faultSource struct {
	repo  *gitserver.Repo
	proxy *gitserver.Proxy
	cfg   pull.Config
	stop  func()
}

func faultSources(t *testing.T) map[string]func(t *testing.T) faultSource {
	return map[string]func(t *testing.T) faultSource{
		"http": func(t *testing.T) faultSource {
			root := gitserver.NewRoot(t)
			repo := root.Create("env")
			h := root.ServeHTTP(gitserver.HTTPOptions{})
			p := gitserver.NewProxy(t, h.Addr)
			return faultSource{repo, p, pull.Config{URL: "http://" + p.Addr + "/env.git"}, h.Close}
		},
		"git": func(t *testing.T) faultSource {
			root := gitserver.NewRoot(t)
			repo := root.Create("env")
			d := root.ServeGit()
			p := gitserver.NewProxy(t, d.Addr)
			return faultSource{repo, p, pull.Config{URL: "git://" + p.Addr + "/env.git"}, d.Close}
		},
		"ssh": func(t *testing.T) faultSource {
			root := gitserver.NewRoot(t)
			repo := root.Create("env")
			s := root.ServeSSH()
			p := gitserver.NewProxy(t, s.Addr)
			host, port, _ := strings.Cut(p.Addr, ":")
			kh := secretFile(t, "known_hosts", fmt.Sprintf("[%s]:%s %s\n", host, port, s.HostKey))
			return faultSource{repo, p, pull.Config{
				URL:  "ssh://" + s.User + "@" + p.Addr + repo.Path,
				Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: kh},
			}, s.Close}
		},
	}
}

// noise returns n hex characters that do not compress much.
func noise(t *testing.T, n int) string {
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

var quick = pull.Backoff{Base: 10 * time.Millisecond, Cap: 20 * time.Millisecond, Seed: "test-host"}

// TestOffline cuts a fetch in the middle, slows the server beyond the
// timeout and stops it: each time Resolve falls back to the last good
// commit and says it is offline, the cache stays sound, and the next poll
// after the server returns succeeds.
func TestOffline(t *testing.T) {
	t.Parallel()
	for name, mk := range faultSources(t) {
		t.Run(name, func(t *testing.T) {
			src := mk(t)
			src.cfg.Timeout = 3 * time.Second
			ctx := context.Background()
			c1 := src.repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
			dir := filepath.Join(t.TempDir(), "git")
			r, err := pull.Open(dir, src.cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			choice, err := r.Resolve(ctx, "", quick, 2)
			if err != nil || choice.Commit != c1 || choice.Offline {
				t.Fatalf("Resolve = %+v, %v; want %s online", choice, err, c1)
			}
			lastGood := c1

			big := noise(t, 512<<10)
			c2 := src.repo.Commit(gitserver.Files{"a.yaml": "a: 2\n", "big": big}, "second")

			t.Run("cut mid-fetch", func(t *testing.T) {
				// The ref advertisement passes, the pack does not.
				src.proxy.CutAfter(64 << 10)
				defer src.proxy.CutAfter(0)
				choice, err := r.Resolve(ctx, lastGood, quick, 2)
				if err != nil || choice.Commit != lastGood || !choice.Offline || !pull.IsTransient(choice.Fallback) {
					t.Fatalf("Resolve with a cut connection = %+v, %v; want %s offline", choice, err, lastGood)
				}
				t.Logf("fallback: %v", choice.Fallback)
				if got := readTree(t, r, lastGood); got["a.yaml"] != "a: 1\n" {
					t.Errorf("Tree(last good) after a cut fetch = %v", got)
				}
			})
			t.Run("slow beyond the timeout", func(t *testing.T) {
				src.proxy.Delay(4 * time.Second)
				defer src.proxy.Delay(0)
				choice, err := r.Resolve(ctx, lastGood, quick, 1)
				if err != nil || choice.Commit != lastGood || !choice.Offline || !errors.Is(choice.Fallback, pull.ErrTimeout) {
					t.Fatalf("Resolve with a slow server = %+v, %v; want %s offline after a timeout", choice, err, lastGood)
				}
				t.Logf("fallback: %v", choice.Fallback)
			})
			t.Run("server back", func(t *testing.T) {
				res, err := r.Poll(ctx)
				if err != nil || res.Commit != c2 || !res.Changed {
					t.Fatalf("Poll after the faults = %+v, %v; want %s changed", res, err, c2)
				}
				if got := readTree(t, r, c2); got["big"] != big {
					t.Errorf("Tree(c2)[big] has %d bytes, want %d", len(got["big"]), len(big))
				}
				lastGood = c2
			})
			t.Run("server stopped", func(t *testing.T) {
				src.stop()
				choice, err := r.Resolve(ctx, lastGood, quick, 2)
				if err != nil || choice.Commit != lastGood || !choice.Offline {
					t.Fatalf("Resolve with a stopped server = %+v, %v; want %s offline", choice, err, lastGood)
				}
				t.Logf("fallback: %v", choice.Fallback)
				// A fresh start on the same cache with nothing good yet.
				r2, err := pull.Open(dir, src.cfg, testLogger(t))
				if err != nil {
					t.Fatal(err)
				}
				_, err = r2.Resolve(ctx, "", quick, 1)
				if !errors.Is(err, pull.ErrNoGoodCommit) || !pull.IsTransient(err) {
					t.Errorf("Resolve offline without a last good commit = %v, want ErrNoGoodCommit and a transient cause", err)
				}
				if got := readTree(t, r2, lastGood); got["a.yaml"] != "a: 2\n" {
					t.Errorf("Tree(last good) from the cache while offline = %v", got)
				}
			})
		})
	}
}

// TestNoPartialFetch checks that a cut fetch leaves nothing behind that a
// later Open would take for damage.
func TestNoPartialFetch(t *testing.T) {
	t.Parallel()
	src := faultSources(t)["http"](t)
	src.cfg.Timeout = 5 * time.Second
	c1 := src.repo.Commit(gitserver.Files{"a": "1"}, "first")
	dir := filepath.Join(t.TempDir(), "git")
	r, err := pull.Open(dir, src.cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	poll(t, r)
	src.repo.Commit(gitserver.Files{"big": noise(t, 256<<10)}, "second")
	src.proxy.CutAfter(32 << 10)
	if _, err := r.Poll(context.Background()); err == nil {
		t.Fatal("Poll through a cut connection = nil error")
	}
	src.proxy.CutAfter(0)
	var logs strings.Builder
	r2, err := pull.Open(dir, src.cfg, newLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "damaged") {
		t.Errorf("Open after a cut fetch found damage: %s", logs.String())
	}
	if got := readTree(t, r2, c1); got["a"] != "1" {
		t.Errorf("Tree(c1) after a cut fetch = %v", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "objects", "pack"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "tmp") {
			t.Errorf("Open left a partial fetch in objects/pack: %s", e.Name())
		}
	}
}

// TestServerError treats an HTTP 5xx as transient: Retry tries again and
// succeeds once the server recovers.
func TestServerError(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	c1 := repo.Commit(gitserver.Files{"a": "1"}, "first")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	failures := 2
	var mu sync.Mutex
	h.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if failures == 0 {
			return false
		}
		failures--
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return true
	})
	r := open(t, pull.Config{URL: h.URL("env"), Timeout: 20 * time.Second})
	_, err := r.Poll(context.Background())
	if !errors.Is(err, pull.ErrUnreachable) || !pull.IsTransient(err) {
		t.Fatalf("Poll of a server answering 503 = %v, want a transient ErrUnreachable", err)
	}
	choice, err := r.Resolve(context.Background(), "", quick, 3)
	if err != nil || choice.Commit != c1 || choice.Fallback != nil {
		t.Errorf("Resolve after a 503 = %+v, %v; want %s after a retry", choice, err, c1)
	}
}
