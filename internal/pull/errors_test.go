package pull_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"golang.org/x/crypto/ssh"
)

// TestPermanentErrors checks that each refusal of a real server is a clear,
// permanent error that names its cause.
func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	root.Create("env").Commit(gitserver.Files{"a": "1"}, "first")
	root.Create("empty")
	hs := root.ServeHTTP(gitserver.HTTPOptions{TLS: true, Username: "deploy", Password: "s3cret"})
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	s := root.ServeSSH()
	d := root.ServeGit()
	wrongPW := secretFile(t, "password", "wrong\n")
	rightPW := secretFile(t, "password", "s3cret\n")

	tests := []struct {
		name string
		cfg  pull.Config
		want error
	}{
		{"wrong password", pull.Config{URL: hs.URL("env"), Auth: pull.Auth{Username: "deploy", PasswordFile: wrongPW, CAFile: hs.CAFile}}, pull.ErrAuth},
		{"no password", pull.Config{URL: hs.URL("env"), Auth: pull.Auth{CAFile: hs.CAFile}}, pull.ErrAuth},
		{"untrusted certificate", pull.Config{URL: hs.URL("env"), Auth: pull.Auth{Username: "deploy", PasswordFile: rightPW}}, pull.ErrTLS},
		{"changed host key", pull.Config{URL: s.URL("env"), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.WrongKnownHostsFile}}, pull.ErrHostKeyChanged},
		{"unknown host", pull.Config{URL: s.URL("env"), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.OtherHostKnownHostsFile}}, pull.ErrHostKeyUnknown},
		{"ssh key not authorized", pull.Config{URL: s.URL("env"), Auth: pull.Auth{SSHKeyFile: gitserver.NewSSHKey(t).PrivateFile, KnownHostsFile: s.KnownHostsFile}}, pull.ErrAuth},
		{"missing branch http", pull.Config{URL: h.URL("env"), Branch: "nope"}, pull.ErrBranchNotFound},
		{"missing branch ssh", pull.Config{URL: s.URL("env"), Branch: "nope", Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.KnownHostsFile}}, pull.ErrBranchNotFound},
		{"missing branch git", pull.Config{URL: d.URL("env"), Branch: "nope"}, pull.ErrBranchNotFound},
		{"missing branch path", pull.Config{URL: root.Path("env"), Branch: "nope"}, pull.ErrBranchNotFound},
		{"empty repository", pull.Config{URL: h.URL("empty")}, pull.ErrBranchNotFound},
		{"missing repository", pull.Config{URL: h.URL("nope")}, pull.ErrRepoNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Timeout = 20 * time.Second
			r := open(t, tt.cfg)
			res, err := r.Poll(context.Background())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Poll = %+v, %v; want an error matching %q", res, err, tt.want)
			}
			t.Logf("Poll error: %v", err)
			if !pull.IsPermanent(err) || pull.IsTransient(err) {
				t.Errorf("IsPermanent(%v) = %v, IsTransient = %v; want true, false", err, pull.IsPermanent(err), pull.IsTransient(err))
			}
			if !strings.Contains(err.Error(), tt.want.Error()) {
				t.Errorf("Poll error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong\n") {
				t.Errorf("Poll error %q holds a credential", err)
			}
		})
	}
}

func TestOpenConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  pull.Config
	}{
		{"no url", pull.Config{}},
		{"unknown scheme", pull.Config{URL: "ftp://example.invalid/x.git"}},
		{"ssh without key", pull.Config{URL: "ssh://git@example.invalid/x.git"}},
		{"ssh key missing", pull.Config{URL: "git@example.invalid:x.git", Auth: pull.Auth{SSHKeyFile: "/nonexistent/key"}}},
		{"password file missing", pull.Config{URL: "https://example.invalid/x.git", Auth: pull.Auth{Username: "u", PasswordFile: "/nonexistent/pw"}}},
		{"ca file missing", pull.Config{URL: "https://example.invalid/x.git", Auth: pull.Auth{CAFile: "/nonexistent/ca.pem"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pull.Open(t.TempDir(), tt.cfg, nil)
			if !errors.Is(err, pull.ErrConfig) {
				t.Errorf("Open(%+v) = %v, want an error matching ErrConfig", tt.cfg, err)
			}
		})
	}
	t.Run("ssh known_hosts missing", func(t *testing.T) {
		key := gitserver.NewSSHKey(t)
		_, err := pull.Open(t.TempDir(), pull.Config{URL: "ssh://git@example.invalid/x.git", Auth: pull.Auth{SSHKeyFile: key.PrivateFile, KnownHostsFile: "/nonexistent/known_hosts"}}, nil)
		if !errors.Is(err, pull.ErrConfig) {
			t.Errorf("Open with a missing known_hosts = %v, want an error matching ErrConfig", err)
		}
	})
}

// TestCredentialsNeverLeak polls with credentials in the URL and checks
// errors and logs.
func TestCredentialsNeverLeak(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	root.Create("env").Commit(gitserver.Files{"a": "1"}, "first")
	hs := root.ServeHTTP(gitserver.HTTPOptions{TLS: true, Username: "deploy", Password: "s3cret"})
	url := strings.Replace(hs.URL("env"), "https://", "https://deploy:s3cret@", 1)
	var logs strings.Builder
	r, err := pull.Open(t.TempDir(), pull.Config{URL: url, Auth: pull.Auth{CAFile: hs.CAFile}, Timeout: 20 * time.Second}, newLogger(&logs))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	if _, err := r.Poll(context.Background()); err != nil {
		t.Fatalf("Poll with credentials in the URL = %v", err)
	}
	hs.Close()
	_, err = r.Poll(context.Background())
	if err == nil {
		t.Fatal("Poll of a stopped server = nil, want an error")
	}
	for what, s := range map[string]string{"error": err.Error(), "log": logs.String()} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%s holds the password: %s", what, s)
		}
	}
	if !strings.Contains(err.Error(), strings.TrimPrefix(hs.URL("env"), "https://")) {
		t.Errorf("Poll error %q does not name the source", err)
	}
}

func TestIsTransient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{pull.ErrUnreachable, true},
		{pull.ErrTimeout, true},
		{pull.ErrCorrupt, true},
		{fmt.Errorf("dial: %w", errors.New("connection refused")), true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{pull.ErrAuth, false},
		{pull.ErrHostKeyChanged, false},
		{pull.ErrHostKeyUnknown, false},
		{pull.ErrBranchNotFound, false},
		{pull.ErrTLS, false},
		{&pull.VerifyError{Commit: "abc", Reason: "unsigned"}, false},
		{&pull.Error{Op: "fetch", Kind: pull.ErrAuth}, false},
		{&pull.Error{Op: "fetch", Kind: pull.ErrUnreachable}, true},
	}
	for _, tt := range tests {
		if got := pull.IsTransient(tt.err); got != tt.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if !errors.Is(pull.ErrHostKeyChanged, pull.ErrHostKey) || !errors.Is(pull.ErrHostKeyUnknown, pull.ErrHostKey) {
		t.Errorf("host key errors do not match ErrHostKey")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := pull.Backoff{Base: time.Second, Cap: time.Minute, Seed: "edge-042"}
	for attempt := 0; attempt < 12; attempt++ {
		d := min(time.Second<<attempt, time.Minute)
		got := b.Delay(attempt)
		if got < d/2 || got > d {
			t.Errorf("Delay(%d) = %v, want within [%v, %v]", attempt, got, d/2, d)
		}
		if again := b.Delay(attempt); again != got {
			t.Errorf("Delay(%d) = %v then %v, want the same for one seed", attempt, got, again)
		}
	}
	other := pull.Backoff{Base: time.Second, Cap: time.Minute, Seed: "edge-043"}
	same := 0
	for attempt := 0; attempt < 8; attempt++ {
		if b.Delay(attempt) == other.Delay(attempt) {
			same++
		}
	}
	if same == 8 {
		t.Errorf("Delay is the same for seeds edge-042 and edge-043, want a jitter per host")
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	b := pull.Backoff{Base: time.Millisecond, Cap: 2 * time.Millisecond}
	tests := []struct {
		name      string
		errs      []error
		attempts  int
		wantCalls int
		want      error
	}{
		{"success", []error{nil}, 3, 1, nil},
		{"transient then success", []error{pull.ErrUnreachable, nil}, 3, 2, nil},
		{"transient every time", []error{pull.ErrUnreachable, pull.ErrTimeout, pull.ErrUnreachable}, 3, 3, pull.ErrUnreachable},
		{"permanent at once", []error{pull.ErrAuth, nil}, 3, 1, pull.ErrAuth},
		{"at least once", []error{pull.ErrUnreachable}, 0, 1, pull.ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := pull.Retry(context.Background(), b, tt.attempts, func(context.Context) error {
				calls++
				return tt.errs[min(calls, len(tt.errs))-1]
			})
			if calls != tt.wantCalls || !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Retry = %v after %d calls, want %v after %d", err, calls, tt.want, tt.wantCalls)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := pull.Retry(ctx, pull.Backoff{Base: time.Hour}, 5, func(context.Context) error { return pull.ErrUnreachable })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Retry with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

func TestTransport(t *testing.T) {
	t.Parallel()
	key := gitserver.NewSSHKey(t)
	kh := secretFile(t, "known_hosts", "git.example.com "+key.Public+"\n")
	pw := secretFile(t, "pw", "pw-from-file\n")
	tok := secretFile(t, "tok", "tok-from-file\n")
	type view struct {
		URL, User, Password string
		Local, Bounded      bool
	}
	tests := []struct {
		cfg  pull.Config
		want view
	}{
		{pull.Config{URL: "https://git.example.com/env.git"}, view{URL: "https://git.example.com/env.git"}},
		{pull.Config{URL: "https://u:secret@git.example.com/env.git"}, view{URL: "https://git.example.com/env.git", User: "u", Password: "secret"}},
		{pull.Config{URL: "https://git.example.com/env.git", Auth: pull.Auth{Username: "deploy", PasswordFile: pw}}, view{URL: "https://git.example.com/env.git", User: "deploy", Password: "pw-from-file"}},
		{pull.Config{URL: "https://git.example.com/env.git", Auth: pull.Auth{TokenFile: tok}}, view{URL: "https://git.example.com/env.git", User: "tok-from-file"}},
		{pull.Config{URL: "https://git.example.com/env.git", Auth: pull.Auth{Username: "oauth2", TokenFile: tok}}, view{URL: "https://git.example.com/env.git", User: "oauth2", Password: "tok-from-file"}},
		{pull.Config{URL: "https://x-token-auth@git.example.com/env.git", Auth: pull.Auth{TokenFile: tok}}, view{URL: "https://git.example.com/env.git", User: "x-token-auth", Password: "tok-from-file"}},
		{pull.Config{URL: "ssh://git.example.com/env.git", Auth: pull.Auth{SSHKeyFile: key.PrivateFile, KnownHostsFile: kh}}, view{URL: "ssh://git@git.example.com/env.git", User: "git", Bounded: true}},
		{pull.Config{URL: "deploy@git.example.com:env.git", Auth: pull.Auth{SSHKeyFile: key.PrivateFile, KnownHostsFile: kh}}, view{URL: "deploy@git.example.com:env.git", User: "deploy", Bounded: true}},
		{pull.Config{URL: "git://git.example.com/env.git"}, view{URL: "git://git.example.com/env.git"}},
		{pull.Config{URL: "file:///srv/git/env.git"}, view{URL: "file:///srv/git/env.git", Local: true}},
		{pull.Config{URL: "/srv/git/env.git"}, view{URL: "/srv/git/env.git", Local: true}},
	}
	for _, tt := range tests {
		tr, err := tt.cfg.Transport()
		if err != nil {
			t.Errorf("Transport(%s) = %v", tt.cfg.URL, err)
			continue
		}
		got := view{URL: tr.URL, Local: tr.Local, Bounded: tr.Proxy.URL != ""}
		switch a := tr.Auth.(type) {
		case githttp.AuthMethod:
			req := httptest.NewRequest(http.MethodGet, tr.URL, nil)
			a.SetAuth(req)
			got.User, got.Password, _ = req.BasicAuth()
		case nil:
		default:
			got.User = sshUser(tr.Auth)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Transport(%s) differs (-want +got):\n%s", tt.cfg.URL, diff)
		}
	}
}

// sshUser returns the login of go-git's ssh auth.
func sshUser(a any) string {
	if u, ok := a.(interface {
		ClientConfig() (*ssh.ClientConfig, error)
	}); ok {
		cc, err := u.ClientConfig()
		if err == nil {
			return cc.User
		}
	}
	return ""
}
