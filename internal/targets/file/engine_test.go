package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

// changes lists the items of a pass that changed something, as
// "kind:name action (fields)".
func changes(t *testing.T, res *converge.Result) []string {
	t.Helper()
	var out []string
	for _, it := range res.Items {
		if it.Err != nil {
			t.Errorf("%s: %v", it.ID, it.Err)
		}
		if it.Changed() {
			out = append(out, it.ID.String()+" "+it.Change.String())
		}
	}
	return out
}

// TestEngineFiles drives the engine with the file driver on the real
// filesystem: create, no-op, drift revert, prune, prune: false, and an
// unowned file that is never touched.
func TestEngineFiles(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/etc/unowned", "not ours", 0o644)
	e := converge.New(map[spec.Kind]converge.Driver{file.Kind: file.New(file.Options{Root: root})}, converge.Options{})
	ctx := context.Background()
	pass := func(d *spec.State, inv state.Inventory) *converge.Result {
		t.Helper()
		res, err := e.Converge(ctx, d, inv, true)
		if err != nil {
			t.Fatalf("Converge() error = %v", err)
		}
		return res
	}
	v1 := &spec.State{Resources: []*spec.Resource{
		fileRes("/etc/a", "a"), fileRes("/etc/b", "b", mode(0o600)), fileRes("/etc/c", "c"),
		fileRes("/etc/kept", "k", func(*file.File) {}),
	}}
	v1.Resources[3].Prune = false

	res := pass(v1, nil)
	want := []string{"file:/etc/a create", "file:/etc/b create", "file:/etc/c create", "file:/etc/kept create"}
	if diff := cmp.Diff(want, changes(t, res)); diff != "" {
		t.Errorf("first pass changes mismatch (-want +got):\n%s", diff)
	}
	inv := res.Inventory

	if got := changes(t, pass(v1, inv)); len(got) != 0 {
		t.Errorf("second pass changes = %v, want none", got)
	}

	// Drift: edit by hand, apply again.
	write(t, root+"/etc/a", "edited by hand", 0o644)
	if err := os.Chmod(root+"/etc/b", 0o644); err != nil {
		t.Fatal(err)
	}
	res = pass(v1, inv)
	want = []string{"file:/etc/a update (content)", "file:/etc/b update (mode 0644 -> 0600)"}
	if diff := cmp.Diff(want, changes(t, res)); diff != "" {
		t.Errorf("drift pass changes mismatch (-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(root + "/etc/a"); string(b) != "a" {
		t.Errorf("after the drift pass /etc/a = %q, want %q", b, "a")
	}
	inv = res.Inventory

	// /etc/c and /etc/kept leave the desired state.
	v2 := &spec.State{Resources: v1.Resources[:2]}
	res = pass(v2, inv)
	want = []string{"file:/etc/c delete"}
	if diff := cmp.Diff(want, changes(t, res)); diff != "" {
		t.Errorf("prune pass changes mismatch (-want +got):\n%s", diff)
	}
	var left []string
	entries, err := os.ReadDir(root + "/etc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if diff := cmp.Diff([]string{"a", "b", "kept", "unowned"}, left); diff != "" {
		t.Errorf("files left after prune mismatch (-want +got):\n%s", diff)
	}
	var owned []string
	for _, id := range res.Inventory.IDs() {
		owned = append(owned, id.String())
	}
	if diff := cmp.Diff([]string{"file:/etc/a", "file:/etc/b"}, owned); diff != "" {
		t.Errorf("owned after prune mismatch (-want +got):\n%s", diff)
	}
}

// BenchmarkNoopApplyFiles1000 measures one converge of 1,000 managed files
// that are already in sync, through the engine and the file driver: absolute
// paths, no --root.
//
//   - read: every file's content is read and compared, as in a fresh
//     process (outpost apply) or for files written in the last seconds;
//   - verified: the daemon's periodic pass over files that it read before and
//     that were last written more than trustAge ago, so only lstat'ed; the
//     driver's clock is set an hour ahead to stand for that age;
//   - verified-workers=2: the same with two files converging at once.
//
// Besides wall time it reports the process's CPU time per pass
// (cpu-ns/op), which a busy machine changes less.
func BenchmarkNoopApplyFiles1000(b *testing.B) {
	never := func() time.Time { return time.Unix(0, 0) }
	later := func() time.Time { return time.Now().Add(time.Hour) }
	for _, c := range []struct {
		name    string
		workers int
		clock   func() time.Time
	}{
		{"read", 1, never},
		{"verified", 1, later},
		{"verified-workers=2", 2, later},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchNoop(b, "", b.TempDir(), c.workers, c.clock)
		})
	}
}

// BenchmarkNoopApplyFiles1000Root is the read pass under --root, which also
// checks every directory on the way for symlinks leading outside the root.
func BenchmarkNoopApplyFiles1000Root(b *testing.B) {
	benchNoop(b, b.TempDir(), "", 1, func() time.Time { return time.Unix(0, 0) })
}

// benchNoop converges 1,000 files under root, with paths prefixed by prefix,
// once to write them, then measures passes that find nothing to do.
func benchNoop(b *testing.B, root, prefix string, workers int, clock func() time.Time) {
	d := &spec.State{}
	for i := range 1000 {
		content := fmt.Sprintf("# managed by outpost\nkey%d = %s\n", i, "value value value value value value value value")
		r := fileRes(fmt.Sprintf("%s/etc/app%02d/conf%d.conf", prefix, i%20, i), content, mode(0o640))
		d.Resources = append(d.Resources, r)
	}
	drv := file.New(file.Options{Root: root})
	file.SetClock(drv, clock)
	e := converge.New(map[spec.Kind]converge.Driver{file.Kind: drv}, converge.Options{Workers: workers})
	ctx := context.Background()
	res, err := e.Converge(ctx, d, nil, true)
	if err != nil || len(res.Failed()) != 0 {
		b.Fatalf("first Converge() = %v, %v", res.Failed(), err)
	}
	inv := res.Inventory
	if n, _ := filepath.Glob(filepath.Join(root, prefix, "etc/*/*.conf")); len(n) != 1000 {
		b.Fatalf("%d files written, want 1000", len(n))
	}
	// One pass to read what the first one wrote.
	if _, err := e.Converge(ctx, d, inv, true); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		res, err := e.Converge(ctx, d, inv, true)
		if err != nil {
			b.Fatal(err)
		}
		if res.Changed() || len(res.Failed()) != 0 {
			b.Fatalf("no-op pass changed %v, failed %v", res.Items, res.Failed())
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the user and system time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
