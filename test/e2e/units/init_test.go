package units

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// TestInitValidateDiff runs what outpost init's README says, as a new user
// on a real host does: init, validate, then diff against the host's own
// systemd and the Docker engine. Every resource shows as created and none
// fails to be checked, and the diff changes nothing.
func TestInitValidateDiff(t *testing.T) {
	h := host.Start(t, host.Options{BinDir: host.BuildOutpost(t)})
	const bin = host.BinDirPath + "/outpost"
	h.Run(t, bin, "init", "/srv/env")
	if out := h.Run(t, bin, "validate", "/srv/env"); out != "ok: 4 resources in 1 files\n" {
		t.Errorf("validate = %q, want ok: 4 resources in 1 files", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := h.Exec(ctx, bin, "diff", "--source", "/srv/env", "--host", "init-1", "--state-dir", "/var/lib/outpost-init")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("diff = %v, want exit status 1 (changes):\n%s", err, out)
	}
	for _, want := range []string{
		"+ file /etc/hello/hello.conf (create)\n",
		"+ file /srv/hello/index.html (create)\n",
		"+ unit hello-clean.service (create)\n",
		"+ container hello (create)\n",
		"diff: 4 to create on host init-1 at ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("diff printed\n%s\nwant a line %q", out, want)
		}
	}
	if strings.Contains(string(out), "\n! ") {
		t.Errorf("diff could not check a resource:\n%s", out)
	}
	if out, err := h.Exec(ctx, "test", "-e", "/srv/hello/index.html"); err == nil {
		t.Errorf("diff wrote /srv/hello/index.html: %s", out)
	}
}
