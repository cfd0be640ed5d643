// Package faults tests the agent on a real host while the services it
// depends on fail under it.
package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// lost is what the agent logs when it builds a driver again whose
// connection died.
const lost = "driver lost its connection; reconnecting"

// unit is a manifest of a long-running service.
func unit(name string) string {
	return fmt.Sprintf("kind: unit\nname: %s\ncontent: |\n  [Service]\n  ExecStart=/bin/sleep infinity\nstate: running\n", name)
}

// waitActive waits until the unit is active in the host.
func waitActive(t *testing.T, h *host.Host, name string, agentLog func() string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, _ := h.Exec(ctx, "systemctl", "is-active", name)
		cancel()
		if strings.TrimSpace(string(out)) == "active" {
			return
		}
		if time.Now().After(deadline) {
			// The agent's goroutines say where it is stuck.
			h.Exec(context.Background(), "pkill", "-QUIT", "-x", "outpost")
			time.Sleep(2 * time.Second)
			t.Fatalf("%s is %q, want active; agent log:\n%s", name, strings.TrimSpace(string(out)), agentLog())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitGood waits until the daemon has recorded the source's revision in
// force as good: its health wait is over.
func waitGood(t *testing.T, h *host.Host, agentLog func() string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, _ := h.Exec(ctx, "/opt/outpost/outpost", "status", "--json")
		cancel()
		var s struct {
			Commit   string `json:"commit"`
			LastGood string `json:"last_good"`
		}
		if json.Unmarshal(out, &s) == nil && s.Commit != "" && s.Commit == s.LastGood {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not record its revision as good; status: %s\nagent log:\n%s", out, agentLog())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSystemBusRestart runs the daemon in a host, restarts the system bus
// under it (the daemon's D-Bus connection dies), and checks that the next
// converge reconnects: a unit stopped by hand is repaired with no new
// commit, a unit added to the source afterwards is started, and drift after
// that is repaired too.
func TestSystemBusRestart(t *testing.T) {
	h := host.Start(t, host.Options{BinDir: host.BuildOutpost(t), NoDocker: true})
	h.Run(t, "mkdir", "-p", "/srv/env")
	h.WriteFile(t, "/srv/env/a.yaml", []byte(unit("bus-a.service")), 0o644)
	h.WriteFile(t, "/etc/outpost/agent.yaml", []byte("source: {url: /srv/env, interval: 1s}\nhost: {name: bus-1}\n"), 0o600)

	cmd, agentLog := startAgent(t, h, "--full-interval", "2s")
	waitActive(t, h, "bus-a.service", agentLog)
	waitGood(t, h, agentLog)

	for i := range 2 {
		// Drift on the same revision, no new commit: the driver whose
		// connection died must be built again without one.
		before := strings.Count(agentLog(), lost)
		h.Run(t, "systemctl", "restart", "dbus.service")
		waitActive(t, h, "dbus.service", agentLog)
		h.Run(t, "systemctl", "stop", "bus-a.service")
		waitActive(t, h, "bus-a.service", agentLog)
		if strings.Count(agentLog(), lost) <= before {
			t.Fatalf("the unit was repaired, but the agent did not reconnect after the bus restarted; agent log:\n%s", agentLog())
		}

		h.Run(t, "systemctl", "restart", "dbus.service")
		waitActive(t, h, "dbus.service", agentLog)

		// A new unit in the source: the next pass must reach systemd again.
		b := fmt.Sprintf("bus-b%d.service", i)
		h.WriteFile(t, "/srv/env/b.yaml", []byte(unit(b)), 0o644)
		waitActive(t, h, b, agentLog)
		waitGood(t, h, agentLog)

		// Drift after the restart is repaired too.
		h.Run(t, "systemctl", "stop", "bus-a.service")
		waitActive(t, h, "bus-a.service", agentLog)
	}
	if cmd.ProcessState != nil {
		t.Fatalf("the agent exited: %s\n%s", cmd.ProcessState, agentLog())
	}
}

// TestBusRestartDuringHealthWait restarts the system bus while the daemon
// waits for a new commit's unit to become healthy: the daemon must build its
// unit driver again and find the unit healthy once it is, not ask over the
// closed connection until the wait runs out and roll a healthy commit back.
func TestBusRestartDuringHealthWait(t *testing.T) {
	h := host.Start(t, host.Options{BinDir: host.BuildOutpost(t), NoDocker: true})
	h.Run(t, "mkdir", "-p", "/srv/env")
	h.WriteFile(t, "/srv/env/a.yaml", []byte(unit("bus-a.service")), 0o644)
	h.WriteFile(t, "/etc/outpost/agent.yaml",
		[]byte("source: {url: /srv/env, interval: 1s}\nhost: {name: bus-2}\nhealth_timeout: 45s\n"), 0o600)

	_, agentLog := startAgent(t, h)
	waitActive(t, h, "bus-a.service", agentLog)
	waitGood(t, h, agentLog)
	first := status(t, h).LastGood

	// A unit that fails until /run/bus-ok exists: its commit is applied and
	// the daemon waits for its health.
	h.WriteFile(t, "/srv/env/c.yaml", []byte(`kind: unit
name: bus-c.service
content: |
  [Unit]
  StartLimitIntervalSec=0
  [Service]
  ExecStart=/bin/sh -c 'test -f /run/bus-ok || exit 1; exec sleep infinity'
  Restart=always
  RestartSec=500ms
state: running
`), 0o644)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := h.Exec(context.Background(), "systemctl", "show", "-P", "NRestarts", "bus-c.service")
		if n := strings.TrimSpace(string(out)); n != "" && n != "0" && n != "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bus-c.service was not started; agent log:\n%s", agentLog())
		}
		time.Sleep(200 * time.Millisecond)
	}
	before := strings.Count(agentLog(), lost)
	h.Run(t, "systemctl", "restart", "dbus.service")
	waitActive(t, h, "dbus.service", agentLog)
	time.Sleep(2 * time.Second) // a health check or more on the closed connection
	h.Run(t, "touch", "/run/bus-ok")
	waitActive(t, h, "bus-c.service", agentLog)

	deadline = time.Now().Add(90 * time.Second)
	for {
		if strings.Contains(agentLog(), "rolling back") {
			t.Fatalf("the daemon rolled a healthy commit back; agent log:\n%s", agentLog())
		}
		s := status(t, h)
		if s.LastGood != "" && s.LastGood != first && s.Commit == s.LastGood {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new commit was never recorded as good; status %+v; agent log:\n%s", s, agentLog())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Count(agentLog(), lost) <= before {
		t.Fatalf("the commit was found healthy without a reconnect after the bus restarted; agent log:\n%s", agentLog())
	}
}

type agentStatus struct {
	Commit   string `json:"commit"`
	LastGood string `json:"last_good"`
}

// status reads the daemon's status in the host.
func status(t *testing.T, h *host.Host) agentStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, "/opt/outpost/outpost", "status", "--json")
	var s agentStatus
	if err == nil {
		err = json.Unmarshal(out, &s)
	}
	if err != nil {
		t.Fatalf("outpost status: %v\n%s", err, out)
	}
	return s
}

// startAgent runs outpost run -v with args in the host until the test ends,
// and returns its command and a reader of its log so far.
func startAgent(t *testing.T, h *host.Host, args ...string) (*exec.Cmd, func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var log strings.Builder
	cmd := h.Command(ctx, append([]string{"/opt/outpost/outpost", "run", "-v"}, args...)...)
	cmd.Stdout, cmd.Stderr = &syncWriter{b: &log}, &syncWriter{b: &log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Exec(context.Background(), "pkill", "-TERM", "-x", "outpost")
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	return cmd, func() string { return syncString(&log) }
}
