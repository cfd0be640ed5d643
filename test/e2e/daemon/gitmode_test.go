package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/writeback"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
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

// TestApplyGitModeBadTagNeverWritten closes the loop of update mode git:
// a commit writes a tag whose container fails its health check; apply
// rolls it back, and
// the host's note names the tag as bad; `images update` then passes over
// it (saying why in its commit) and writes the good tag back, which the
// next apply runs.
func TestApplyGitModeBadTagNeverWritten(t *testing.T) {
	t.Parallel()
	name := uniqueName("e2e-gitbad-")
	image := pushWeb(t, name, "1.0.0")
	// 1.1.0 runs, and its health check fails.
	reg.Push(t, name, registry.Image(t, registry.Config{
		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-p", "8080"},
		Health:     &registry.Health{Test: []string{"CMD", "/bin/busybox", "false"}, Interval: time.Second, Retries: 1},
		Labels:     map[string]string{"version": "1.1.0"},
	}), "1.1.0")
	cleanContainers(t, name, image+":1.0.0", image+":1.1.0")
	manifest := func(tag string) gitserver.Files {
		return gitserver.Files{"web.yaml": fmt.Sprintf(
			"kind: container\nname: %s\nimage: %s\ntag: %q # written by outpost images update\nupdate: {policy: semver, mode: git}\nstop_timeout: 1s\n",
			name, image, tag)}
	}
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(manifest("1.0.0"), "web 1.0.0")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	h := host.Start(t, host.Options{BinDir: binDir})
	h.WriteFile(t, configPath, []byte(pushConfig(srv.URL("env"), "gitbad", time.Hour, 10*time.Second, time.Hour)), 0o600)
	mustApply(t, h, 0)

	bad := repo.Commit(manifest("1.1.0"), "images: web 1.0.0 -> 1.1.0")
	if out := mustApply(t, h, 1); !strings.Contains(out.stdout, `"result": "rolled-back"`) {
		t.Fatalf("apply of the bad tag = %s, want rolled-back", out.stdout)
	}
	var n struct {
		Platform  string `json:"platform"`
		BadImages []struct {
			Container, Tag, Reason string
		} `json:"bad_images"`
	}
	eventually(t, time.Minute, "the note on the bad commit names the tag", func() error {
		out, err := exec.Command("git", "--git-dir", repo.Path, "notes", "--ref", "refs/notes/outpost/gitbad", "show", bad).Output()
		if err != nil {
			return err
		}
		if err := json.Unmarshal(out, &n); err != nil {
			return err
		}
		if len(n.BadImages) != 1 || n.BadImages[0].Container != name || n.BadImages[0].Tag != "1.1.0" {
			return fmt.Errorf("note: %s", out)
		}
		return nil
	})
	if n.Platform == "" {
		t.Errorf("the note names no platform")
	}

	res, err := writeback.Run(context.Background(), writeback.Options{Source: srv.URL("env"), Branch: "outpost/images"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || res.Changes[0].From != "1.1.0" || res.Changes[0].To != "1.0.0" ||
		len(res.Changes[0].Skipped) != 1 || res.Changes[0].Skipped[0].Tag != "1.1.0" ||
		!strings.Contains(res.Changes[0].Skipped[0].Reason, "marked bad on gitbad") {
		t.Fatalf("images update = %+v, want 1.1.0 passed over as bad on gitbad and 1.0.0 written", res)
	}
	// The review branch is merged.
	repo.Git("update-ref", "refs/heads/main", res.Commit)
	mustApply(t, h, 0)
	eventually(t, 30*time.Second, "the good tag runs again", func() error {
		ref, err := docker("inspect", "-f", "{{.Config.Image}}", name)
		if err != nil {
			return err
		}
		if !strings.Contains(ref, ":1.0.0") {
			return fmt.Errorf("%s runs %s", name, ref)
		}
		return nil
	})
}
