package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// Paths of the agent inside a test host.
const (
	agentBin    = host.BinDirPath + "/outpost"
	configPath  = "/etc/outpost/agent.yaml"
	socketPath  = "/run/outpost/outpost.sock"
	stateDir    = "/var/lib/outpost"
	managedFile = "/etc/e2e/app.conf"
)

// status is the part of `outpost status --json` that the tests read.
type status struct {
	Source        string                     `json:"source"`
	Commit        string                     `json:"commit"`
	LastGood      string                     `json:"last_good"`
	Result        string                     `json:"result"`
	RolledBack    string                     `json:"rolled_back"`
	LastError     string                     `json:"last_error"`
	Suspended     bool                       `json:"suspended"`
	Offline       bool                       `json:"offline"`
	DriftRepaired int                        `json:"drift_repaired"`
	DriftDetected int                        `json:"drift_detected"`
	Failed        map[string]json.RawMessage `json:"failed"`
	Resources     []struct {
		Kind    string `json:"kind"`
		Name    string `json:"name"`
		State   string `json:"state"`
		Error   string `json:"error"`
		Repairs int    `json:"repairs"`
	} `json:"resources"`

	// exit is the command's exit status: reconcile and retry exit 1 when
	// the revision was rolled back, 3 while suspended.
	exit int
}

// agent is one `outpost run` inside a test host, started through nsenter
// as a background process of the test.
type agent struct {
	t    testing.TB
	h    *host.Host
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for a process to write while a test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newAgent writes cfg as the host's configuration and returns an agent
// that is not started yet. Its logs are printed when the test fails; it is
// killed when the test ends.
func newAgent(t testing.TB, h *host.Host, cfg string, extra ...string) *agent {
	t.Helper()
	h.WriteFile(t, configPath, []byte(cfg), 0o600)
	a := &agent{
		t: t, h: h, logs: &syncBuffer{},
		args: append([]string{agentBin, "run", "--config", configPath, "--socket", socketPath,
			"--state-dir", stateDir, "-v"}, extra...),
	}
	t.Cleanup(func() {
		a.kill(syscall.SIGKILL)
		if t.Failed() || os.Getenv("OUTPOST_E2E_LOG") != "" {
			t.Logf("agent's log:\n%s", a.logs.String())
		}
	})
	return a
}

// start runs the agent in the background; the previous run must have ended.
func (a *agent) start() {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	cmd := a.h.Command(context.Background(), a.args...)
	fmt.Fprintf(a.logs, "--- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd.Stdout = a.logs
	cmd.Stderr = a.logs
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("start agent: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	a.cmd, a.done = cmd, done
}

// pid is the agent's PID in this machine's namespace: nsenter's child
// (nsenter forks to enter the host's PID namespace). It is 0 while the
// child is not there yet.
func (a *agent) pid() int {
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// signal sends sig to the running agent.
func (a *agent) signal(sig syscall.Signal) {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid := a.pid(); pid != 0 {
			if err := syscall.Kill(pid, sig); err != nil {
				a.t.Fatalf("signal %v to the agent: %v", sig, err)
			}
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("signal %v: the agent is not running", sig)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill sends sig to the agent, if it runs, and waits until it has exited.
func (a *agent) kill(sig syscall.Signal) {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	for i := 0; ; i++ {
		if pid := a.pid(); pid != 0 {
			syscall.Kill(pid, sig)
			break
		}
		if i > 200 {
			cmd.Process.Kill()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// exited reports whether the last run has ended.
func (a *agent) exited() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		return true
	}
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// outpost runs the outpost command line inside the host with args and the
// agent's socket, and returns its standard output.
func (a *agent) outpost(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{agentBin}, args...)
	full = append(full, "--socket", socketPath)
	cmd := a.h.Command(ctx, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("outpost %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// control runs `outpost OP --json` and decodes the status it prints.
func (a *agent) control(op string) (*status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := a.outpost(ctx, op, "--json")
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) && (ee.ExitCode() == 1 || ee.ExitCode() == 3) {
		// The status is printed; the exit status says what it means.
		code, err = ee.ExitCode(), nil
	}
	if err != nil {
		return nil, err
	}
	s := status{exit: code}
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("outpost %s --json: %w: %q", op, err, out)
	}
	return &s, nil
}

// mustControl is control that fails the test on an error.
func (a *agent) mustControl(op string) *status {
	a.t.Helper()
	s, err := a.control(op)
	if err != nil {
		a.t.Fatal(err)
	}
	return s
}

// waitStatus polls `outpost status` until ok accepts it, and fails the test
// after timeout with the last status seen.
func (a *agent) waitStatus(timeout time.Duration, what string, ok func(*status) bool) *status {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *status
	var lastErr error
	for {
		s, err := a.control("status")
		if err == nil && s.Source == "daemon" {
			last, lastErr = s, nil
			if ok(s) {
				return s
			}
		} else if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(last, "", "  ")
			a.t.Fatalf("after %v, still waiting for %s; last status: %s; last error: %v", timeout, what, b, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eventually calls f until it returns nil, and fails the test with its last
// error after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// uniqueName returns prefix and 8 random hex digits.
func uniqueName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// docker runs the docker command line on this machine, against the engine
// that every test host shares.
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// ownedContainers returns the IDs of the containers, running or not, that
// Outpost labelled as its resource name.
func ownedContainers(t testing.TB, name string) []string {
	t.Helper()
	out, err := docker("ps", "-a", "-q", "--no-trunc", "--filter", "label=io.outpost.managed=true", "--filter", "label=io.outpost.resource="+name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// containerState returns a container's state and health ("running
// healthy"), or "" with the error when there is none.
func containerState(name string) (string, error) {
	return docker("inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", name)
}

// cleanContainers removes, when the test ends, every container that
// Outpost made for the resource name, and the images of refs. Register it
// before the host starts, so that it runs after the agent and the host have
// stopped and nothing makes the container again.
func cleanContainers(t testing.TB, name string, refs ...string) {
	t.Cleanup(func() {
		out, _ := docker("ps", "-a", "-q", "--filter", "label=io.outpost.resource="+name)
		for _, id := range strings.Fields(out) {
			if _, err := docker("rm", "-f", "-v", id); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, ref := range refs {
			docker("image", "rm", ref)
		}
	})
}

// pushWeb pushes the busybox web image to the shared registry as
// repo:tags and returns the image's repository (without a tag).
func pushWeb(t testing.TB, repo string, tags ...string) string {
	t.Helper()
	img := registry.Image(t, registry.Config{
		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-p", "8080"},
		Health:     &registry.Health{Test: []string{"CMD", "true"}, Interval: time.Second, Retries: 1},
	})
	reg.Push(t, repo, img, tags...)
	return reg.Repo(repo)
}

// agentConfig is an agent configuration for a host named name, following
// url every interval.
func agentConfig(url, name string, interval, healthTimeout time.Duration) string {
	return fmt.Sprintf(`source:
  url: %s
  branch: main
  interval: %s
host:
  name: %s
status:
  push: false
state_dir: %s
health_timeout: %s
`, url, interval, name, stateDir, healthTimeout)
}

// unitManifest is a long-running service that is enabled and running.
func unitManifest(name string) string {
	return fmt.Sprintf(`kind: unit
name: %s
content: |
  [Unit]
  Description=Outpost end-to-end test service
  [Service]
  ExecStart=/bin/sleep infinity
  [Install]
  WantedBy=multi-user.target
enabled: true
state: running
`, name)
}

// containerManifest is the busybox web container, with health as the
// command of its healthcheck.
func containerManifest(name, image, tag, health, env string) string {
	return fmt.Sprintf(`kind: container
name: %s
image: %s
tag: "%s"
env: {VERSION: "%s"}
health: {cmd: [%s], interval: 1s, retries: 1}
stop_timeout: 1s
`, name, image, tag, env, health)
}

// fileManifest is a file with content.
func fileManifest(path, content string) string {
	return fmt.Sprintf("kind: file\npath: %s\nmode: \"0644\"\ncontent: %q\n", path, content)
}

// readHostFile returns a file's content inside the host.
func readHostFile(h *host.Host, path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := h.Command(ctx, "cat", path).Output()
	return string(out), err
}

// unitActive returns `systemctl is-active` of unit inside the host.
func unitActive(h *host.Host, unit string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, _ := h.Command(ctx, "systemctl", "is-active", unit).Output()
	return strings.TrimSpace(string(out))
}
