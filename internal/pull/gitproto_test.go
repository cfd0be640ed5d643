package pull_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// blackHole returns a loopback address whose listener never accepts and
// whose accept queue is full, so that the kernel drops every new SYN: a
// connect to it hangs as one to a black-holed server does.
func blackHole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue (one connection for a backlog of 0).
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	if c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("a connect to the full listener %s succeeded; the test needs one that hangs", addr)
	}
	return addr
}

// silentServer returns the address of a listener that accepts connections
// and never sends a byte.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// pollWithin polls r in a goroutine and returns its error, failing t when
// the poll is still blocked after limit: far beyond the configured timeout,
// and far below the two minutes after which the kernel gives up a connect.
func pollWithin(t *testing.T, ctx context.Context, r *pull.Repo, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := r.Poll(ctx)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("Poll still blocked after %s", limit)
		return nil
	}
}

// TestGitProtocolUnanswered polls git:// servers that never answer: the
// configured timeout ends the connect and the exchange, and a cancelled
// context ends the connect.
func TestGitProtocolUnanswered(t *testing.T) {
	t.Parallel()
	hole := blackHole(t)
	tests := []struct {
		name   string
		addr   string
		cancel bool // cancel the context after a moment instead
		want   error
	}{
		{"connect never answered", hole, false, pull.ErrTimeout},
		{"connect cancelled", hole, true, context.Canceled},
		{"refs never sent", silentServer(t), false, pull.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pull.Config{URL: "git://" + tt.addr + "/env.git", Timeout: time.Second}
			if tt.cancel {
				cfg.Timeout = time.Hour
			}
			r := open(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(500*time.Millisecond, cancel)
			}
			err := pollWithin(t, ctx, r, 60*time.Second)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Poll = %v, want %v", err, tt.want)
			}
			if tt.want == pull.ErrTimeout && !pull.IsTransient(err) {
				t.Errorf("IsTransient(%v) = false, want true", err)
			}
			t.Logf("Poll error: %v", err)
		})
	}
}

// TestGitProtocolDaemon drives the git:// transport against git daemon:
// a missing and an empty repository, polls, and a deeper fetch that sends
// haves and shallow lines.
func TestGitProtocolDaemon(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	root.Create("empty")
	d := root.ServeGit()

	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			name, repo string
			want       error
		}{
			{"missing repository", "nope", pull.ErrRepoNotFound},
			{"empty repository", "empty", pull.ErrBranchNotFound},
		} {
			r := open(t, pull.Config{URL: d.URL(tt.repo), Timeout: 20 * time.Second})
			_, err := r.Poll(context.Background())
			if !errors.Is(err, tt.want) || !pull.IsPermanent(err) {
				t.Errorf("%s: Poll = %v, want a permanent %v", tt.name, err, tt.want)
			}
		}
	})

	var commits []string
	for i := range 20 {
		commits = append(commits, repo.Commit(gitserver.Files{"n": strconv.Itoa(i)}, "more"))
	}
	cfg := pull.Config{URL: d.URL("env"), Timeout: 20 * time.Second}
	dir := filepath.Join(t.TempDir(), "git")
	r, err := pull.Open(dir, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := poll(t, r), (pull.Result{Commit: commits[19], Changed: true}); got != want {
		t.Fatalf("Poll = %+v, want %+v", got, want)
	}
	if got, want := poll(t, r), (pull.Result{Commit: commits[19]}); got != want {
		t.Fatalf("unchanged Poll = %+v, want %+v", got, want)
	}
	if r.Has(commits[2]) {
		t.Fatalf("a depth-1 clone holds commit 2 of 20")
	}
	// Depth 16 does not reach commit 2; the next step does.
	if err := r.Fetch(context.Background(), commits[2]); err != nil {
		t.Fatalf("Fetch(commit 2) = %v", err)
	}
	if diff := cmp.Diff(map[string]string{"n": "2"}, readTree(t, r, commits[2])); diff != "" {
		t.Errorf("Tree(commit 2) differs (-want +got):\n%s", diff)
	}
	c := repo.Commit(gitserver.Files{"n": "new"}, "new")
	if got, want := poll(t, r), (pull.Result{Commit: c, Changed: true}); got != want {
		t.Fatalf("Poll after a push = %+v, want %+v", got, want)
	}
	r.Close()
	fsck(t, dir)
}
