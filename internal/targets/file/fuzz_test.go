package file

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzOpenParent walks arbitrary managed paths through a root that holds
// symlinks of every kind: absolute and relative, out of the root, back into
// it, dangling, looping. A walk either fails or opens a directory that is
// really beneath the root and is the path's parent with no symlink on the
// way; it never makes anything without create.
func FuzzOpenParent(f *testing.F) {
	base := f.TempDir()
	root := filepath.Join(base, "root")
	for _, d := range []string{"etc/app", "srv/real", "outside"} {
		dir := filepath.Join(root, d)
		if d == "outside" {
			dir = filepath.Join(base, d)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	links := map[string]string{
		"etc/out":      filepath.Join(base, "outside"),
		"etc/up":       "../..",
		"srv/in":       "real",
		"srv/abs":      filepath.Join(root, "srv/real"),
		"srv/dangling": "missing",
		"srv/loop":     "loop",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/file"), nil, 0o644); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/etc/app/a", "/etc/out/a", "/etc/up/etc/a", "/srv/in/a", "/srv/abs/a",
		"/srv/dangling/a", "/srv/loop/a", "/etc/file/a", "/a", "/etc/../a", "//a", "/etc/app/", "/" + strings.Repeat("x/", 200) + "a"} {
		f.Add(s)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	d := New(Options{Root: root})
	f.Fuzz(func(t *testing.T, name string) {
		fd, err := d.openParent(name, false)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		if !filepath.IsAbs(name) || filepath.Clean(name) != name {
			t.Fatalf("openParent(%q) accepted a path that is not absolute and clean", name)
		}
		got, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			t.Fatal(err)
		}
		exp := filepath.Join(realRoot, filepath.Dir(name))
		if got != exp {
			t.Fatalf("openParent(%q) opened %s, want %s", name, got, exp)
		}
		if cur, err := filepath.EvalSymlinks(exp); err != nil || cur != exp {
			t.Fatalf("openParent(%q) went through a symlink: %s resolves to %s (%v)", name, exp, cur, err)
		}
	})
}
