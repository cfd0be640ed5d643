package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/outpost-gitops/outpost/internal/state"
)

// mountTmpfs mounts a tmpfs of size bytes at dir for the test. It needs
// root, which the suite runs as; a missing privilege fails the test.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount a tmpfs at %s (the test needs root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fill writes a file that leaves at most about free bytes of the file
// system at dir.
func fill(t *testing.T, dir string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	if n := avail - free; n > 0 {
		f, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.Write(make([]byte, n)) // short on ENOSPC, which is the point
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestFullDiskFileTarget converges files into a full 64 KiB tmpfs: the one
// that does not fit fails with the reason, the old version stays whole, no
// temporary file is left, and the file that fits is written.
func TestFullDiskFileTarget(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	cfg := sandbox(t, repo)
	dir := filepath.Join(cfg.Root, "etc", "app")
	mountTmpfs(t, dir, 64<<10)
	old := "old version\n"
	if err := os.WriteFile(filepath.Join(dir, "big.conf"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	// The old version is one that Outpost wrote: it carries its mark.
	if err := unix.Setxattr(filepath.Join(dir, "big.conf"), "trusted.outpost.path", []byte("/etc/app/big.conf"), 0); err != nil {
		t.Fatal(err)
	}
	writeTree(t, repo, map[string]string{
		"app.yaml": "kind: file\npath: /etc/app/big.conf\nsource: big.txt\n---\nkind: file\npath: /etc/app/small.conf\ncontent: small\n",
		"big.txt":  strings.Repeat("x", 200<<10),
	})
	rep, err := Apply(context.Background(), cfg, nil, ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply() error = %v, want a report with the failure", err)
	}
	var failed []Change
	for _, c := range rep.Changes {
		if c.Error != "" {
			failed = append(failed, c)
		}
	}
	if len(failed) != 1 || failed[0].Name != "/etc/app/big.conf" || !strings.Contains(failed[0].Error, "no space left on device") {
		t.Errorf("Apply() failures = %+v, want /etc/app/big.conf failing with no space left on device", failed)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "big.conf")); err != nil || string(b) != old {
		t.Errorf("big.conf after a failed write = %q, %v, want the old version %q", b, err, old)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "small.conf")); err != nil || string(b) != "small" {
		t.Errorf("small.conf = %q, %v, want it written", b, err)
	}
	if got := names(t, dir); strings.Join(got, " ") != "big.conf small.conf" {
		t.Errorf("files in the full directory = %q, want only big.conf and small.conf (no temporary files)", got)
	}
	// The state records the failure and stays readable.
	st, err := state.New(cfg.StateDir).Load()
	if err != nil {
		t.Fatalf("state after the failure: %v", err)
	}
	if st.LastGood != "" {
		t.Errorf("last good = %q after a failed pass, want none", st.LastGood)
	}
}

// TestFullDiskStateDir runs apply with a state directory on a full tmpfs:
// the pass fails with the reason, the previous state.json is intact and
// readable, and no temporary file is left beside it.
func TestFullDiskStateDir(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	cfg := sandbox(t, repo)
	mountTmpfs(t, cfg.StateDir, 64<<10)
	writeTree(t, repo, map[string]string{"a.yaml": "kind: file\npath: /etc/a\ncontent: a\n"})
	if _, err := Apply(context.Background(), cfg, nil, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(cfg.StateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	fill(t, cfg.StateDir, 0)
	// Enough resources that the next state.json cannot fit.
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "---\nkind: file\npath: /etc/many/f%03d-%s\ncontent: x\n", i, strings.Repeat("n", 100))
	}
	writeTree(t, repo, map[string]string{"many.yaml": b.String()})
	_, err = Apply(context.Background(), cfg, nil, ApplyOptions{})
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Apply() on a full state directory = %v, want ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "save state") {
		t.Errorf("Apply() = %q, want it to say the state could not be saved", err)
	}
	after, err := os.ReadFile(filepath.Join(cfg.StateDir, "state.json"))
	if err != nil || string(after) != string(before) {
		t.Errorf("state.json after a failed save changed (err %v)", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(after, &doc); err != nil {
		t.Errorf("state.json after a failed save: %v", err)
	}
	for _, n := range names(t, cfg.StateDir) {
		if n != "state.json" && n != "filler" && n != state.LockName {
			t.Errorf("%s left in the state directory", n)
		}
	}
	if _, err := state.New(cfg.StateDir).Load(); err != nil {
		t.Errorf("Load() after a failed save: %v", err)
	}
}
