package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// TestApplyUnderRootNeverReachesSystemd checks that apply --root with a
// unit writes nothing to the real host's /etc/systemd/system, nor under the
// root, and fails the unit saying why, while the files of the commit are
// written under the root.
func TestApplyUnderRootNeverReachesSystemd(t *testing.T) {
	t.Parallel()
	var b [4]byte
	rand.Read(b[:])
	name := "demo-root-" + hex.EncodeToString(b[:]) + ".service"
	real := filepath.Join("/etc/systemd/system", name)
	t.Cleanup(func() { os.Remove(real) })

	repo := t.TempDir()
	writeTree(t, repo, map[string]string{
		"a.yaml": "kind: file\npath: /etc/a\ncontent: a\n",
		"u.yaml": "kind: unit\nname: " + name + "\ncontent: |\n  [Service]\n  ExecStart=/bin/sleep infinity\nenabled: true\nstate: running\n",
	})
	cfg := sandbox(t, repo)
	rep, err := Apply(context.Background(), cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply() = %v", err)
	}
	if rep.Summary.Create != 1 || rep.Summary.Failed != 1 {
		t.Errorf("Apply() summary = %+v, want the file created and the unit failed", rep.Summary)
	}
	for _, c := range rep.Changes {
		if c.Kind == "unit" && !strings.Contains(c.Error, systemd.ErrUnderRoot.Error()) {
			t.Errorf("unit %s error = %q, want it to say %q", c.Name, c.Error, systemd.ErrUnderRoot)
		}
	}
	if got := readFile(t, filepath.Join(cfg.Root, "etc/a")); got != "a" {
		t.Errorf("file under the root = %q, want %q", got, "a")
	}
	for _, p := range []string{real, filepath.Join(cfg.Root, "etc/systemd/system", name)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s = %v, want it never written", p, err)
		}
	}
}
