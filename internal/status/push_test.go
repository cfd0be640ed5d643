package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// serverGit runs git in a bare repository of the server.
func serverGit(t testing.TB, repo *gitserver.Repo, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", repo.Path}, args...)...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C", "PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

func mustServerGit(t testing.TB, repo *gitserver.Repo, args ...string) string {
	t.Helper()
	out, err := serverGit(t, repo, args...)
	if err != nil {
		t.Fatalf("git %s on the server: %v", strings.Join(args, " "), err)
	}
	return out
}

// serverNote reads host's note on commit from the server's repository with
// the git command line.
func serverNote(t testing.TB, repo *gitserver.Repo, host, commit string) (Note, bool) {
	t.Helper()
	out, err := serverGit(t, repo, "notes", "--ref=outpost/"+host, "show", commit)
	if err != nil {
		return Note{}, false
	}
	n, err := Parse([]byte(out))
	if err != nil {
		t.Fatalf("note of %s on %s on the server: Parse() error = %v\n%s", host, commit, err, out)
	}
	return n, true
}

// hostRepo is a host's local repository: an empty bare repository, as a
// clone cache is before its first fetch.
func hostRepo(t testing.TB) *git.Repository {
	t.Helper()
	r, err := git.PlainInit(filepath.Join(t.TempDir(), "cache"), true)
	if err != nil {
		t.Fatalf("PlainInit() error = %v", err)
	}
	return r
}

func mustOpen(t testing.TB, r *git.Repository, host string) *Notes {
	t.Helper()
	n, err := Open(r, host)
	if err != nil {
		t.Fatalf("Open(%s) error = %v", host, err)
	}
	return n
}

func mustPusher(t testing.TB, notes *Notes, o PushOptions) *Pusher {
	t.Helper()
	p, err := NewPusher(notes, o)
	if err != nil {
		t.Fatalf("NewPusher() error = %v", err)
	}
	return p
}

func TestPushOneHost(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	commit := repo.Commit(gitserver.Files{"web.yaml": "kind: file\npath: /etc/web.conf\ncontent: x\n"}, "first")
	httpSrv := root.ServeHTTP(gitserver.HTTPOptions{})
	sshSrv := root.ServeSSH()

	for _, tt := range []struct {
		name string
		src  pull.Config
	}{
		{name: "http", src: pull.Config{URL: httpSrv.URL("env")}},
		{name: "ssh", src: pull.Config{URL: sshSrv.URL("env"), Auth: pull.Auth{SSHKeyFile: sshSrv.KeyFile, KnownHostsFile: sshSrv.KnownHostsFile}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			tr, err := tt.src.Transport()
			if err != nil {
				t.Fatalf("Transport() error = %v", err)
			}
			// The agent's clone cache, fetched from the server.
			clone, err := git.PlainCloneContext(ctx, filepath.Join(t.TempDir(), "cache"), true, &git.CloneOptions{URL: tr.URL, Auth: tr.Auth})
			if err != nil {
				t.Fatalf("clone %s: %v", tr.URL, err)
			}
			host := "edge-" + tt.name
			notes := mustOpen(t, clone, host)
			n := New(host, commit, Applied, time.Now())
			n.Labels = map[string]string{"site": "berlin"}
			n.AgentVersion = "0.1.0-test"
			n.HealthyAt = n.AppliedAt.Add(3 * time.Second)
			n.Images = map[string]string{"web": "1.4.2@sha256:" + strings.Repeat("c", 64)}
			n.DriftRepairs = 1
			if !mustWrite(t, notes, n, WriteOptions{}) {
				t.Fatalf("Write() = false, want true")
			}
			p := mustPusher(t, notes, PushOptions{URL: tr.URL, Auth: tr.Auth, CABundle: tr.CABundle})
			if err := p.Push(ctx); err != nil {
				t.Fatalf("Push() error = %v", err)
			}
			got, ok := serverNote(t, repo, host, commit)
			if !ok {
				t.Fatalf("server has no note of %s on %s", host, commit)
			}
			if diff := cmp.Diff(n.normalized(), got); diff != "" {
				t.Errorf("note on the server differs (-want +got):\n%s", diff)
			}
			log := mustServerGit(t, repo, "log", "--notes=outpost/*", "--format=%H%n%N", "main")
			for _, s := range []string{`"schema": 1`, `"host": "` + host + `"`, `"result": "applied"`} {
				if !strings.Contains(log, s) {
					t.Errorf("git log --notes='outpost/*' on the server lacks %s:\n%s", s, log)
				}
			}
			if pending, err := p.Pending(); err != nil || pending != 0 {
				t.Errorf("Pending() = %d, %v, want 0, nil", pending, err)
			}
			// Pushing again with nothing new changes nothing.
			before := mustServerGit(t, repo, "rev-parse", "refs/notes/outpost/"+host)
			if err := p.Push(ctx); err != nil {
				t.Errorf("Push() again error = %v", err)
			}
			if after := mustServerGit(t, repo, "rev-parse", "refs/notes/outpost/"+host); after != before {
				t.Errorf("notes ref after an empty push = %s, want %s", after, before)
			}
		})
	}
}

func TestPushOffline(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	proxy := gitserver.NewProxy(t, srv.Addr)
	url := "http://" + proxy.Addr + "/env.git"

	notes := mustOpen(t, hostRepo(t), "edge-off")
	p := mustPusher(t, notes, PushOptions{URL: url, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})

	proxy.CutAfter(1) // every answer of the server is cut: the network is gone
	var commits []string
	for i := range 3 {
		c := repo.Commit(gitserver.Files{"f": fmt.Sprint(i)}, fmt.Sprint("change ", i))
		commits = append(commits, c)
		mustWrite(t, notes, New("edge-off", c, Applied, time.Now()), WriteOptions{})
		p.Notify()
	}
	if err := p.Push(ctx); err == nil {
		t.Fatalf("Push() while offline = nil, want an error")
	}
	if pending, err := p.Pending(); err != nil || pending != 3 {
		t.Errorf("Pending() offline = %d, %v, want 3, nil", pending, err)
	}
	if _, err := serverGit(t, repo, "rev-parse", "--verify", "refs/notes/outpost/edge-off"); err == nil {
		t.Fatalf("the server has the notes ref while the host is offline")
	}

	proxy.CutAfter(0) // back online: Run's next retry pushes
	waitFor(t, "every queued note pushed", func() bool {
		n, err := p.Pending()
		return err == nil && n == 0
	})
	for _, c := range commits {
		if _, ok := serverNote(t, repo, "edge-off", c); !ok {
			t.Errorf("server lacks the note on %s", c)
		}
	}
	if got := mustServerGit(t, repo, "rev-list", "--count", "refs/notes/outpost/edge-off"); got != "3" {
		t.Errorf("notes commits on the server = %s, want 3", got)
	}
}

// waitFor polls cond until it holds, failing t after a generous deadline
// (a stuck push, not a slow one).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func TestPushAfterWipe(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	url := root.ServeHTTP(gitserver.HTTPOptions{}).URL("env")
	ctx := context.Background()
	c1 := repo.Commit(gitserver.Files{"f": "1"}, "one")
	c2 := repo.Commit(gitserver.Files{"f": "2"}, "two")
	c3 := repo.Commit(gitserver.Files{"f": "3"}, "three")

	before := mustOpen(t, hostRepo(t), "edge-w")
	mustWrite(t, before, New("edge-w", c1, Applied, time.Now()), WriteOptions{})
	mustWrite(t, before, New("edge-w", c2, Failed, time.Now()), WriteOptions{})
	if err := mustPusher(t, before, PushOptions{URL: url}).Push(ctx); err != nil {
		t.Fatalf("Push() error = %v", err)
	}
	oldTip := mustServerGit(t, repo, "rev-parse", "refs/notes/outpost/edge-w")

	// The state directory is gone: a fresh clone cache, no notes ref.
	after := mustOpen(t, hostRepo(t), "edge-w")
	mustWrite(t, after, New("edge-w", c3, Applied, time.Now()), WriteOptions{})
	// A note on c1 again (the host went back to it): the newer one wins.
	redo := New("edge-w", c1, RolledBack, time.Now())
	mustWrite(t, after, redo, WriteOptions{})
	p := mustPusher(t, after, PushOptions{URL: url})
	if err := p.Push(ctx); err != nil {
		t.Fatalf("Push() after wipe error = %v", err)
	}
	newTip := mustServerGit(t, repo, "rev-parse", "refs/notes/outpost/edge-w")
	if _, err := serverGit(t, repo, "merge-base", "--is-ancestor", oldTip, newTip); err != nil {
		t.Errorf("the server's notes history was rewritten: %s is not an ancestor of %s", oldTip, newTip)
	}
	if got := mustServerGit(t, repo, "rev-list", "--count", "refs/notes/outpost/edge-w"); got != "4" {
		t.Errorf("notes commits on the server = %s, want 4", got)
	}
	want := map[string]Result{c1: RolledBack, c2: Failed, c3: Applied}
	for c, r := range want {
		n, ok := serverNote(t, repo, "edge-w", c)
		if !ok || n.Result != r {
			t.Errorf("server note on %s = %q (found %v), want %q", c, n.Result, ok, r)
		}
	}
	if n, ok, err := after.Latest(); err != nil || !ok || n.Commit != c1 || n.Result != RolledBack {
		t.Errorf("Latest() after the rebuild = %s %s, %v, %v, want %s rolled-back", n.Commit, n.Result, ok, err, c1)
	}

	// A host wiped again that has written nothing yet starts from the
	// server's history, so its next note is compared with its last one.
	empty := mustOpen(t, hostRepo(t), "edge-w")
	if err := mustPusher(t, empty, PushOptions{URL: url}).Push(ctx); err != nil {
		t.Fatalf("Push() with nothing written error = %v", err)
	}
	if mustWrite(t, empty, redo, WriteOptions{}) {
		t.Errorf("Write(the server's latest outcome) after a wipe = true, want false")
	}
}

func TestPushRedacts(t *testing.T) {
	const (
		user      = "deploy"
		password  = "pa55-w0rd-xyz"
		secretEnv = "sup3r-s3cret-env"
	)
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	srv := root.ServeHTTP(gitserver.HTTPOptions{Username: user, Password: password})
	url := strings.Replace(srv.URL("env"), "http://", "http://"+user+":"+password+"@", 1)
	commit := repo.Commit(gitserver.Files{"f": "1"}, "one")

	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	state := &spec.State{Resources: []*spec.Resource{{
		ID:     spec.ID{Kind: docker.Kind, Name: "web"},
		Object: &docker.Container{Name: "web", Env: map[string]string{"API_KEY": secretEnv}},
	}}}
	notes := mustOpen(t, hostRepo(t), "edge-s")
	n := New("edge-s", commit, Failed, time.Now())
	n.Message = "fetched " + url
	n.Failed = []Failure{{Resource: "container:web", Error: "create: env API_KEY=" + secretEnv + ": invalid; source " + url}}
	mustWrite(t, notes, n, WriteOptions{Secrets: Secrets(state)})

	// Fail the first requests so that errors are logged.
	var failed int
	srv.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if failed < 2 {
			failed++
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	p := mustPusher(t, notes, PushOptions{URL: url, Logger: logger, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	err := p.Push(context.Background())
	if err == nil {
		t.Fatalf("Push() with a failing server = nil, want an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "the note pushed", func() bool {
		n, err := p.Pending()
		return err == nil && n == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if _, ok := serverNote(t, repo, "edge-s", commit); !ok {
		t.Fatalf("server lacks the note")
	}

	mu.Lock()
	logText := logs.String()
	mu.Unlock()
	if !strings.Contains(logText, "not pushed") {
		t.Errorf("log lacks the failed push:\n%s", logText)
	}
	everything := map[string]string{
		"push error": err.Error(),
		"log":        logText,
		"notes":      mustServerGit(t, repo, "log", "--notes=outpost/*", "--format=%H%n%N", "main"),
		"notes log":  mustServerGit(t, repo, "log", "-p", "refs/notes/outpost/edge-s"),
	}
	for what, text := range everything {
		for _, secret := range []string{password, secretEnv} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the secret %q:\n%s", what, secret, text)
			}
		}
	}
	if !strings.Contains(everything["notes"], "API_KEY=[redacted]") {
		t.Errorf("note lacks API_KEY=[redacted]:\n%s", everything["notes"])
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestNewPusherErrors(t *testing.T) {
	notes := mustOpen(t, hostRepo(t), "h")
	if _, err := NewPusher(notes, PushOptions{}); err == nil {
		t.Errorf("NewPusher(no URL) error = nil, want an error")
	}
}

// A network that swallows answers without closing the connection does not
// hold a push beyond its timeout.
func TestPushTimeout(t *testing.T) {
	root := gitserver.NewRoot(t)
	root.Create("env")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	proxy := gitserver.NewProxy(t, srv.Addr)
	proxy.Delay(time.Hour)

	notes := mustOpen(t, hostRepo(t), "edge-t")
	mustWrite(t, notes, New("edge-t", commitA, Applied, time.Now()), WriteOptions{})
	p := mustPusher(t, notes, PushOptions{URL: "http://" + proxy.Addr + "/env.git", Timeout: 300 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- p.Push(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Push() through a silent network = nil, want an error")
		}
	case <-ctx.Done():
		t.Fatalf("Push() through a silent network did not return: the timeout is not applied")
	}
	if pending, err := p.Pending(); err != nil || pending != 1 {
		t.Errorf("Pending() = %d, %v, want 1, nil", pending, err)
	}
}

// A push refused for its token is logged once at warn, with the hint,
// however often it is retried; the token written to the file next is
// used at the next retry, which is logged as a recovery.
func TestPushRefusedToken(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	commit := repo.Commit(gitserver.Files{"f": "1"}, "one")
	tokens := gitserver.NewTokens("tok-a")
	srv := root.ServeHTTP(gitserver.HTTPOptions{Tokens: tokens})
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("tok-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := pull.Config{URL: srv.URL("env"), Auth: pull.Auth{TokenFile: tokFile}}.Transport()
	if err != nil {
		t.Fatalf("Transport() = %v", err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	notes := mustOpen(t, hostRepo(t), "edge-r")
	mustWrite(t, notes, New("edge-r", commit, Applied, time.Now()), WriteOptions{})
	p := mustPusher(t, notes, PushOptions{URL: tr.URL, Auth: tr.Auth, Logger: logger, AuthHint: "rotate-hint",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})

	tokens.Revoke("tok-a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "five refused pushes", func() bool { return srv.Requests() >= 5 })
	tokens.Add("tok-b")
	if err := os.WriteFile(tokFile, []byte("tok-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the note pushed with the new token", func() bool {
		n, err := p.Pending()
		return err == nil && n == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if _, ok := serverNote(t, repo, "edge-r", commit); !ok {
		t.Errorf("the server lacks the note after the rotation")
	}

	mu.Lock()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	mu.Unlock()
	count := map[string]int{}
	for _, l := range lines {
		var e struct{ Level, Msg, Hint string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if e.Level == "WARN" || e.Level == "INFO" {
			count[e.Level+" "+e.Msg+" hint="+e.Hint]++
		}
	}
	want := map[string]int{
		"WARN status notes not pushed: the server refused the credentials; notes stay queued in the local ref hint=rotate-hint": 1,
		"INFO status notes pushed again hint=": 1,
	}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Errorf("warn and info lines (-want +got):\n%s", diff)
	}
	if got := tokens.PasswordLogins(); len(got) != 0 {
		t.Errorf("the server fell back to password logins for %q", got)
	}
}
