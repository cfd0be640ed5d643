package daemon

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// testNet is a network namespace made by a test, joined to this machine by a
// veth pair with a /30 of 10.0.0.0/8 that the test picked.
type testNet struct {
	Name string // the namespace: /run/netns/NAME
	Dev  string // this side's end of the pair
	// Local is this side's address, Peer the namespace's.
	Local, Peer string
}

// newTestNet makes the namespace and the pair, and removes both in
// t.Cleanup.
func newTestNet(t testing.TB) *testNet {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip is required (Debian package iproute2): %v", err)
	}
	var b [3]byte
	rand.Read(b[:])
	base := fmt.Sprintf("10.%d.%d.%d", 200+int(b[0])%50, b[1], int(b[2])&^3)
	prefix := base[:strings.LastIndex(base, ".")+1]
	last := int(b[2]) &^ 3
	n := &testNet{
		Name:  uniqueName("opd"),
		Local: fmt.Sprintf("%s%d", prefix, last+1),
		Peer:  fmt.Sprintf("%s%d", prefix, last+2),
	}
	n.Dev = n.Name + "a"
	peer := n.Name + "b"
	ip(t, "netns", "add", n.Name)
	t.Cleanup(func() { ipErr("netns", "del", n.Name) })
	ip(t, "link", "add", n.Dev, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { ipErr("link", "del", n.Dev) })
	ip(t, "link", "set", peer, "netns", n.Name)
	ip(t, "addr", "add", n.Local+"/30", "dev", n.Dev)
	ip(t, "link", "set", n.Dev, "up")
	ip(t, "-n", n.Name, "addr", "add", n.Peer+"/30", "dev", peer)
	ip(t, "-n", n.Name, "link", "set", peer, "up")
	ip(t, "-n", n.Name, "link", "set", "lo", "up")
	return n
}

// Path is the namespace's path, for host.Options.NetworkNamespacePath.
func (n *testNet) Path() string { return "/run/netns/" + n.Name }

// SetLink takes this side's end of the link up or down.
func (n *testNet) SetLink(t testing.TB, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	ip(t, "link", "set", n.Dev, state)
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if err := ipErr(args...); err != nil {
		t.Fatal(err)
	}
}

func ipErr(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// serveGitOn serves root's repositories with git http-backend on addr (an
// address of this machine, port 0 for any) and returns the base URL. It
// stops in t.Cleanup.
func serveGitOn(t testing.TB, root *gitserver.Root, addr string) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is required: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: &cgi.Handler{
			Path: git,
			Args: []string{"http-backend"},
			Dir:  root.Dir,
			Env: []string{
				"GIT_PROJECT_ROOT=" + root.Dir,
				"GIT_HTTP_EXPORT_ALL=1",
				"GIT_CONFIG_NOSYSTEM=1",
				"HOME=" + root.Dir,
				"PATH=" + os.Getenv("PATH"),
			},
			Stderr: io.Discard,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("git server: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestOfflineKeepsRepairing puts the host on a network of its own, takes the
// link to the Git server down, makes drift, commits, and brings the link
// back: drift is repaired while the server is away, and the commit made
// meanwhile is applied once it returns.
func TestOfflineKeepsRepairing(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	unit := uniqueName("e2e-off-") + ".service"
	first := repo.Commit(gitserver.Files{
		"app.yaml":  fileManifest(managedFile, "first\n"),
		"unit.yaml": unitManifest(unit),
	}, "first")
	base := serveGitOn(t, root, n.Local+":0")

	h := host.Start(t, host.Options{BinDir: binDir, NetworkNamespacePath: n.Path(), NoDocker: true})
	a := newAgent(t, h, agentConfig(base+"/env.git", "edge-1", 2*time.Second, 30*time.Second))
	a.start()
	s := a.waitStatus(2*time.Minute, "the first commit applied", func(s *status) bool {
		return s.Commit == first && s.Result == "applied"
	})
	repaired := s.DriftRepaired

	n.SetLink(t, false)
	linkUp := false
	defer func() {
		if !linkUp {
			n.SetLink(t, true)
		}
	}()
	// Let a poll start over the dead link: it waits on the network for up
	// to the fetch's timeout (minutes), and drift made meanwhile must be
	// repaired all the same.
	time.Sleep(3 * time.Second)
	h.WriteFile(t, managedFile, []byte("edited offline\n"), 0o644)
	h.Run(t, "systemctl", "stop", unit)
	eventually(t, time.Minute, "drift repaired offline", func() error {
		if got, _ := readHostFile(h, managedFile); got != "first\n" {
			return fmt.Errorf("%s = %q", managedFile, got)
		}
		if got := unitActive(h, unit); got != "active" {
			return fmt.Errorf("%s is %q", unit, got)
		}
		return nil
	})
	s = a.waitStatus(30*time.Second, "two repairs counted", func(s *status) bool {
		return s.DriftRepaired >= repaired+2
	})
	if s.Commit != first {
		t.Errorf("while the link is down, status commit %s, want %s", s.Commit, first)
	}

	second := repo.Commit(gitserver.Files{"app.yaml": fileManifest(managedFile, "second\n")}, "second")
	time.Sleep(3 * time.Second)
	if got, _ := readHostFile(h, managedFile); got != "first\n" {
		t.Fatalf("while the link is down, %s = %q, want the first commit's", managedFile, got)
	}

	n.SetLink(t, true)
	linkUp = true
	a.waitStatus(time.Minute, "the second commit applied after the link returned", func(s *status) bool {
		return s.Commit == second && s.Result == "applied" && !s.Offline
	})
	if got, _ := readHostFile(h, managedFile); got != "second\n" {
		t.Errorf("after the link returned, %s = %q, want %q", managedFile, got, "second\n")
	}
}
