package gitserver_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// lsRemote runs git ls-remote with env and returns its output or error text.
func lsRemote(t *testing.T, url string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", "ls-remote", url, "refs/heads/main")
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestTransports(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	head := repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	if got := repo.Head("main"); got != head {
		t.Fatalf("Head(main) = %q, want %q", got, head)
	}

	h := root.ServeHTTP(gitserver.HTTPOptions{})
	tlsSrv := root.ServeHTTP(gitserver.HTTPOptions{TLS: true, Username: "u", Password: "p"})
	d := root.ServeGit()
	s := root.ServeSSH()
	p := gitserver.NewProxy(t, h.Addr)

	tlsURL := strings.Replace(tlsSrv.URL("env"), "https://", "https://u:p@", 1)
	sshCmd := "GIT_SSH_COMMAND=ssh -i " + s.KeyFile + " -o IdentitiesOnly=yes -o UserKnownHostsFile=" + s.KnownHostsFile + " -o StrictHostKeyChecking=yes"
	tests := []struct {
		name string
		url  string
		env  []string
	}{
		{"http", h.URL("env"), nil},
		{"https basic auth", tlsURL, []string{"GIT_SSL_CAINFO=" + tlsSrv.CAFile}},
		{"git", d.URL("env"), nil},
		{"ssh", s.URL("env"), []string{sshCmd}},
		{"proxy", "http://" + p.Addr + "/env.git", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := lsRemote(t, tt.url, tt.env...)
			if err != nil {
				t.Fatalf("ls-remote %s: %v: %s", tt.url, err, out)
			}
			if want := head + "\trefs/heads/main"; out != want {
				t.Errorf("ls-remote %s = %q, want %q", tt.url, out, want)
			}
		})
	}
	if h.Requests() == 0 || h.Bytes() == 0 {
		t.Errorf("HTTP counters = %d requests, %d bytes, want both > 0", h.Requests(), h.Bytes())
	}

	t.Run("wrong password", func(t *testing.T) {
		bad := strings.Replace(tlsSrv.URL("env"), "https://", "https://u:wrong@", 1)
		if out, err := lsRemote(t, bad, "GIT_SSL_CAINFO="+tlsSrv.CAFile); err == nil {
			t.Errorf("ls-remote with a wrong password = %q, want an error", out)
		}
	})
	t.Run("wrong host key", func(t *testing.T) {
		env := "GIT_SSH_COMMAND=ssh -i " + s.KeyFile + " -o IdentitiesOnly=yes -o UserKnownHostsFile=" + s.WrongKnownHostsFile + " -o StrictHostKeyChecking=yes"
		if out, err := lsRemote(t, s.URL("env"), env); err == nil {
			t.Errorf("ls-remote with a wrong host key = %q, want an error", out)
		}
	})
	t.Run("fault", func(t *testing.T) {
		h.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		})
		defer h.SetFault(nil)
		if out, err := lsRemote(t, h.URL("env")); err == nil {
			t.Errorf("ls-remote with a failing server = %q, want an error", out)
		}
	})
	t.Run("cut", func(t *testing.T) {
		p.CutAfter(10)
		defer p.CutAfter(0)
		if out, err := lsRemote(t, "http://"+p.Addr+"/env.git"); err == nil {
			t.Errorf("ls-remote through a cut = %q, want an error", out)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		d.Close()
		if out, err := lsRemote(t, d.URL("env")); err == nil {
			t.Errorf("ls-remote of a stopped daemon = %q, want an error", out)
		}
	})
}

func TestPushOverHTTP(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(gitserver.Files{"a": "1"}, "first")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	work := filepath.Join(t.TempDir(), "clone")
	for _, args := range [][]string{
		{"clone", "-q", h.URL("env"), work},
		{"-C", work, "notes", "--ref=outpost/h1", "add", "-m", "{}", "HEAD"},
		{"-C", work, "push", "-q", "origin", "refs/notes/outpost/h1"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	if got := repo.Git("for-each-ref", "--format=%(refname)", "refs/notes/"); got != "refs/notes/outpost/h1" {
		t.Errorf("notes refs after push = %q, want refs/notes/outpost/h1", got)
	}
}

func TestHistory(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	key := gitserver.NewSSHKey(t)
	c1 := repo.Commit(gitserver.Files{"a": "1"}, "first")
	c2 := repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "2"}, SSHKey: key.PrivateFile, Symlinks: map[string]string{"l": "a"}})
	if raw := string(repo.RawCommit(c2)); !strings.Contains(raw, "-----BEGIN SSH SIGNATURE-----") {
		t.Errorf("RawCommit(signed) = %q, want an SSH signature", raw)
	}
	repo.ForcePush("main", c1)
	c3 := repo.Commit(gitserver.Files{"b": "3"}, "after force-push")
	if got := repo.Git("rev-parse", c3+"^"); got != c1 {
		t.Errorf("parent of the commit after a force-push = %s, want %s", got, c1)
	}
	repo.DeleteBranch("main")
	if got := repo.Head("main"); got != "" {
		t.Errorf("Head(main) after DeleteBranch = %q, want none", got)
	}
	c4 := repo.Commit(gitserver.Files{"c": "4"}, "re-created")
	if got := repo.Git("rev-list", "--count", c4); got != "1" {
		t.Errorf("commits on a re-created branch = %s, want 1", got)
	}
	raw := repo.RawCommit(c4)
	forged := repo.WriteRawCommit([]byte(strings.Replace(string(raw), "re-created", "tampered", 1)))
	if forged == c4 || !strings.Contains(repo.Git("cat-file", "-p", forged), "tampered") {
		t.Errorf("WriteRawCommit = %s, want a new commit that says tampered", forged)
	}
}
