// Package host owns Outpost's test host: a Debian 12 root filesystem with
// systemd, built once with debootstrap into a cache outside the checkout, and
// booted with systemd-nspawn --boot --volatile=overlay so that every host
// starts clean in about a second and leaves the cache untouched. Commands run
// inside it through nsenter, where the host's systemd is the system's.
//
// host is for tests only. It imports no Outpost package.
package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinDirPath is where Options.BinDir appears inside a host.
const BinDirPath = "/opt/outpost"

// Bind is a directory or file of this machine bound into a host.
type Bind struct {
	Source string // on this machine
	Target string // in the host; Source when empty
	// ReadOnly binds it read-only.
	ReadOnly bool
}

// Options configure a test host.
type Options struct {
	// BinDir, when set, is bound read-only at /opt/outpost (see BuildBinary).
	BinDir string
	// Binds are more directories or files to bind in.
	Binds []Bind
	// NetworkNamespacePath puts the host into that network namespace
	// (e.g. /run/netns/NAME); empty shares this machine's network.
	NetworkNamespacePath string
	// Machine is the host's name and hostname; a unique name by default.
	Machine string
	// NoDocker leaves /var/run/docker.sock out; it is bound in by default.
	NoDocker bool
	// BootTimeout bounds the boot; 2 minutes by default.
	BootTimeout time.Duration
	// Packages are Debian packages to have on the host beyond the base
	// tree's: it then boots from a tree with them installed, built once
	// and cached beside the base tree (see EnsurePackagesRootfs).
	Packages []string
}

// Host is one booted test host.
type Host struct {
	Machine string

	cmd     *exec.Cmd
	pid     int
	console *ringBuffer
	done    chan struct{} // closed when nspawn exited
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// Start boots a host for t and stops it in t.Cleanup. It fails t when the
// host cannot boot, naming the Debian package to install when a tool is
// missing.
func Start(t testing.TB, opts Options) *Host {
	t.Helper()
	h, err := Boot(context.Background(), opts)
	if err != nil {
		t.Fatalf("test host: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("test host %s: stop: %v", h.Machine, err)
		}
	})
	return h
}

// Boot builds the root filesystem (with opts.Packages) if it is not cached
// yet, boots a host and waits until its systemd says running or degraded.
// The caller must Stop it.
func Boot(ctx context.Context, opts Options) (*Host, error) {
	nspawn, err := tool("systemd-nspawn", "systemd-container")
	if err != nil {
		return nil, err
	}
	if _, err := tool("nsenter", "util-linux"); err != nil {
		return nil, err
	}
	var root string
	if len(opts.Packages) > 0 {
		root, err = EnsurePackagesRootfs(ctx, opts.Packages)
	} else {
		root, err = EnsureRootfs(ctx)
	}
	if err != nil {
		return nil, err
	}
	if opts.Machine == "" {
		var b [4]byte
		rand.Read(b[:])
		opts.Machine = "outpost-test-" + hex.EncodeToString(b[:])
	}
	if opts.BootTimeout == 0 {
		opts.BootTimeout = 2 * time.Minute
	}
	args := []string{
		"-D", root, "--boot", "--register=no", "--keep-unit", "--volatile=overlay", "-q",
		"--machine=" + opts.Machine, "--console=pipe",
	}
	if opts.BinDir != "" {
		args = append(args, "--bind-ro="+opts.BinDir+":"+BinDirPath)
	}
	if !opts.NoDocker {
		args = append(args, "--bind=/var/run/docker.sock")
	}
	for _, b := range opts.Binds {
		target := b.Target
		if target == "" {
			target = b.Source
		}
		flag := "--bind="
		if b.ReadOnly {
			flag = "--bind-ro="
		}
		args = append(args, flag+b.Source+":"+target)
	}
	if opts.NetworkNamespacePath != "" {
		args = append(args, "--network-namespace-path="+opts.NetworkNamespacePath)
	}

	h := &Host{Machine: opts.Machine, console: newRingBuffer(64 << 10), done: make(chan struct{})}
	h.cmd = exec.Command(nspawn, args...)
	h.cmd.Stdin = nil
	h.cmd.Stdout = h.console
	h.cmd.Stderr = h.console
	// Should this process die, nspawn gets SIGTERM and powers the host off.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	waited, err := startPinned(h.cmd)
	if err != nil {
		return nil, fmt.Errorf("start systemd-nspawn: %w", err)
	}
	go func() {
		h.waitErr = <-waited
		close(h.done)
	}()

	bctx, cancel := context.WithTimeout(ctx, opts.BootTimeout)
	defer cancel()
	if err := h.waitBooted(bctx); err != nil {
		h.Stop()
		return nil, fmt.Errorf("boot %s: %w\nconsole:\n%s", h.Machine, err, h.console.String())
	}
	return h, nil
}

// waitBooted finds the container's systemd (nspawn's child) and waits until
// systemctl is-system-running says running or degraded. It says offline
// until the manager's bus is up.
func (h *Host) waitBooted(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if h.pid == 0 {
			h.pid = systemdChild(h.cmd.Process.Pid)
		}
		if h.pid != 0 {
			out, _ := h.Exec(ctx, "systemctl", "is-system-running")
			switch s := strings.TrimSpace(string(out)); s {
			case "running", "degraded":
				return nil
			case "maintenance", "stopping":
				return fmt.Errorf("systemd is %s", s)
			}
		}
		select {
		case <-h.done:
			return fmt.Errorf("systemd-nspawn exited: %v", h.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// systemdChild returns the PID of parent's child that runs systemd, or 0.
func systemdChild(parent int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", parent))
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if err == nil && strings.TrimSpace(string(comm)) == "systemd" {
				return pid
			}
		}
	}
	return 0
}

// PID is the PID, in this machine's namespace, of the host's systemd.
func (h *Host) PID() int { return h.pid }

// Console returns the last 64 KiB that the host wrote to its console.
func (h *Host) Console() string { return h.console.String() }

// Env is the environment of commands run in a host.
var Env = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
}

// Command returns a command that runs args inside the host, in all of its
// namespaces, with Env as its environment. The caller may set Stdin, Stdout,
// Stderr, Env (appended to by the caller) and Dir is ignored: use the
// WorkDir argument of nsenter by calling CommandIn instead.
func (h *Host) Command(ctx context.Context, args ...string) *exec.Cmd {
	return h.CommandIn(ctx, "", args...)
}

// CommandIn is Command with a working directory inside the host.
func (h *Host) CommandIn(ctx context.Context, dir string, args ...string) *exec.Cmd {
	nsargs := []string{"-t", strconv.Itoa(h.pid), "-a"}
	if dir != "" {
		nsargs = append(nsargs, "--wd="+dir)
	}
	nsargs = append(nsargs, "--")
	cmd := exec.CommandContext(ctx, "nsenter", append(nsargs, args...)...)
	cmd.Env = append([]string(nil), Env...)
	return cmd
}

// Exec runs args inside the host and returns its combined output.
func (h *Host) Exec(ctx context.Context, args ...string) ([]byte, error) {
	if h.pid == 0 {
		return nil, errors.New("host is not running")
	}
	out, err := h.Command(ctx, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), h.Machine, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Run runs args inside the host, fails t if it fails, and returns its
// combined output.
func (h *Host) Run(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := h.Exec(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// WriteFile writes data to path inside the host, creating its parent
// directories. It writes through the host's own view of its filesystem, so
// symlinks resolve as they do inside it.
func (h *Host) WriteFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := h.WriteFileErr(context.Background(), path, data, perm); err != nil {
		t.Fatal(err)
	}
}

// WriteFileErr is WriteFile that returns its error.
func (h *Host) WriteFileErr(ctx context.Context, path string, data []byte, perm os.FileMode) error {
	cmd := h.Command(ctx, "sh", "-c", `mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"`,
		"sh", path, fmt.Sprintf("%o", perm.Perm()))
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("write %s in %s: %w: %s", path, h.Machine, err, bytes.TrimSpace(out))
	}
	return nil
}

// ReadFile reads path inside the host.
func (h *Host) ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	return []byte(h.Run(t, "cat", path))
}

// Stop ends the host at once: it kills the host's systemd, which ends every
// process of the host's PID namespace, and nspawn then removes the host's
// mounts and its volatile overlay. Nothing of a host outlives it, so there is
// no shutdown to wait for. Stop is idempotent.
func (h *Host) Stop() error {
	h.stopOnce.Do(func() {
		select {
		case <-h.done:
		default:
			if h.pid != 0 {
				syscall.Kill(h.pid, syscall.SIGKILL)
			} else {
				h.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-h.done:
			case <-time.After(10 * time.Second):
				h.cmd.Process.Kill()
				<-h.done
				h.stopErr = fmt.Errorf("killed nspawn after 10 s\nconsole:\n%s", h.console.String())
				return
			}
		}
		var ee *exec.ExitError
		if h.waitErr != nil && !errors.As(h.waitErr, &ee) {
			h.stopErr = h.waitErr
		}
		h.pid = 0
	})
	return h.stopErr
}

// ringBuffer keeps the last n bytes written to it.
type ringBuffer struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func newRingBuffer(n int) *ringBuffer { return &ringBuffer{n: n} }

func (r *ringBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if len(r.buf) > r.n {
		r.buf = append(r.buf[:0:0], r.buf[len(r.buf)-r.n:]...)
	}
	return len(p), nil
}

func (r *ringBuffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.buf)
}

var _ io.Writer = (*ringBuffer)(nil)
