// Package gitserver serves bare Git repositories over real transports for
// Outpost's tests, and makes commits in them. Everything it starts belongs to
// one test and stops in t.Cleanup; a binary that is missing (git, sshd,
// ssh-keygen, nginx, fcgiwrap) fails the test with a message that names it.
//
// A test makes a Root, creates bare repositories in it and serves the Root:
//
//	root := gitserver.NewRoot(t)
//	repo := root.Create("env")                        // ROOT/env.git, branch main
//	head := repo.Commit(gitserver.Files{"a.yaml": "kind: file\n"}, "first")
//
//	h := root.ServeHTTP(gitserver.HTTPOptions{})          // git http-backend over net/http/cgi
//	h.URL("env")                                          // http://127.0.0.1:PORT/env.git
//	h.Requests(), h.Bytes(), h.Reset()                    // what the server saw
//	h.SetFault(func(w http.ResponseWriter, r *http.Request) bool { ... })
//	root.ServeHTTP(gitserver.HTTPOptions{TLS: true, Username: "u", Password: "p"}).CAFile
//
//	n := root.ServeNginx()                                // nginx + fcgiwrap + http-backend
//	n.URL("env"), n.URLv0("env"), n.CPU()                 // v2; Git-Protocol dropped; server CPU
//
//	d := root.ServeGit()                                  // git daemon, receive-pack enabled
//	d.URL("env")                                          // git://127.0.0.1:PORT/env.git
//
//	s := root.ServeSSH()                                  // /usr/sbin/sshd as root, AcceptEnv GIT_PROTOCOL
//	s.URL("env"), s.KeyFile, s.KnownHostsFile, s.WrongKnownHostsFile
//	root.ServeSSHWith(gitserver.SSHOptions{RefuseGitProtocol: true}) // no protocol v2
//
//	p := gitserver.NewProxy(t, "127.0.0.1:PORT")          // TCP fault proxy
//	p.Addr, p.CutAfter(n), p.Delay(d), p.Bytes(), p.ResetBytes()
//
//	repo.CreateRefs(names, commit)                        // thousands of refs, packed
//
// Commits are made with the git command line in a work clone beside the bare
// repository and pushed straight into it, so they never count as requests
// of a server. CommitWith signs them with an SSH key (ssh-keygen -Y sign
// through git's gpg.format=ssh) or an OpenPGP entity (go-git's SignKey);
// ForcePush, DeleteBranch, RawCommit and WriteRawCommit rewrite history and
// forge objects; Import feeds a git fast-import stream for large histories.
//
// gitserver is for tests only and imports no Outpost package.
package gitserver

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Root is a directory of bare repositories that the servers export.
type Root struct {
	t   testing.TB
	Dir string
}

// NewRoot returns an empty Root in a directory of t.
func NewRoot(t testing.TB) *Root {
	t.Helper()
	mustLookPath(t, "git")
	dir := filepath.Join(t.TempDir(), "repos")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	return &Root{t: t, Dir: dir}
}

// Path returns the path of the bare repository name (name.git).
func (r *Root) Path(name string) string {
	return filepath.Join(r.Dir, name+".git")
}

// mustLookPath fails t unless the binary is installed.
func mustLookPath(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("gitserver: %s is required but not installed (test/run installs it): %v", bin, err)
	}
	return p
}

// gitEnv is the environment of every git command that gitserver runs: no
// user or system configuration, a fixed identity.
func gitEnv(home string) []string {
	env := []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Outpost Test",
		"GIT_AUTHOR_EMAIL=test@outpost.invalid",
		"GIT_COMMITTER_NAME=Outpost Test",
		"GIT_COMMITTER_EMAIL=test@outpost.invalid",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	}
	return env
}

// runGit runs git in dir and returns its trimmed standard output.
func runGit(t testing.TB, dir string, extraEnv []string, stdin []byte, args ...string) string {
	t.Helper()
	out, err := gitOutput(dir, extraEnv, stdin, args...)
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	return out
}

func gitOutput(dir string, extraEnv []string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(filepath.Dir(dir)), extraEnv...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gitserver: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something accepts connections on addr, or the
// process behind it exits (exited is closed), or ten seconds pass.
func waitListening(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("the server exited before it listened on %s", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ownGroup starts cmd in a process group of its own, so that stopping it
// stops the children it forked for connections too, and bounds the wait for
// output pipes that such children hold open.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
}

// stopProcess ends a started command, its process group and waits for it.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}
