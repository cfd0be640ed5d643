package daemon

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	outpost "github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// refusedWarning is what the agent logs when the server refuses its token.
const refusedWarning = "poll failed: the server refused the credentials"

// TestTokenRotation runs the agent against git http-backend behind a
// token store that checks tokens as Gitea does (gitserver.Tokens), with an
// access token in a file, as an operator does: `outpost apply`, then the
// daemon, which polls and pushes its status notes with token A. Token A is
// revoked: the agent says so once, with a hint. Token B is written to the
// file and the agent gets SIGHUP: the next poll and the next notes push use
// B (the note of a commit made after the rotation reaches the server). Then
// B is replaced by C without a signal: the file is read again at each
// request. Every request sent a token as its user name: the server never
// fell back to a password login. (A real Gitea, built from source, ran this
// test before; its build was a third of a cold test run's CPU.)
func TestTokenRotation(t *testing.T) {
	t.Parallel()
	tokens := gitserver.NewTokens()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	url := root.ServeHTTP(gitserver.HTTPOptions{Tokens: tokens}).URL("env")
	const host = "rotate-1"
	noteRef := "refs/notes/outpost/" + host
	c1 := repo.Commit(gitserver.Files{"app.yaml": fileManifest(managedFile, "one\n")}, "first")
	newToken := func() string {
		tok := rand.Text()
		tokens.Add(tok)
		return tok
	}
	tokA := newToken()

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeToken := func(tok string) {
		t.Helper()
		// Written as an operator's tool would: a new file renamed over
		// the old, so the agent never reads half a token.
		tmp := tokenFile + ".new"
		if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, tokenFile); err != nil {
			t.Fatal(err)
		}
	}
	writeToken(tokA)
	config := func(state string) string {
		return fmt.Sprintf(`source:
  url: %s
  branch: main
  interval: 1s
  auth: {token_file: %s}
host: {name: %s}
status: {push: true}
state_dir: %s
`, url, tokenFile, host, state)
	}

	// One-shot: apply with the token.
	applyDir := t.TempDir()
	applyCfg := filepath.Join(applyDir, "agent.yaml")
	if err := os.WriteFile(applyCfg, []byte(config(filepath.Join(applyDir, "state"))), 0o600); err != nil {
		t.Fatal(err)
	}
	apply := exec.Command(filepath.Join(binDir, "outpost"), "apply", "--config", applyCfg, "--root", filepath.Join(applyDir, "root"))
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("outpost apply with a token: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(applyDir, "root", managedFile)); err != nil || string(got) != "one\n" {
		t.Errorf("after apply, %s = %q, %v; want %q", managedFile, got, err, "one\n")
	}

	// waitNote waits until the server holds the agent's note on commit.
	waitNote := func(what, commit string) {
		t.Helper()
		eventually(t, time.Minute, "the note of "+what+" on the server", func() error {
			if exec.Command("git", "--git-dir", repo.Path, "notes", "--ref", noteRef, "show", commit).Run() != nil {
				return fmt.Errorf("no note on %s", commit)
			}
			return nil
		})
	}

	// The daemon polls and pushes its note with token A.
	a := startLocalConfig(t, config)
	a.waitCommit(t, c1)
	waitNote("the first commit", c1)

	// Token A is revoked: polls fail, and the agent says so once.
	tokens.Revoke(tokA)
	c2 := repo.Commit(gitserver.Files{"app.yaml": fileManifest(managedFile, "two\n")}, "second")
	eventually(t, time.Minute, "the refusal logged", func() error {
		if !strings.Contains(a.logs.String(), refusedWarning) {
			return fmt.Errorf("no %q in the log", refusedWarning)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // three more polls, refused
	if n := strings.Count(a.logs.String(), refusedWarning); n != 1 {
		t.Errorf("the refusal was logged %d times over several polls, want once", n)
	}
	if !strings.Contains(a.logs.String(), "hint=") {
		t.Errorf("the refusal has no hint:\n%s", a.logs.String())
	}

	// Token B, and SIGHUP: the next poll and the next push use it.
	tokB := newToken()
	writeToken(tokB)
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.waitCommit(t, c2)
	waitNote("the commit made after the rotation", c2)

	// Token C replaces B without a signal.
	tokens.Revoke(tokB)
	tokC := newToken()
	writeToken(tokC)
	c3 := repo.Commit(gitserver.Files{"app.yaml": fileManifest(managedFile, "three\n")}, "third")
	a.waitCommit(t, c3)
	waitNote("the third commit", c3)
	if got, err := os.ReadFile(filepath.Join(a.root, managedFile)); err != nil || string(got) != "three\n" {
		t.Errorf("%s = %q, %v; want %q", managedFile, got, err, "three\n")
	}

	// The server was asked for no password login: every request carried
	// a token as its user name, never the user name outpost.
	if logins := tokens.PasswordLogins(); len(logins) > 0 {
		t.Errorf("password logins = %q, want none: the agent sends its token as the user name", logins)
	}
	for _, u := range tokens.Users() {
		if u != "<token>" {
			t.Errorf("a request had the user name %q, want only tokens", u)
		}
	}
	for _, tok := range []string{tokA, tokB, tokC} {
		if tokens.Accepted(tok) == 0 {
			t.Errorf("token %s... authenticated no request, want each used in turn", tok[:6])
		}
	}
	s, err := outpost.Control(context.Background(), a.socket, "status")
	if err != nil || s.Result != outpost.ResultApplied {
		t.Errorf("status after the rotations = %+v, %v; want applied", s, err)
	}
}
