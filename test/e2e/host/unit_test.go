package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOutpostServiceUnit loads packaging's outpost.service in a real systemd,
// with a stand-in binary that speaks sd_notify as the agent does.
func TestOutpostServiceUnit(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "packaging/systemd/outpost.service"))
	if err != nil {
		t.Fatal(err)
	}
	h := Start(t, Options{BinDir: BuildBinary(t, "./test/e2e/host/testdata/notifier", "outpost"), NoDocker: true})
	h.Run(t, "cp", "/opt/outpost/outpost", "/usr/bin/outpost")
	h.WriteFile(t, "/etc/systemd/system/outpost.service", unit, 0o644)

	if out := h.Run(t, "systemd-analyze", "verify", "/etc/systemd/system/outpost.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify outpost.service:\n%s", out)
	}
	h.Run(t, "systemctl", "daemon-reload")
	h.Run(t, "systemctl", "enable", "--now", "outpost.service") // returns once READY
	props := map[string]string{
		"ActiveState":   "active",
		"Type":          "notify",
		"StatusText":    "ready",
		"WatchdogUSec":  "5min",
		"Restart":       "always",
		"UnitFileState": "enabled",
	}
	for p, want := range props {
		if got := strings.TrimSpace(h.Run(t, "systemctl", "show", "-p", p, "--value", "outpost.service")); got != want {
			t.Errorf("outpost.service %s = %q, want %q", p, got, want)
		}
	}
	for _, dir := range []string{"/var/lib/outpost", "/run/outpost", "/etc/outpost"} {
		if got := strings.TrimSpace(h.Run(t, "stat", "-c", "%a %U", dir)); got != "700 root" {
			t.Errorf("stat %s = %q, want 700 root", dir, got)
		}
	}

	// Restart=always brings a killed agent back.
	pid := strings.TrimSpace(h.Run(t, "systemctl", "show", "-p", "MainPID", "--value", "outpost.service"))
	h.Run(t, "kill", "-9", pid)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		out, _ := h.Exec(ctx, "systemctl", "show", "-p", "MainPID,ActiveState", "--value", "outpost.service")
		f := strings.Fields(string(out))
		if len(f) == 2 && f[0] != pid && f[0] != "0" && f[1] == "active" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("outpost.service did not come back after its main process was killed: %q", out)
		case <-tick.C:
		}
	}
	h.Run(t, "systemctl", "stop", "outpost.service")
	if got, _ := h.Exec(context.Background(), "systemctl", "is-active", "outpost.service"); strings.TrimSpace(string(got)) != "inactive" {
		t.Errorf("after stop, is-active = %q, want inactive", got)
	}
}
