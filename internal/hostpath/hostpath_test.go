package hostpath

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// listen makes a real unix socket at p, closed when the test ends.
func listen(t *testing.T, p string) {
	t.Helper()
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// result is what a test compares of a Bind: paths relative to the test's
// directory where they lie in it.
type result struct {
	Resolved   string
	Exists     bool
	Sockets    []string
	Kernel     []string
	Incomplete bool
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	mkdir(t, filepath.Join(dir, "data/sub/deeper"))
	if err := os.WriteFile(filepath.Join(dir, "data/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(dir, "run/engine"))
	listen(t, filepath.Join(dir, "run/engine/api.sock"))
	symlink(t, "run/engine/api.sock", filepath.Join(dir, "sock-link"))
	symlink(t, "data", filepath.Join(dir, "data-link"))
	symlink(t, filepath.Join(dir, "run"), filepath.Join(dir, "data/sub/to-run")) // not followed in a walk
	symlink(t, "missing", filepath.Join(dir, "dangling"))
	mkdir(t, filepath.Join(dir, "wide"))
	for i := range 20 {
		mkdir(t, filepath.Join(dir, "wide", strings.Repeat("d", i+1)))
	}
	mkdir(t, filepath.Join(dir, "deep/1/2/3/4"))
	listen(t, filepath.Join(dir, "deep/1/2/3/4/s"))
	mkdir(t, filepath.Join(dir, "mnt/proc"))
	if err := syscall.Mount("proc", filepath.Join(dir, "mnt/proc"), "proc", 0, ""); err != nil {
		t.Fatalf("mount proc: %v (the tests run as root)", err)
	}
	t.Cleanup(func() { syscall.Unmount(filepath.Join(dir, "mnt/proc"), syscall.MNT_DETACH) })

	for _, tc := range []struct {
		name   string
		source string // relative to dir unless absolute
		lim    Limits
		want   result
	}{
		{name: "plain directory", source: "data", want: result{Resolved: "data", Exists: true}},
		{name: "file", source: "data/file", want: result{Resolved: "data/file", Exists: true}},
		{name: "symlinked directory", source: "data-link/sub", want: result{Resolved: "data/sub", Exists: true}},
		{name: "unclean spelling", source: "data/../run/./engine//api.sock", want: result{Resolved: "run/engine/api.sock", Exists: true, Sockets: []string{"run/engine/api.sock"}}},
		{name: "socket", source: "run/engine/api.sock", want: result{Resolved: "run/engine/api.sock", Exists: true, Sockets: []string{"run/engine/api.sock"}}},
		{name: "symlink to a socket", source: "sock-link", want: result{Resolved: "run/engine/api.sock", Exists: true, Sockets: []string{"run/engine/api.sock"}}},
		{name: "directory holding a socket", source: "run", want: result{Resolved: "run", Exists: true, Sockets: []string{"run/engine/api.sock"}}},
		{name: "socket deep down", source: "deep", want: result{Resolved: "deep", Exists: true, Sockets: []string{"deep/1/2/3/4/s"}}},
		{name: "through /proc/self/root", source: "/proc/self/root" + dir + "/run/engine/api.sock", want: result{Resolved: "run/engine/api.sock", Exists: true, Sockets: []string{"run/engine/api.sock"}}},
		{name: "missing tail", source: "data/new/dir", want: result{Resolved: "data/new/dir"}},
		{name: "missing tail under a link", source: "data-link/new", want: result{Resolved: "data/new"}},
		{name: "proc mounted below", source: "mnt", want: result{Resolved: "mnt", Exists: true, Kernel: []string{"mnt/proc"}}},
		{name: "proc itself", source: "/proc/self", want: result{Resolved: "/proc/" + strconv.Itoa(os.Getpid()), Exists: true, Kernel: []string{"/proc/" + strconv.Itoa(os.Getpid())}}},
		{name: "new directory in sysfs", source: "/sys/kernel/outpost-test-never", want: result{Resolved: "/sys/kernel/outpost-test-never", Kernel: []string{"/sys/kernel"}}},
		{name: "entries bound", source: "wide", lim: Limits{Entries: 5, Depth: 8}, want: result{Resolved: "wide", Exists: true, Incomplete: true}},
		{name: "depth bound", source: "deep", lim: Limits{Entries: 100, Depth: 2}, want: result{Resolved: "deep", Exists: true, Incomplete: true}},
		{name: "within bounds", source: "deep", lim: Limits{Entries: 100, Depth: 4}, want: result{Resolved: "deep", Exists: true, Sockets: []string{"deep/1/2/3/4/s"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.source
			if !filepath.IsAbs(src) {
				src = filepath.Join(dir, src)
			}
			b, err := Inspect(src, tc.lim)
			if err != nil {
				t.Fatalf("Inspect(%s) error: %v", src, err)
			}
			rel := func(p string) string {
				if r, ok := strings.CutPrefix(p, dir+"/"); ok {
					return r
				}
				return p
			}
			got := result{Resolved: rel(b.Resolved), Exists: b.Exists, Incomplete: b.Incomplete}
			for _, s := range b.Sockets {
				got.Sockets = append(got.Sockets, rel(s.Path))
			}
			for _, k := range b.Kernel {
				got.Kernel = append(got.Kernel, rel(k.Path))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Inspect(%s) mismatch (-want +got):\n%s", src, d)
			}
		})
	}
}

// TestInspectSameSocket checks that a socket's ID is the same through a
// hard link, a symlink and /proc/self/root: the policy compares IDs.
func TestInspectSameSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "engine.sock")
	listen(t, sock)
	if err := os.Link(sock, filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	symlink(t, sock, filepath.Join(dir, "soft"))
	want, err := IDOf(sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "hard"), filepath.Join(dir, "soft"), "/proc/self/root" + sock} {
		b, err := Inspect(p, Limits{})
		if err != nil {
			t.Fatalf("Inspect(%s) error: %v", p, err)
		}
		if len(b.Sockets) != 1 || b.Sockets[0].ID != want {
			t.Errorf("Inspect(%s) sockets = %+v, want one with ID %+v", p, b.Sockets, want)
		}
	}
}

func TestInspectUnresolved(t *testing.T) {
	dir := t.TempDir()
	symlink(t, "missing", filepath.Join(dir, "dangling"))
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(dir, "dangling"),
		filepath.Join(dir, "dangling/below"),
		filepath.Join(dir, "file/below"),
	} {
		if b, err := Inspect(p, Limits{}); !errors.Is(err, ErrUnresolved) {
			t.Errorf("Inspect(%s) = %+v, %v; want ErrUnresolved", p, b, err)
		}
	}
	if _, err := Inspect("relative/path", Limits{}); err == nil {
		t.Errorf("Inspect(relative/path) = nil error, want one")
	}
}

// BenchmarkInspectFullWalk walks a directory of DefaultLimits.Entries
// entries: the cost of a bind at the walk's bound, on every pass.
func BenchmarkInspectFullWalk(b *testing.B) {
	dir := b.TempDir()
	for i := range DefaultLimits.Entries / 100 {
		sub := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for j := range 99 {
			if err := os.WriteFile(filepath.Join(sub, strconv.Itoa(j)), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		bind, err := Inspect(dir, Limits{})
		if err != nil || bind.Incomplete {
			b.Fatalf("Inspect = %+v, %v; want a complete walk", bind, err)
		}
	}
}
