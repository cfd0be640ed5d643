package gitserver

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
)

// GitDaemon is git daemon serving a Root over the git protocol.
type GitDaemon struct {
	// Addr is 127.0.0.1:PORT.
	Addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
	stderr *bytes.Buffer
}

// ServeGit starts git daemon for every repository of r, with receive-pack
// enabled.
func (r *Root) ServeGit() *GitDaemon {
	r.t.Helper()
	git := mustLookPath(r.t, "git")
	var lastErr error
	for range 5 {
		port := freePort(r.t)
		d := &GitDaemon{Addr: "127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{}), stderr: &bytes.Buffer{}}
		d.cmd = exec.Command(git, "daemon", "--reuseaddr", "--export-all", "--informative-errors",
			"--base-path="+r.Dir, "--listen=127.0.0.1", "--port="+strconv.Itoa(port),
			"--enable=receive-pack", r.Dir)
		d.cmd.Env = gitEnv(r.Dir)
		d.cmd.Stderr = d.stderr
		ownGroup(d.cmd)
		if err := d.cmd.Start(); err != nil {
			r.t.Fatalf("gitserver: start git daemon: %v", err)
		}
		go func() { _ = d.cmd.Wait(); close(d.exited) }()
		if err := waitListening(d.Addr, d.exited); err != nil {
			stopProcess(d.cmd, d.exited)
			lastErr = fmt.Errorf("%w: %s", err, d.stderr.String())
			continue
		}
		r.t.Cleanup(d.Close)
		return d
	}
	r.t.Fatalf("gitserver: git daemon: %v", lastErr)
	return nil
}

// URL returns the repository name's git:// URL.
func (d *GitDaemon) URL(name string) string { return "git://" + d.Addr + "/" + name + ".git" }

// Close stops the daemon; it is safe to call more than once.
func (d *GitDaemon) Close() {
	d.once.Do(func() { stopProcess(d.cmd, d.exited) })
}
