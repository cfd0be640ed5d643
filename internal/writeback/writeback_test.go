package writeback_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/internal/writeback"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	testreg "github.com/outpost-gitops/outpost/test/e2e/registry"
)

// fixture is an environment repository on a real git server whose
// containers follow a real registry, and the hosts' notes on its commit.
type fixture struct {
	reg     *testreg.Registry
	repo    *gitserver.Repo
	url     string
	base    string // the commit the hosts' notes are on
	bad12   string // the digest of web:1.2.0, marked bad on host b
	webFile string
}

const webManifest = `# The web front. Its tag is written by outpost images update.
kind: container
name: web
image: %[1]s/web
tag: "1.0.0"      # keep this comment
update: {policy: semver, range: "^1", mode: git}
---
kind: container
name: api
image: %[1]s/api
tag: 2.0.0
update:
  policy: semver
  mode: git
`

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{reg: testreg.Start(t)}
	push := func(repo, tag string) string {
		img := testreg.Image(t, testreg.Config{Entrypoint: []string{"/bin/busybox", "true"}, Labels: map[string]string{"tag": tag}})
		return f.reg.Push(t, repo, img, tag)
	}
	push("web", "1.0.0")
	push("web", "1.1.0")
	f.bad12 = push("web", "1.2.0")
	push("web", "2.0.0") // out of range
	push("api", "2.0.0")
	root := gitserver.NewRoot(t)
	f.repo = root.Create("env")
	f.webFile = fmt.Sprintf(webManifest, f.reg.Host())
	f.base = f.repo.Commit(gitserver.Files{
		"apps/web.yaml":  f.webFile,
		"apps/gone.yaml": fmt.Sprintf("kind: container\nname: gone\nimage: %s/gone\ntag: \"1.0.0\"\nupdate: {policy: semver, mode: git}\n", f.reg.Host()),
		"apps/host.yaml": fmt.Sprintf("kind: container\nname: polled\nimage: %s/web\nupdate: {policy: semver}\n", f.reg.Host()),
	}, "the fleet's containers")
	f.url = root.ServeHTTP(gitserver.HTTPOptions{}).URL("env")
	plat := registry.HostPlatform().String()
	f.note(t, "a", plat, nil)
	f.note(t, "b", plat, []status.BadImage{{Container: "web", Tag: "1.2.0", Digest: f.bad12, Reason: "healthcheck failed"}})
	return f
}

func (f *fixture) note(t *testing.T, host, platform string, bad []status.BadImage) {
	t.Helper()
	notes, err := status.OpenPath(f.repo.Path, host)
	if err != nil {
		t.Fatal(err)
	}
	n := status.New(host, f.base, status.Result("applied"), time.Now())
	n.Labels = map[string]string{"role": "web"}
	n.Platform, n.BadImages = platform, bad
	if _, err := notes.Write(context.Background(), n, status.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) run(t *testing.T, o writeback.Options) *writeback.Result {
	t.Helper()
	o.Source = f.url
	o.Platform = registry.HostPlatform()
	res, err := writeback.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run(%+v) = %v", o, err)
	}
	return res
}

// git runs git on the server's bare repository.
func (f *fixture) git(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", f.repo.Path}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestUpdateWritesOneLine pushes the change to a branch for review: only
// the tag line of web changes, its comment kept; 1.2.0, marked bad on host
// b, is passed over and said so; the registry error of gone leaves its pin;
// a second run pushes nothing.
func TestUpdateWritesOneLine(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	res := f.run(t, writeback.Options{Branch: "outpost/images"})

	if len(res.Changes) != 1 {
		t.Fatalf("changes = %+v, want web's alone", res.Changes)
	}
	ch := res.Changes[0]
	want := writeback.Change{File: "apps/web.yaml", Line: 5, Container: "web", Image: f.reg.Host() + "/web", From: "1.0.0", To: "1.1.0",
		Digest: ch.Digest, Hosts: 2, Skipped: []writeback.Skip{{Tag: "1.2.0", Digest: f.bad12, Reason: "marked bad on b: healthcheck failed"}}}
	if diff := cmp.Diff(want, ch); diff != "" {
		t.Errorf("change (-want +got):\n%s", diff)
	}
	if len(res.Errors) != 1 || res.Errors[0].Container != "gone" {
		t.Errorf("errors = %+v, want gone's registry error", res.Errors)
	}
	if res.Commit == "" || res.Branch != "outpost/images" || res.Proposed {
		t.Fatalf("result = %+v, want a commit pushed to outpost/images", res)
	}
	if tip := f.git(t, "rev-parse", "refs/heads/outpost/images"); tip != res.Commit {
		t.Errorf("outpost/images = %s, want %s", tip, res.Commit)
	}
	if main := f.git(t, "rev-parse", "refs/heads/main"); main != f.base {
		t.Errorf("main moved to %s", main)
	}
	diff := f.git(t, "diff", "--unified=0", f.base, res.Commit)
	var changed []string
	for _, l := range strings.Split(diff, "\n") {
		if (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			changed = append(changed, l)
		}
	}
	wantLines := []string{`-tag: "1.0.0"      # keep this comment`, `+tag: "1.1.0"      # keep this comment`}
	if d := cmp.Diff(wantLines, changed); d != "" {
		t.Errorf("the commit changes (-want +got):\n%s\nwhole diff:\n%s", d, diff)
	}
	msg := f.git(t, "log", "-1", "--format=%B", res.Commit)
	for _, s := range []string{"web 1.0.0 -> 1.1.0", "apps/web.yaml:5", "passed over 1.2.0: marked bad on b: healthcheck failed"} {
		if !strings.Contains(msg, s) {
			t.Errorf("commit message lacks %q:\n%s", s, msg)
		}
	}

	again := f.run(t, writeback.Options{Branch: "outpost/images"})
	if !again.Proposed || again.Commit != res.Commit {
		t.Errorf("second run = %+v, want the branch left as it is", again)
	}
	if tip := f.git(t, "rev-parse", "refs/heads/outpost/images"); tip != res.Commit {
		t.Errorf("second run moved outpost/images to %s", tip)
	}
	if n := f.git(t, "rev-list", "--count", "--all", "--", "apps"); n != "2" {
		t.Errorf("commits touching apps/ = %s, want 2", n)
	}
}

// TestUpdateToTargetThenNothingNew pushes to the target branch; the next
// run finds nothing new and makes no commit.
func TestUpdateToTargetThenNothingNew(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	res := f.run(t, writeback.Options{})
	if res.Commit == "" || res.Branch != "main" {
		t.Fatalf("result = %+v, want a commit on main", res)
	}
	if main := f.git(t, "rev-parse", "refs/heads/main"); main != res.Commit {
		t.Fatalf("main = %s, want %s", main, res.Commit)
	}
	again := f.run(t, writeback.Options{})
	if again.Commit != "" || len(again.Changes) != 0 {
		t.Errorf("second run = %+v, want nothing new", again)
	}
	if main := f.git(t, "rev-parse", "refs/heads/main"); main != res.Commit {
		t.Errorf("second run moved main to %s", main)
	}
}

// TestUpdateDryRun writes nothing.
func TestUpdateDryRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	res := f.run(t, writeback.Options{Branch: "outpost/images", DryRun: true})
	if len(res.Changes) != 1 || res.Commit != "" {
		t.Errorf("dry run = %+v, want one change and no commit", res)
	}
	if out := f.git(t, "branch", "--list", "outpost/images"); out != "" {
		t.Errorf("dry run made the branch: %s", out)
	}
}

// TestUpdateConcurrent runs four updates at once, to the review branch and
// to the target: each destination gets one change.
func TestUpdateConcurrent(t *testing.T) {
	t.Parallel()
	for _, branch := range []string{"outpost/images", ""} {
		t.Run("branch="+branch, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var wg sync.WaitGroup
			results := make([]*writeback.Result, 4)
			errs := make([]error, 4)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], errs[i] = writeback.Run(context.Background(),
						writeback.Options{Source: f.url, Branch: branch, Platform: registry.HostPlatform()})
				}()
			}
			wg.Wait()
			dest := branch
			if dest == "" {
				dest = "main"
			}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
			}
			if n := f.git(t, "rev-list", "--count", f.base+".."+"refs/heads/"+dest); n != "1" {
				t.Errorf("%s has %s commits above the base, want 1:\n%s", dest, n, f.git(t, "log", "--oneline", "refs/heads/"+dest))
			}
		})
	}
}

// TestUpdateSigned signs the commit with an SSH key, and Outpost's own
// verifier accepts it from the branch.
func TestUpdateSigned(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	key := gitserver.NewSSHKey(t)
	res := f.run(t, writeback.Options{Branch: "outpost/images", SignKey: key.PrivateFile})
	signers := filepath.Join(t.TempDir(), "allowed_signers")
	if err := os.WriteFile(signers, []byte(key.AllowedSigner("images@outpost.invalid")), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := pull.Open(filepath.Join(t.TempDir(), "git"), pull.Config{URL: f.url, Branch: "outpost/images",
		Timeout: 20 * time.Second, Verify: pull.Verify{AllowedSigners: signers}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != res.Commit {
		t.Fatalf("Poll = %s, want %s", got.Commit, res.Commit)
	}
	if err := r.Verify(res.Commit); err != nil {
		t.Errorf("Verify(%s) = %v", res.Commit, err)
	}
	stranger := gitserver.NewSSHKey(t)
	os.WriteFile(signers, []byte(stranger.AllowedSigner("x@outpost.invalid")), 0o600)
	r2, err := pull.Open(filepath.Join(t.TempDir(), "git"), pull.Config{URL: f.url, Branch: "outpost/images",
		Timeout: 20 * time.Second, Verify: pull.Verify{AllowedSigners: signers}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r2.Verify(res.Commit); err == nil {
		t.Errorf("Verify with another key's allowed_signers accepted the commit")
	}
}
