// Package faults tests the agent on a real host while the services it
// depends on fail under it.
package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

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
// converge reconnects: a unit added to the source afterwards is started,
// and a unit stopped by hand is repaired.
func TestSystemBusRestart(t *testing.T) {
	h := host.Start(t, host.Options{BinDir: host.BuildOutpost(t), NoDocker: true})
	h.Run(t, "mkdir", "-p", "/srv/env")
	h.WriteFile(t, "/srv/env/a.yaml", []byte(unit("outpost-bus-a.service")), 0o644)
	h.WriteFile(t, "/etc/outpost/agent.yaml", []byte("source: {url: /srv/env, interval: 1s}\nhost: {name: bus-1}\n"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	var log strings.Builder
	cmd := h.Command(ctx, "/opt/outpost/outpost", "run", "-v", "--full-interval", "2s")
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
	agentLog := func() string { return syncString(&log) }
	waitActive(t, h, "outpost-bus-a.service", agentLog)
	waitGood(t, h, agentLog)

	for i := range 2 {
		h.Run(t, "systemctl", "restart", "dbus.service")
		waitActive(t, h, "dbus.service", agentLog)

		// A new unit in the source: the next pass must reach systemd again.
		b := fmt.Sprintf("outpost-bus-b%d.service", i)
		h.WriteFile(t, "/srv/env/b.yaml", []byte(unit(b)), 0o644)
		waitActive(t, h, b, agentLog)
		waitGood(t, h, agentLog)

		// Drift after the restart is repaired too.
		h.Run(t, "systemctl", "stop", "outpost-bus-a.service")
		waitActive(t, h, "outpost-bus-a.service", agentLog)
	}
	if cmd.ProcessState != nil {
		t.Fatalf("the agent exited: %s\n%s", cmd.ProcessState, agentLog())
	}
}
