// Package forge runs a real Git forge, Gitea, for Outpost's tests: on
// loopback, with SQLite, one admin user, and access tokens made and revoked
// through its API. The binary is built from the Go module proxy on first
// use and cached outside the checkout (see Ensure). Everything Start starts
// belongs to one test and stops in t.Cleanup.
//
//	f := forge.Start(t)
//	url := f.CreateRepo(t, "env")             // private: http://127.0.0.1:PORT/fleet/env.git
//	tok := f.Token(t, "host-a")               // a token allowed to read and write repositories
//	c := f.Commit(t, "env", files, "first")    // pushed over HTTP
//	f.Revoke(t, "host-a")
//	f.Note(t, "env", "refs/notes/outpost/web-1", c)  // a note in the server's repository
//	f.FailedLogins()                          // user names Gitea failed to authenticate
//
// forge is for tests only and imports no Outpost package.
package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Admin is the forge's one user; it owns every repository.
const (
	Admin         = "fleet"
	adminPassword = "outpost-test-admin-pw"
)

// Forge is a running Gitea.
type Forge struct {
	// BaseURL is http://127.0.0.1:PORT.
	BaseURL string
	bin     string
	work    string
	env     []string
	logs    *syncBuffer

	mu     sync.Mutex
	tokens map[string]string // by name
	clones map[string]string // work trees by repository
}

// Start builds (or takes from the cache) Gitea, starts it on a free
// loopback port with a fresh database, creates the admin user, and stops it
// when the test ends.
func Start(t testing.TB) *Forge {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	d, err := Ensure(ctx)
	if err != nil {
		t.Fatalf("forge: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("forge: %v", err)
	}
	work := t.TempDir()
	f := &Forge{
		BaseURL: "http://127.0.0.1:" + strconv.Itoa(port),
		bin:     filepath.Join(d, "gitea"),
		work:    work,
		logs:    &syncBuffer{},
		tokens:  map[string]string{},
		clones:  map[string]string{},
	}
	conf := filepath.Join(work, "custom", "conf", "app.ini")
	if err := os.MkdirAll(filepath.Dir(conf), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(appINI(work, filepath.Join(d, "static"), port)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.env = append(os.Environ(),
		"GITEA_WORK_DIR="+work, "GITEA_CUSTOM="+filepath.Join(work, "custom"),
		// Tests run as root; Gitea refuses root without this.
		"GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true",
		"HOME="+work, "GIT_CONFIG_NOSYSTEM=1")
	f.run(t, "migrate")
	f.run(t, "admin", "user", "create", "--username", Admin, "--password", adminPassword,
		"--email", Admin+"@example.com", "--admin", "--must-change-password=false")

	cmd := exec.Command(f.bin, "--config", conf, "web")
	cmd.Env, cmd.Dir = f.env, work
	cmd.Stdout, cmd.Stderr = f.logs, f.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("forge: start gitea: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("gitea's log:\n%s", f.logs.String())
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(f.BaseURL + "/api/v1/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("forge: gitea exited at start:\n%s", f.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("forge: gitea does not answer after a minute: %v\n%s", err, f.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return f
}

func appINI(work, static string, port int) string {
	return fmt.Sprintf(`APP_NAME = outpost-test
RUN_USER = root
RUN_MODE = prod
WORK_PATH = %[1]s
[database]
DB_TYPE = sqlite3
PATH = %[1]s/gitea.db
[repository]
ROOT = %[1]s/repos
[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[3]d
ROOT_URL = http://127.0.0.1:%[3]d/
STATIC_ROOT_PATH = %[2]s
APP_DATA_PATH = %[1]s/data
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
[security]
INSTALL_LOCK = true
SECRET_KEY = outpost-test-secret-key
[oauth2]
ENABLED = false
[service]
DISABLE_REGISTRATION = true
[log]
MODE = console
LEVEL = info
[cron]
ENABLED = false
[indexer]
REPO_INDEXER_ENABLED = false
`, work, static, port)
}

// run runs a gitea subcommand against the forge's configuration.
func (f *Forge) run(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(f.bin, append([]string{"--config", filepath.Join(f.work, "custom", "conf", "app.ini")}, args...)...)
	cmd.Env, cmd.Dir = f.env, f.work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("forge: gitea %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// api calls Gitea's API as the admin user with basic auth and decodes the
// answer into out (nil skips it).
func (f *Forge) api(t testing.TB, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.BaseURL+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(Admin, adminPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("forge: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("forge: %s %s = %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("forge: %s %s: %v: %s", method, path, err, b)
		}
	}
}

// CreateRepo makes a private, empty repository of the admin user and
// returns its clone URL.
func (f *Forge) CreateRepo(t testing.TB, name string) string {
	t.Helper()
	f.api(t, http.MethodPost, "/user/repos", map[string]any{"name": name, "private": true}, nil)
	return f.RepoURL(name)
}

// RepoURL is the clone URL of the admin user's repository name.
func (f *Forge) RepoURL(name string) string { return f.BaseURL + "/" + Admin + "/" + name + ".git" }

// Token creates an access token called name, allowed to read and write
// repositories, and returns it.
func (f *Forge) Token(t testing.TB, name string) string {
	t.Helper()
	var tok struct {
		SHA1 string `json:"sha1"`
	}
	f.api(t, http.MethodPost, "/users/"+Admin+"/tokens", map[string]any{"name": name, "scopes": []string{"write:repository"}}, &tok)
	if tok.SHA1 == "" {
		t.Fatalf("forge: token %s: empty", name)
	}
	f.mu.Lock()
	f.tokens[name] = tok.SHA1
	f.mu.Unlock()
	return tok.SHA1
}

// Revoke deletes the access token called name.
func (f *Forge) Revoke(t testing.TB, name string) {
	t.Helper()
	f.api(t, http.MethodDelete, "/users/"+Admin+"/tokens/"+name, nil, nil)
}

// Commit writes files (path to content) into the repository's main branch
// in one commit, pushes it over HTTP with a token of its own, and returns
// the commit's hash.
func (f *Forge) Commit(t testing.TB, repo string, files map[string]string, msg string) string {
	t.Helper()
	f.mu.Lock()
	wt, ok := f.clones[repo]
	push, hasPush := f.tokens["outpost-test-push"]
	f.mu.Unlock()
	if !hasPush {
		push = f.Token(t, "outpost-test-push")
	}
	if !ok {
		wt = filepath.Join(t.TempDir(), repo)
		f.git(t, "", "init", "-q", "-b", "main", wt)
		f.mu.Lock()
		f.clones[repo] = wt
		f.mu.Unlock()
	}
	for p, content := range files {
		full := filepath.Join(wt, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.git(t, wt, "add", "-A")
	f.git(t, wt, "-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-q", "--allow-empty", "-m", msg)
	// The token goes in the URL for this push only: it is the user name,
	// as Gitea documents.
	u := strings.Replace(f.RepoURL(repo), "http://", "http://"+push+"@", 1)
	f.git(t, wt, "push", "-q", u, "main")
	return strings.TrimSpace(f.git(t, wt, "rev-parse", "HEAD"))
}

// Note returns the note that ref holds for commit in the server's own copy
// of the repository, and whether there is one.
func (f *Forge) Note(t testing.TB, repo, ref, commit string) (string, bool) {
	t.Helper()
	dir := filepath.Join(f.work, "repos", Admin, strings.ToLower(repo)+".git")
	cmd := exec.Command("git", "--git-dir", dir, "notes", "--ref", ref, "show", commit)
	cmd.Env = f.env
	out, err := cmd.Output()
	if err != nil {
		return "", false
	}
	return string(out), true
}

func (f *Forge) git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, f.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("forge: git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// failedLogin is what Gitea logs when a request's basic auth credentials
// matched no token and it tried them as a user's password in vain.
var failedLogin = regexp.MustCompile(`Failed to verify user: .*?name: ([^\]\s]*)\]`)

// FailedLogins returns the user name of each failed basic auth login that
// Gitea logged, in order.
func (f *Forge) FailedLogins() []string {
	var names []string
	for _, m := range failedLogin.FindAllStringSubmatch(f.logs.String(), -1) {
		names = append(names, m[1])
	}
	return names
}

// Log returns what Gitea wrote so far.
func (f *Forge) Log() string { return f.logs.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
