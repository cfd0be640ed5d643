package pull_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// logBuffer collects a Repo's log lines for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	t  *testing.T
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// fallbackMsg is what a Repo logs when it gives protocol v2 up.
const fallbackMsg = "does not answer in git protocol v2"

func openLogged(t *testing.T, cfg pull.Config) (*pull.Repo, *logBuffer) {
	t.Helper()
	logs := &logBuffer{t: t}
	r, err := pull.Open(filepath.Join(t.TempDir(), "git"), cfg, newLogger(logs))
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.URL, err)
	}
	return r, logs
}

// TestProtocolV2 polls git http-backend, git daemon and sshd (with
// AcceptEnv GIT_PROTOCOL): every poll speaks v2, sees a push, and never
// falls back.
func TestProtocolV2(t *testing.T) {
	t.Parallel()
	for _, src := range sources(t) {
		if src.name == "file" || src.name == "path" {
			continue
		}
		t.Run(src.name, func(t *testing.T) {
			c1 := src.repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
			r, logs := openLogged(t, src.cfg)
			if got := r.Protocol(); got != pull.ProtocolUnknown {
				t.Errorf("Protocol() before a poll = %v, want %v", got, pull.ProtocolUnknown)
			}
			if got, want := poll(t, r), (pull.Result{Commit: c1, Changed: true}); got != want {
				t.Fatalf("first Poll = %+v, want %+v", got, want)
			}
			if got := r.Protocol(); got != pull.ProtocolV2 {
				t.Fatalf("Protocol() = %v, want %v", got, pull.ProtocolV2)
			}
			if src.http != nil {
				src.http.Reset()
			}
			if got, want := poll(t, r), (pull.Result{Commit: c1}); got != want {
				t.Errorf("unchanged Poll = %+v, want %+v", got, want)
			}
			if src.http != nil {
				want := []string{
					"GET /" + src.name + ".git/info/refs?service=git-upload-pack",
					"POST /" + src.name + ".git/git-upload-pack",
				}
				if got := src.http.Paths(); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("requests of an unchanged poll = %q, want %q", got, want)
				}
			}
			c2 := src.repo.Commit(gitserver.Files{"a.yaml": "a: 2\n"}, "second")
			if got, want := poll(t, r), (pull.Result{Commit: c2, Changed: true}); got != want {
				t.Fatalf("Poll after a push = %+v, want %+v", got, want)
			}
			if got := readTree(t, r, c2)["a.yaml"]; got != "a: 2\n" {
				t.Errorf("Tree(c2)[a.yaml] = %q, want %q", got, "a: 2\n")
			}
			if n := logs.count(fallbackMsg); n != 0 {
				t.Errorf("the Repo fell back to v0 %d times, want never", n)
			}
		})
	}
}

// TestProtocolV2Errors checks that a refusal in v2 is classified as v0's
// is, and does not make the Repo give v2 up.
func TestProtocolV2Errors(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	root.Create("empty")
	h := root.ServeHTTP(gitserver.HTTPOptions{TLS: true, Username: "u", Password: "p"})
	d := root.ServeGit()
	s := root.ServeSSH()
	wrong := secretFile(t, "password", "wrong\n")
	sshAuth := pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.KnownHostsFile}
	tests := []struct {
		name string
		cfg  pull.Config
		want error
	}{
		{"http missing repository", pull.Config{URL: h.URL("nope"), Auth: pull.Auth{Username: "u", PasswordFile: secretFile(t, "ok", "p\n"), CAFile: h.CAFile}}, pull.ErrRepoNotFound},
		{"http wrong password", pull.Config{URL: h.URL("empty"), Auth: pull.Auth{Username: "u", PasswordFile: wrong, CAFile: h.CAFile}}, pull.ErrAuth},
		{"http untrusted certificate", pull.Config{URL: h.URL("empty")}, pull.ErrTLS},
		{"http empty repository", pull.Config{URL: h.URL("empty"), Auth: pull.Auth{Username: "u", PasswordFile: secretFile(t, "ok2", "p\n"), CAFile: h.CAFile}}, pull.ErrBranchNotFound},
		{"git missing repository", pull.Config{URL: d.URL("nope")}, pull.ErrRepoNotFound},
		{"git empty repository", pull.Config{URL: d.URL("empty")}, pull.ErrBranchNotFound},
		{"ssh missing repository", pull.Config{URL: s.URL("nope"), Auth: sshAuth}, pull.ErrRepoNotFound},
		{"ssh changed host key", pull.Config{URL: s.URL("empty"), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.WrongKnownHostsFile}}, pull.ErrHostKeyChanged},
		{"ssh empty repository", pull.Config{URL: s.URL("empty"), Auth: sshAuth}, pull.ErrBranchNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Timeout = 20 * time.Second
			r, logs := openLogged(t, tt.cfg)
			_, err := r.Poll(context.Background())
			if !errors.Is(err, tt.want) || !pull.IsPermanent(err) {
				t.Fatalf("Poll = %v, want a permanent %v", err, tt.want)
			}
			if got := r.Protocol(); got == pull.ProtocolV0 || logs.count(fallbackMsg) != 0 {
				t.Errorf("after %v: Protocol() = %v, want no fallback to v0", err, got)
			}
		})
	}
}

// ignoreGitProtocol makes h answer in v0 only, as a server in front of
// http-backend that does not pass the Git-Protocol header on.
func ignoreGitProtocol(h *gitserver.HTTPServer) {
	h.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		r.Header.Del("Git-Protocol")
		return false
	})
}

// TestProtocolV2Fallback polls servers that answer in v0 only (an
// http-backend that never sees the Git-Protocol header, an sshd without
// AcceptEnv GIT_PROTOCOL): the polls work in v0, and the fallback is
// logged once.
func TestProtocolV2Fallback(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	c1 := repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	ignoreGitProtocol(h)
	s := root.ServeSSHWith(gitserver.SSHOptions{RefuseGitProtocol: true})
	for _, src := range []struct {
		name string
		cfg  pull.Config
	}{
		{"http", pull.Config{URL: h.URL("env")}},
		{"ssh", pull.Config{URL: s.URL("env"), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.KnownHostsFile}}},
	} {
		t.Run(src.name, func(t *testing.T) {
			src.cfg.Timeout = 20 * time.Second
			r, logs := openLogged(t, src.cfg)
			if got, want := poll(t, r), (pull.Result{Commit: c1, Changed: true}); got != want {
				t.Fatalf("first Poll = %+v, want %+v", got, want)
			}
			if got := r.Protocol(); got != pull.ProtocolV0 {
				t.Fatalf("Protocol() = %v, want %v", got, pull.ProtocolV0)
			}
			for range 2 {
				if got, want := poll(t, r), (pull.Result{Commit: c1}); got != want {
					t.Errorf("unchanged Poll = %+v, want %+v", got, want)
				}
			}
			if n := logs.count(fallbackMsg); n != 1 {
				t.Errorf("the fallback was logged %d times in three polls, want once", n)
			}
		})
	}
}

// TestPollBytes counts, at the server's side, the bytes of an unchanged
// poll of a repository with 0, 1,000 and 10,000 notes refs besides its
// branch: in v2 they are the same, and small; in v0 they grow with the
// refs.
func TestPollBytes(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	c1 := repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	hp := gitserver.NewProxy(t, h.Addr)
	h0 := root.ServeHTTP(gitserver.HTTPOptions{})
	ignoreGitProtocol(h0)
	d := root.ServeGit()
	dp := gitserver.NewProxy(t, d.Addr)
	s := root.ServeSSH()
	sp := s.Proxied(t)
	known := sp.KnownHosts
	sshURL := sp.URL("env")

	type counted struct {
		name  string
		cfg   pull.Config
		bytes func() int64
		reset func()
		idle  func() bool // waits until the exchange has ended; nil: it has
		proto pull.Protocol
		r     *pull.Repo
	}
	srcs := []*counted{
		{name: "http bodies", cfg: pull.Config{URL: h.URL("env")}, bytes: h.Bytes, reset: h.Reset, proto: pull.ProtocolV2},
		{name: "http wire", cfg: pull.Config{URL: "http://" + hp.Addr + "/env.git"}, bytes: hp.Bytes, reset: hp.ResetBytes, proto: pull.ProtocolV2},
		{name: "git wire", cfg: pull.Config{URL: "git://" + dp.Addr + "/env.git"}, bytes: dp.Bytes, reset: dp.ResetBytes, idle: dp.WaitIdle, proto: pull.ProtocolV2},
		{name: "ssh wire", cfg: pull.Config{URL: sshURL, Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: known}}, bytes: sp.Bytes, reset: sp.ResetBytes, idle: sp.WaitIdle, proto: pull.ProtocolV2},
		{name: "v0 http bodies", cfg: pull.Config{URL: h0.URL("env")}, bytes: h0.Bytes, reset: h0.Reset, proto: pull.ProtocolV0},
	}
	for _, src := range srcs {
		src.cfg.Timeout = time.Minute
		src.r = open(t, src.cfg)
		if got, want := poll(t, src.r), (pull.Result{Commit: c1, Changed: true}); got != want {
			t.Fatalf("%s: first Poll = %+v, want %+v", src.name, got, want)
		}
		if src.idle != nil && !src.idle() {
			t.Fatalf("%s: the proxy still has connections open after a poll", src.name)
		}
	}
	counts := []int{0, 1000, 10000}
	got := map[string][]int64{}
	made := 0
	for _, n := range counts {
		var names []string
		for ; made < n; made++ {
			names = append(names, fmt.Sprintf("refs/notes/outpost/host-%05d", made))
		}
		if len(names) > 0 {
			repo.CreateRefs(names, c1)
		}
		for _, src := range srcs {
			src.reset()
			if res := poll(t, src.r); res != (pull.Result{Commit: c1}) {
				t.Fatalf("%s: unchanged Poll with %d refs = %+v", src.name, n, res)
			}
			if src.idle != nil && !src.idle() {
				t.Fatalf("%s: the proxy still has connections open after a poll", src.name)
			}
			if p := src.r.Protocol(); p != src.proto {
				t.Fatalf("%s: Protocol() = %v, want %v", src.name, p, src.proto)
			}
			got[src.name] = append(got[src.name], src.bytes())
		}
	}
	for _, src := range srcs {
		t.Logf("bytes per unchanged poll, %s, with %v notes refs: %v", src.name, counts, got[src.name])
	}
	spread := func(b []int64) int64 { return max(b[0], b[1], b[2]) - min(b[0], b[1], b[2]) }
	for _, name := range []string{"http bodies", "git wire"} {
		if b := got[name]; max(b[0], b[1], b[2]) >= 500 || spread(b) > 8 {
			t.Errorf("%s: bytes per unchanged poll = %v for %v refs, want under 500 and within 8 bytes", name, b, counts)
		}
	}
	// The wire carries headers (http) and a key exchange (ssh) too, whose
	// size does not depend on the refs; the key exchange's varies by a few
	// hundred bytes from one connection to the next. A thousand refs more
	// would add some 74,000 bytes in v0.
	for _, tt := range []struct {
		name   string
		spread int64
	}{{"http wire", 8}, {"ssh wire", 1024}} {
		if b := got[tt.name]; spread(b) > tt.spread {
			t.Errorf("%s: bytes per unchanged poll = %v for %v refs, want within %d bytes", tt.name, b, counts, tt.spread)
		}
	}
	if b := got["v0 http bodies"]; b[2] < 100*got["http bodies"][2] {
		t.Errorf("v0 bytes per unchanged poll = %v, want 10,000 refs to cost far more than v2's %v", b, got["http bodies"])
	}
}

// TestProtocolV2Hostile serves v2 answers that a poll must refuse: more
// than the cap, malformed ref lines, no end. Each poll fails without
// giving v2 up and without showing the password. A redirect to another
// server is not followed in v2: the poll falls back to go-git's v0 and its
// redirect policy, and the credentials never reach the other server.
func TestProtocolV2Hostile(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	var elsewhere atomic.Bool
	other := root.ServeHTTP(gitserver.HTTPOptions{})
	other.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if _, _, ok := r.BasicAuth(); ok {
			elsewhere.Store(true)
		}
		return false
	})
	caps := "001e# service=git-upload-pack\n0000000eversion 2\n0013ls-refs=unborn\n0000"
	line := fmt.Sprintf("%04x%s refs/heads/main\n", 4+41+16, strings.Repeat("a", 40))
	tests := []struct {
		name     string
		post     func(w http.ResponseWriter) // the answer to ls-refs
		get      func(w http.ResponseWriter, r *http.Request) bool
		redirect bool
	}{
		{name: "endless refs", post: func(w http.ResponseWriter) {
			for range (2 << 20) / len(line) {
				if _, err := io.WriteString(w, line); err != nil {
					return
				}
			}
		}},
		{name: "endless capabilities", get: func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			io.WriteString(w, "001e# service=git-upload-pack\n0000000eversion 2\n")
			for range (2 << 20) / 17 {
				if _, err := io.WriteString(w, "0011agent=hostile"); err != nil {
					break
				}
			}
			return true
		}},
		{name: "malformed ref line", post: func(w http.ResponseWriter) {
			io.WriteString(w, "0015not-a-hash HEAD x\n0000")
		}},
		{name: "no end", post: func(w http.ResponseWriter) {
			io.WriteString(w, line)
		}},
		{name: "redirect elsewhere", redirect: true, get: func(w http.ResponseWriter, r *http.Request) bool {
			http.Redirect(w, r, other.URL("env")+"/info/refs?service=git-upload-pack", http.StatusFound)
			return true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet {
					if tt.get != nil {
						return tt.get(w, r)
					}
					w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
					io.WriteString(w, caps)
					return true
				}
				w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
				tt.post(w)
				return true
			})
			h.Reset()
			cfg := pull.Config{URL: strings.Replace(h.URL("env"), "http://", "http://u:secret@", 1), Timeout: 20 * time.Second}
			r, _ := openLogged(t, cfg)
			_, err := r.Poll(context.Background())
			t.Logf("Poll = %v", err)
			if elsewhere.Load() {
				t.Errorf("the credentials reached the other server")
			}
			if tt.redirect {
				if got := r.Protocol(); got != pull.ProtocolV0 {
					t.Errorf("Protocol() after a redirect = %v, want %v", got, pull.ProtocolV0)
				}
				return
			}
			if err == nil {
				t.Fatalf("Poll = nil error, want a refusal")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
			if got := r.Protocol(); got == pull.ProtocolV0 {
				t.Errorf("Protocol() = %v after a hostile v2 answer, want no fallback", got)
			}
		})
	}
}

// TestListRefsBytes lists the notes refs of a repository that holds 0,
// 1,000 and 10,000 branches besides them, over http-backend, git daemon
// and sshd: in v2 the bytes of the listing do not grow with the
// branches, and from a server in v0 the same refs come out of the whole
// advertisement.
func TestListRefsBytes(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	c1 := repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	var notes []string
	for i := range 5 {
		notes = append(notes, fmt.Sprintf("refs/notes/outpost/host-%d", i))
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
	sshCfg := pull.Config{URL: sp.URL("env"), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: known}}
	sshTr, err := sshCfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	srcs := []struct {
		name  string
		tr    pull.Transport
		bytes func() int64
		reset func()
		idle  func() bool
		proto pull.Protocol
	}{
		{"http bodies", pull.Transport{URL: h.URL("env")}, h.Bytes, h.Reset, nil, pull.ProtocolV2},
		{"git wire", pull.Transport{URL: "git://" + dp.Addr + "/env.git"}, dp.Bytes, dp.ResetBytes, dp.WaitIdle, pull.ProtocolV2},
		{"ssh wire", sshTr, sp.Bytes, sp.ResetBytes, sp.WaitIdle, pull.ProtocolV2},
		{"v0 http bodies", pull.Transport{URL: h0.URL("env")}, h0.Bytes, h0.Reset, nil, pull.ProtocolV0},
	}
	counts := []int{0, 1000, 10000}
	got := map[string][]int64{}
	made := 0
	for _, n := range counts {
		var names []string
		for ; made < n; made++ {
			names = append(names, fmt.Sprintf("refs/heads/feature-%05d", made))
		}
		if len(names) > 0 {
			repo.CreateRefs(names, c1)
		}
		for _, src := range srcs {
			rm := pull.NewRemote(src.tr, nil)
			src.reset()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			refs, err := rm.ListRefs(ctx, "refs/notes/outpost/")
			cancel()
			if err != nil {
				t.Fatalf("%s: ListRefs with %d branches = %v", src.name, n, err)
			}
			if len(refs) != len(notes) {
				t.Fatalf("%s: ListRefs with %d branches = %d refs, want %d", src.name, n, len(refs), len(notes))
			}
			for _, name := range notes {
				if refs[name].String() != c1 {
					t.Errorf("%s: ListRefs()[%s] = %s, want %s", src.name, name, refs[name], c1)
				}
			}
			if p := rm.Protocol(); p != src.proto {
				t.Fatalf("%s: Protocol() = %v, want %v", src.name, p, src.proto)
			}
			if src.idle != nil && !src.idle() {
				t.Fatalf("%s: the proxy still has connections open after a listing", src.name)
			}
			got[src.name] = append(got[src.name], src.bytes())
		}
	}
	for _, src := range srcs {
		t.Logf("bytes of the notes listing, %s, with %v other branches: %v", src.name, counts, got[src.name])
	}
	spread := func(b []int64) int64 { return max(b[0], b[1], b[2]) - min(b[0], b[1], b[2]) }
	for _, tt := range []struct {
		name   string
		spread int64
	}{{"http bodies", 8}, {"git wire", 8}, {"ssh wire", 1024}} {
		if b := got[tt.name]; spread(b) > tt.spread {
			t.Errorf("%s: bytes of the notes listing = %v for %v branches, want within %d bytes", tt.name, b, counts, tt.spread)
		}
	}
	if b := got["v0 http bodies"]; b[2] < 100*got["http bodies"][2] {
		t.Errorf("v0 bytes of the listing = %v, want 10,000 branches to cost far more than v2's %v", b, got["http bodies"])
	}
}
