package pull_test

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// pushWithin pushes main of a new one-commit repository to url with ctx,
// and fails the test if the push has not returned within limit. The pull
// package's git:// transport is installed by this test binary's imports.
func pushWithin(t *testing.T, ctx context.Context, url string, limit time.Duration) error {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", dir},
		{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "first"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: "out", URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- remote.PushContext(ctx, &git.PushOptions{RemoteName: "out", RefSpecs: []config.RefSpec{"refs/heads/main:refs/heads/main"}})
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("push to %s still running after %v", url, limit)
		return nil
	}
}

// TestGitProtocolPushTimeout: a push over git:// to a server that never
// answers the connect, or never sends its refs, ends with the push's
// context, not when the kernel gives up on the connection.
func TestGitProtocolPushTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		addr string
	}{
		{"connect never answered", blackHole(t)},
		{"refs never sent", silentServer(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := pushWithin(t, ctx, "git://"+tt.addr+"/env.git", 30*time.Second)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Push = %v, want %v", err, context.DeadlineExceeded)
			}
		})
	}
}

// TestGitProtocolPush pushes over git:// to git daemon, to an empty
// repository, and reads the ref back from the server.
func TestGitProtocolPush(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	root.Create("env")
	d := root.ServeGit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pushWithin(t, ctx, d.URL("env"), time.Minute); err != nil {
		t.Fatalf("Push to an empty repository = %v", err)
	}
	out, err := exec.Command("git", "--git-dir", root.Path("env"), "log", "-1", "--format=%s", "refs/heads/main").CombinedOutput()
	if err != nil || string(out) != "first\n" {
		t.Fatalf("the server's main after the push: %q, %v; want the pushed commit", out, err)
	}
}
