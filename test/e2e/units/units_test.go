// Package units tests, through the agent's binary in a host with a real
// systemd, which units a commit may and may not take over, and that the
// repository outpost init writes diffs there as it is.
package units

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

const sleeper = "[Unit]\nDescription=%s\n[Service]\nExecStart=/bin/sleep infinity\n"

func unitFile(description string) string { return strings.Replace(sleeper, "%s", description, 1) }

// manifest is a unit resource with its own content; extra adds fields.
func manifest(name, description, extra string) string {
	return "kind: unit\nname: " + name + "\ncontent: |\n  " +
		strings.ReplaceAll(strings.TrimSuffix(unitFile(description), "\n"), "\n", "\n  ") +
		"\nstate: running\n" + extra
}

// apply runs outpost apply in h on /srv/env with the configuration
// /etc/outpost/agent.yaml, and returns its output and whether it succeeded.
func apply(t *testing.T, h *host.Host) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := h.Exec(ctx, "/opt/outpost/outpost", "apply", "--source", "/srv/env", "--config", "/etc/outpost/agent.yaml")
	return string(out), err == nil
}

// show returns a unit's property in h.
func show(t *testing.T, h *host.Host, name, prop string) string {
	t.Helper()
	return strings.TrimSpace(h.Run(t, "systemctl", "show", "-p", prop, "--value", name))
}

// keep is a file that every commit holds, so that pruning a unit removes
// a minority of what Outpost owns (more would be a mass prune).
func keep(n, content string) string {
	return "kind: file\npath: /etc/keep-" + n + "\ncontent: " + content + "\n"
}

// setRepo makes /srv/env hold exactly the files given, and the kept files
// unless given.
func setRepo(t *testing.T, h *host.Host, files map[string]string) {
	t.Helper()
	h.Run(t, "sh", "-c", "rm -rf /srv/env && mkdir -p /srv/env")
	for _, n := range []string{"a", "b", "c"} {
		if _, ok := files["keep-"+n+".yaml"]; !ok {
			h.WriteFile(t, "/srv/env/keep-"+n+".yaml", []byte(keep(n, "k")), 0o644)
		}
	}
	for name, data := range files {
		h.WriteFile(t, "/srv/env/"+name, []byte(data), 0o644)
	}
}

// TestUnitOwnership runs outpost apply in a host: a unit that would replace
// a packaged one is refused and the packaged one keeps running; override
// lets it; a unit file that Outpost did not write is a conflict and stays
// byte for byte; adopt takes it over, keeping the original in the state
// directory, and pruning puts it back; and the host's policy refuses a
// commit with units as a whole.
func TestUnitOwnership(t *testing.T) {
	h := host.Start(t, host.Options{BinDir: host.BuildOutpost(t), NoDocker: true})
	h.WriteFile(t, "/etc/outpost/agent.yaml", []byte("host: {name: units-1}\nstatus: {push: false}\n"), 0o600)

	// A package's unit, running.
	h.WriteFile(t, "/usr/lib/systemd/system/vendor-web.service", []byte(unitFile("packaged")), 0o644)
	h.Run(t, "systemctl", "daemon-reload")
	h.Run(t, "systemctl", "start", "vendor-web.service")
	pid := show(t, h, "vendor-web.service", "MainPID")

	t.Run("packaged unit refused", func(t *testing.T) {
		setRepo(t, h, map[string]string{"u.yaml": manifest("vendor-web.service", "from git", "")})
		out, ok := apply(t, h)
		if ok || !strings.Contains(out, "would replace a packaged unit; set override: true") {
			t.Errorf("apply = %v:\n%s\nwant a failure saying the unit would replace a packaged one", ok, out)
		}
		if out, err := h.Exec(context.Background(), "test", "-e", "/etc/systemd/system/vendor-web.service"); err == nil {
			t.Errorf("/etc/systemd/system/vendor-web.service exists after a refused apply: %s", out)
		}
		if got := show(t, h, "vendor-web.service", "Description"); got != "packaged" {
			t.Errorf("Description = %q, want the packaged unit's", got)
		}
		if got := show(t, h, "vendor-web.service", "MainPID"); got != pid {
			t.Errorf("MainPID = %s, want %s: the packaged unit still runs, untouched", got, pid)
		}
	})

	t.Run("override", func(t *testing.T) {
		setRepo(t, h, map[string]string{"u.yaml": manifest("vendor-web.service", "from git", "override: true\n")})
		if out, ok := apply(t, h); !ok {
			t.Fatalf("apply(override) failed:\n%s", out)
		}
		if got := show(t, h, "vendor-web.service", "Description"); got != "from git" {
			t.Errorf("Description = %q, want the overriding unit's", got)
		}
		setRepo(t, h, nil)
		if out, ok := apply(t, h); !ok {
			t.Fatalf("apply(prune) failed:\n%s", out)
		}
		if got := show(t, h, "vendor-web.service", "FragmentPath"); !strings.HasSuffix(got, "lib/systemd/system/vendor-web.service") {
			t.Errorf("after prune, FragmentPath = %q, want the packaged unit's", got)
		}
	})

	original := unitFile("hand made")
	h.WriteFile(t, "/etc/systemd/system/hand.service", []byte(original), 0o644)
	h.Run(t, "systemctl", "daemon-reload")
	h.Run(t, "systemctl", "start", "hand.service")

	t.Run("foreign unit file is a conflict", func(t *testing.T) {
		setRepo(t, h, map[string]string{"u.yaml": manifest("hand.service", "from git", "")})
		out, ok := apply(t, h)
		if ok || !strings.Contains(out, "not managed by outpost") {
			t.Errorf("apply = %v:\n%s\nwant a conflict", ok, out)
		}
		if got := string(h.ReadFile(t, "/etc/systemd/system/hand.service")); got != original {
			t.Errorf("hand.service = %q, want it byte for byte %q", got, original)
		}
		if got := show(t, h, "hand.service", "Description"); got != "hand made" {
			t.Errorf("Description = %q, want hand made", got)
		}
	})

	t.Run("adopt and prune", func(t *testing.T) {
		setRepo(t, h, map[string]string{"u.yaml": manifest("hand.service", "from git", "adopt: true\n")})
		if out, ok := apply(t, h); !ok || !strings.Contains(out, "adopted unit file") {
			t.Fatalf("apply(adopt) = %v:\n%s\nwant the unit adopted", ok, out)
		}
		if got := show(t, h, "hand.service", "Description"); got != "from git" {
			t.Errorf("adopted Description = %q, want from git", got)
		}
		kept := "/var/lib/outpost/adopted/units/hand.service"
		if got := string(h.ReadFile(t, kept)); got != original {
			t.Errorf("kept original = %q, want %q", got, original)
		}
		if got := strings.TrimSpace(h.Run(t, "stat", "-c", "%a", kept)); got != "600" {
			t.Errorf("kept original mode = %s, want 600", got)
		}
		setRepo(t, h, nil)
		if out, ok := apply(t, h); !ok {
			t.Fatalf("apply(prune) failed:\n%s", out)
		}
		if got := string(h.ReadFile(t, "/etc/systemd/system/hand.service")); got != original {
			t.Errorf("after prune, hand.service = %q, want the original %q", got, original)
		}
		if got := show(t, h, "hand.service", "Description"); got != "hand made" {
			t.Errorf("after prune, Description = %q, want hand made", got)
		}
		if got := show(t, h, "hand.service", "ActiveState"); got != "active" {
			t.Errorf("after prune, ActiveState = %q, want active", got)
		}
	})

	t.Run("policy refuses the commit", func(t *testing.T) {
		h.WriteFile(t, "/etc/outpost/agent.yaml", []byte("host: {name: units-1}\nstatus: {push: false}\nallow_kinds: [file, container]\n"), 0o600)
		setRepo(t, h, map[string]string{"u.yaml": manifest("policy.service", "from git", ""), "keep-a.yaml": keep("a", "changed")})
		out, ok := apply(t, h)
		if ok || !strings.Contains(out, "/srv/env/u.yaml:1:1: unit:policy.service: kind unit is not allowed on this host") {
			t.Errorf("apply = %v:\n%s\nwant the commit refused at u.yaml:1:1", ok, out)
		}
		if got := string(h.ReadFile(t, "/etc/keep-a")); got != "k" {
			t.Errorf("/etc/keep-a = %q after a refused commit, want it unchanged", got)
		}
		if out, err := h.Exec(context.Background(), "test", "-e", "/etc/systemd/system/policy.service"); err == nil {
			t.Errorf("policy.service was written by a refused commit: %s", out)
		}
	})
}
