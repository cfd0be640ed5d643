package daemon

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// registryCounter stands in front of the shared registry and counts the
// requests that Outpost itself sends (its User-Agent), per repository. The
// engine's pulls (User-Agent docker/...) pass uncounted.
type registryCounter struct {
	mu     sync.Mutex
	byRepo map[string]int
}

func (c *registryCounter) count(repo string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byRepo[repo]
}

// startCounter returns the counter and the host:port that reaches the
// registry through it (loopback, so plain HTTP, as the registry itself).
func startCounter(t *testing.T) (*registryCounter, string) {
	c := &registryCounter{byRepo: map[string]int{}}
	target, err := url.Parse("http://" + reg.Host())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.UserAgent(), "outpost/") {
			// /v2/<repo>/tags/list, /v2/<repo>/manifests/<ref>, ...
			p := strings.TrimPrefix(r.URL.Path, "/v2/")
			for _, sep := range []string{"/tags/", "/manifests/", "/blobs/"} {
				if i := strings.Index(p, sep); i > 0 {
					p = p[:i]
				}
			}
			c.mu.Lock()
			c.byRepo[p]++
			c.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return c, strings.TrimPrefix(srv.URL, "http://")
}

// TestDaemonGitModeNeverAsksRegistry runs the daemon with two containers in
// update mode git (one by its own update.mode, one by fleet.yaml's default)
// and one in mode host, all three with a newer tag in the registry: the
// host-mode one follows the registry; the git-mode ones run the tag written
// in Git, and the registry sees no request of the agent's for them; a
// commit that writes the new tag (the merge of `outpost images update`'s
// branch) deploys it.
func TestDaemonGitModeNeverAsksRegistry(t *testing.T) {
	t.Parallel()
	counter, via := startCounter(t)
	names := map[string]string{}
	for _, k := range []string{"own", "fleet", "host"} {
		names[k] = uniqueName("e2e-gitmode-" + k + "-")
		pushWeb(t, names[k], "1.0.0", "1.1.0")
		cleanContainers(t, names[k], via+"/"+names[k]+":1.0.0", via+"/"+names[k]+":1.1.0")
	}
	manifests := func(tag string) gitserver.Files {
		health := "health: {cmd: [\"true\"], interval: 1s, retries: 1}\nstop_timeout: 1s\n"
		return gitserver.Files{
			"fleet.yaml": "targets:\n  - path: apps\nupdate: {mode: git}\n",
			"apps/own.yaml": fmt.Sprintf("kind: container\nname: %s\nimage: %s/%s\ntag: %q # pinned\nupdate: {policy: semver, mode: git}\n%s",
				names["own"], via, names["own"], tag, health),
			"apps/fleet.yaml": fmt.Sprintf("kind: container\nname: %s\nimage: %s/%s\ntag: %q\nupdate: {policy: semver}\n%s",
				names["fleet"], via, names["fleet"], tag, health),
			"apps/host.yaml": fmt.Sprintf("kind: container\nname: %s\nimage: %s/%s\nupdate: {policy: semver, mode: host}\n%s",
				names["host"], via, names["host"], health),
		}
	}
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(manifests("1.0.0"), "pin 1.0.0")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir})
	cfg := agentConfig(srv.URL("env"), "gitmode", time.Second, 30*time.Second) + "images:\n  interval: 1s\n"
	a := newAgent(t, h, cfg)
	a.start()
	a.waitStatus(90*time.Second, "the first commit applied", func(s *status) bool {
		return s.Commit == first && s.Result == "applied"
	})
	runs := func(name, tag string) error {
		ref, err := docker("inspect", "-f", "{{.Config.Image}}", name)
		if err != nil {
			return err
		}
		if !strings.Contains(ref, ":"+tag) {
			return fmt.Errorf("%s runs %s, want %s", name, strings.TrimSpace(ref), tag)
		}
		return nil
	}
	// The host-mode container runs by digest: what proves that the counter
	// sees the agent's requests is its count for that container.
	eventually(t, 60*time.Second, "the agent asks the registry for the host-mode container", func() error {
		if n := counter.count(names["host"]); n == 0 {
			return fmt.Errorf("no request counted")
		}
		return nil
	})
	// Several registry intervals pass.
	time.Sleep(4 * time.Second)
	for _, k := range []string{"own", "fleet"} {
		if err := runs(names[k], "1.0.0"); err != nil {
			t.Errorf("before the merge: %v", err)
		}
		if n := counter.count(names[k]); n != 0 {
			t.Errorf("the agent sent %d requests to the registry for %s, in update mode git", n, names[k])
		}
	}

	merged := repo.Commit(manifests("1.1.0"), "images: 1.0.0 -> 1.1.0")
	a.waitStatus(90*time.Second, "the merged commit applied", func(s *status) bool {
		return s.Commit == merged && s.Result == "applied"
	})
	for _, k := range []string{"own", "fleet"} {
		if err := runs(names[k], "1.1.0"); err != nil {
			t.Errorf("after the merge: %v", err)
		}
		if n := counter.count(names[k]); n != 0 {
			t.Errorf("after the merge, the agent sent %d requests to the registry for %s", n, names[k])
		}
	}
}
