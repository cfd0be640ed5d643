package units

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// TestUnitDiff runs outpost diff and apply -v in a host with a real
// systemd: a change of a unit's content and of a drop-in prints their
// unified diffs, from the files on the host to the commit.
func TestUnitDiff(t *testing.T) {
	h := host.Start(t, host.Options{BinDir: host.BuildOutpost(t), NoDocker: true})
	h.WriteFile(t, "/etc/outpost/agent.yaml", []byte("host: {name: units-diff}\nstatus: {push: false}\n"), 0o600)
	dropin := func(level string) string {
		return "dropins:\n  10-env.conf: {content: \"[Service]\\nEnvironment=LEVEL=" + level + "\\n\"}\n"
	}
	setRepo(t, h, map[string]string{"u.yaml": manifest("diffed.service", "first", dropin("info"))})
	if out, ok := apply(t, h); !ok {
		t.Fatalf("apply failed:\n%s", out)
	}
	setRepo(t, h, map[string]string{"u.yaml": manifest("diffed.service", "second", dropin("debug"))})

	want := []string{
		"~ unit diffed.service (content, drop-in 10-env.conf)\n",
		"    --- diffed.service\n    +++ diffed.service\n    @@ -1,4 +1,4 @@\n     [Unit]\n    -Description=first\n    +Description=second\n     [Service]\n",
		"    --- diffed.service.d/10-env.conf\n    +++ diffed.service.d/10-env.conf\n    @@ -1,2 +1,2 @@\n     [Service]\n    -Environment=LEVEL=info\n    +Environment=LEVEL=debug\n",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := h.Exec(ctx, "/opt/outpost/outpost", "diff", "--source", "/srv/env", "--config", "/etc/outpost/agent.yaml")
	if err == nil {
		t.Errorf("diff exited 0 with changes:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("diff output lacks\n%s\ngot:\n%s", w, out)
		}
	}
	out, err = h.Exec(ctx, "/opt/outpost/outpost", "apply", "-v", "--source", "/srv/env", "--config", "/etc/outpost/agent.yaml")
	if err != nil {
		t.Fatalf("apply -v: %v\n%s", err, out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("apply -v output lacks\n%s\ngot:\n%s", w, out)
		}
	}
	if got := show(t, h, "diffed.service", "Description"); got != "second" {
		t.Errorf("Description = %q, want second", got)
	}
}
