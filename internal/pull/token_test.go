package pull_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// TestTokenForms polls a server that checks tokens as Gitea does, with the
// token sent in each form that agent.yaml can ask for, and checks that no
// request made the server fall back to a password login.
func TestTokenForms(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	root.Create("env").Commit(gitserver.Files{"a": "1"}, "first")
	tests := []struct {
		name string
		user string // source.auth.username
		url  func(h *gitserver.HTTPServer) string
		// wantUser is the basic auth user name of every request.
		wantUser string
	}{
		{"default", "", func(h *gitserver.HTTPServer) string { return h.URL("env") }, "<token>"},
		{"username", "oauth2", func(h *gitserver.HTTPServer) string { return h.URL("env") }, "oauth2"},
		{"user in url", "", func(h *gitserver.HTTPServer) string {
			return "http://x-access-token@" + h.Addr + "/env.git"
		}, "x-access-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokens := gitserver.NewTokens("tok-a")
			h := root.ServeHTTP(gitserver.HTTPOptions{Tokens: tokens})
			tok := secretFile(t, "token", "tok-a\n")
			r := open(t, pull.Config{URL: tt.url(h), Timeout: 20 * time.Second, Auth: pull.Auth{Username: tt.user, TokenFile: tok}})
			poll(t, r)
			if tokens.Accepted("tok-a") == 0 {
				t.Errorf("the server accepted token A %d times, want some", tokens.Accepted("tok-a"))
			}
			for i, u := range tokens.Users() {
				if u != tt.wantUser {
					t.Errorf("request %d sent user name %q, want %q", i, u, tt.wantUser)
				}
			}
			if got := tokens.PasswordLogins(); len(got) != 0 {
				t.Errorf("password logins = %q, want none", got)
			}
		})
	}
}

// TestTokenRotation rotates the token file under a Repo: a revoked token
// fails with ErrAuth, and the new token written to the file is used from
// the next request on, without reopening the Repo.
func TestTokenRotation(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	env := root.Create("env")
	env.Commit(gitserver.Files{"a": "1"}, "first")
	tokens := gitserver.NewTokens("tok-a")
	h := root.ServeHTTP(gitserver.HTTPOptions{Tokens: tokens})
	tok := secretFile(t, "token", "tok-a\n")
	r := open(t, pull.Config{URL: h.URL("env"), Timeout: 20 * time.Second, Auth: pull.Auth{TokenFile: tok}})
	poll(t, r)

	tokens.Revoke("tok-a")
	c2 := env.Commit(gitserver.Files{"a": "2"}, "second")
	if _, err := r.Poll(context.Background()); !errors.Is(err, pull.ErrAuth) {
		t.Fatalf("Poll with a revoked token = %v, want ErrAuth", err)
	}

	tokens.Add("tok-b")
	if err := os.WriteFile(tok, []byte("tok-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := poll(t, r), (pull.Result{Commit: c2, Changed: true}); got != want {
		t.Errorf("Poll after the rotation = %+v, want %+v", got, want)
	}
	if tokens.Accepted("tok-b") == 0 {
		t.Errorf("the server never accepted token B")
	}

	// A file removed by mistake keeps the last token in use.
	if err := os.Remove(tok); err != nil {
		t.Fatal(err)
	}
	poll(t, r)
	if diff := cmp.Diff([]string(nil), tokens.PasswordLogins()); diff != "" {
		t.Errorf("password logins differ (-want +got):\n%s", diff)
	}
}

// TestEmptyTokenFile: an empty token file is refused when the source is
// opened, not sent.
func TestEmptyTokenFile(t *testing.T) {
	t.Parallel()
	tok := secretFile(t, "token", "\n")
	_, err := pull.Config{URL: "https://git.example.com/env.git", Auth: pull.Auth{TokenFile: tok}}.Transport()
	if !errors.Is(err, pull.ErrConfig) {
		t.Errorf("Transport() with an empty token file = %v, want ErrConfig", err)
	}
}
