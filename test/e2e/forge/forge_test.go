package forge_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/test/e2e/forge"
)

// TestForge checks the forge's own contract with git itself: a private
// repository reads with a token as the user name, not without one, and not
// after the token is revoked; a failed login is seen in its log.
func TestForge(t *testing.T) {
	f := forge.Start(t)
	url := f.CreateRepo(t, "env")
	c := f.Commit(t, "env", map[string]string{"a.yaml": "a: 1\n"}, "first")
	tok := f.Token(t, "reader")
	lsRemote := func(u string) (string, error) {
		cmd := exec.Command("git", "-c", "credential.helper=", "ls-remote", u, "refs/heads/main")
		cmd.Env = append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	withToken := strings.Replace(url, "http://", "http://"+tok+"@", 1)
	if out, err := lsRemote(withToken); err != nil || !strings.HasPrefix(out, c) {
		t.Fatalf("ls-remote with a token = %q, %v; want %s", out, err, c)
	}
	if out, err := lsRemote(url); err == nil {
		t.Errorf("ls-remote of a private repository without a token = %q, want an error", out)
	}
	f.Revoke(t, "reader")
	if out, err := lsRemote(withToken); err == nil {
		t.Errorf("ls-remote with a revoked token = %q, want an error", out)
	}
	if _, err := lsRemote(strings.Replace(url, "http://", "http://nobody:wrong@", 1)); err == nil {
		t.Errorf("ls-remote with a wrong password succeeded")
	}
	got := f.FailedLogins()
	if len(got) == 0 || got[len(got)-1] != "nobody" {
		t.Errorf("failed logins = %q, want the last to be %q", got, "nobody")
	}
}
