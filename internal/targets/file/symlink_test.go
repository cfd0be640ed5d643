package file_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

// hostile is a host where a local user owns /srv/app, and /etc (the
// "outside") holds what they must not reach. With a root, both are under
// it; without one, both are absolute directories of the test.
type hostile struct {
	root    string // --root, or "" for the host's /
	base    string // where managed names start on the real filesystem
	app     string // managed name of the user's directory
	outside string // real path of the directory the user points at
}

func newHostile(t *testing.T, withRoot bool) hostile {
	t.Helper()
	tmp := t.TempDir()
	// The user must reach their directory.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := hostile{outside: filepath.Join(tmp, "etc")}
	if withRoot {
		h.root = filepath.Join(tmp, "root")
		h.base = h.root
		h.app = "/srv/app"
	} else {
		h.app = filepath.Join(tmp, "srv/app")
	}
	for _, d := range []string{h.outside, h.base + h.app} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, h.outside+"/passwd", "root:x:0:0\n", 0o644)
	write(t, h.outside+"/tool", "#!/bin/sh\n", 0o755)
	chown(t, h.base+h.app, nobody, nobody)
	return h
}

func (h hostile) driver(t *testing.T) *file.Driver {
	return file.New(file.Options{Root: h.root, StateDir: t.TempDir()})
}

// swap replaces the directory dir of the user's with a symlink to target,
// as the user could.
func swap(t *testing.T, dir, target string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	symlink(t, target, dir)
}

// TestSymlinkedParents runs each attack of a user who owns a directory on a
// managed path, with and without a root: the operation is refused with
// ErrSymlink, and nothing outside changes.
func TestSymlinkedParents(t *testing.T) {
	tests := []struct {
		name string
		// before runs as Outpost, before the user's swap.
		before func(t *testing.T, d *file.Driver, h hostile)
		// swap is the user's: which directory becomes a link to outside.
		swap string
		do   func(ctx context.Context, d *file.Driver, h hostile) (spec.Change, error)
	}{
		{
			name: "write through a symlinked parent",
			swap: "/logs",
			do: func(ctx context.Context, d *file.Driver, h hostile) (spec.Change, error) {
				return d.CheckApply(ctx, fileRes(h.app+"/logs/evil", "* * * * * root sh\n"), true)
			},
		},
		{
			name: "write replacing a file of the same name outside",
			swap: "/conf",
			do: func(ctx context.Context, d *file.Driver, h hostile) (spec.Change, error) {
				return d.CheckApply(ctx, adopted(fileRes(h.app+"/conf/passwd", "evil::0:0\n")), true)
			},
		},
		{
			name: "prune through a parent replaced by a symlink",
			before: func(t *testing.T, d *file.Driver, h hostile) {
				if _, err := d.CheckApply(context.Background(), fileRes(h.app+"/conf/passwd", "app\n"), true); err != nil {
					t.Fatal(err)
				}
			},
			swap: "/conf",
			do: func(ctx context.Context, d *file.Driver, h hostile) (spec.Change, error) {
				return d.Remove(ctx, spec.ID{Kind: file.Kind, Name: h.app + "/conf/passwd"}, true)
			},
		},
		{
			name: "absent with force through a symlinked parent",
			swap: "/conf",
			do: func(ctx context.Context, d *file.Driver, h hostile) (spec.Change, error) {
				return d.CheckApply(ctx, forced(fileRes(h.app+"/conf/passwd", "", absent)), true)
			},
		},
		{
			name: "setuid and chown through a symlinked parent",
			before: func(t *testing.T, d *file.Driver, h hostile) {
				if _, err := d.CheckApply(context.Background(), fileRes(h.app+"/bin/tool", "#!/bin/sh\n", mode(0o755)), true); err != nil {
					t.Fatal(err)
				}
			},
			swap: "/bin",
			do: func(ctx context.Context, d *file.Driver, h hostile) (spec.Change, error) {
				return d.CheckApply(ctx, fileRes(h.app+"/bin/tool", "#!/bin/sh\n", mode(0o4755), owner("0", "0")), true)
			},
		},
		{
			name: "the whole user directory replaced by a symlink",
			swap: "",
			do: func(ctx context.Context, d *file.Driver, h hostile) (spec.Change, error) {
				return d.CheckApply(ctx, fileRes(h.app+"/passwd", "evil\n"), true)
			},
		},
	}
	for _, withRoot := range []bool{true, false} {
		for _, tt := range tests {
			t.Run(tt.name+map[bool]string{true: " under a root", false: " without a root"}[withRoot], func(t *testing.T) {
				h := newHostile(t, withRoot)
				d := h.driver(t)
				if tt.before != nil {
					tt.before(t, d, h)
				}
				swap(t, h.base+h.app+tt.swap, h.outside)
				before := snapshot(t, h.outside)
				for _, prepared := range []bool{false, true} {
					if prepared {
						// Also with the pass's cache of parents.
						d.Prepare(context.Background(), nil, true)
					}
					got, err := tt.do(context.Background(), d, h)
					if !errors.Is(err, file.ErrSymlink) {
						t.Errorf("= %v, %v; want an error matching ErrSymlink", got, err)
					}
				}
				if diff := cmp.Diff(before, snapshot(t, h.outside)); diff != "" {
					t.Errorf("the directory outside changed (-before +after):\n%s", diff)
				}
			})
		}
	}
}

// TestSymlinkErrorNamesTheRealPath checks that a symlinked directory such as
// /var/run -> /run is reported with the path to write instead.
func TestSymlinkErrorNamesTheRealPath(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/run", 0o755); err != nil {
		t.Fatal(err)
	}
	symlink(t, "../run", root+"/var/run")
	d := file.New(file.Options{Root: root})
	_, err := d.CheckApply(context.Background(), fileRes("/var/run/x/y.conf", "x"), true)
	if !errors.Is(err, file.ErrSymlink) || !strings.Contains(err.Error(), "/var/run is a symlink") || !strings.Contains(err.Error(), "use /run/x/y.conf") {
		t.Errorf("CheckApply() = %v, want ErrSymlink naming /var/run and suggesting /run/x/y.conf", err)
	}
	if _, err := os.Stat(root + "/run/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a directory was made through the symlink: %v", err)
	}
}

// TestRaceWithUnprivilegedUser runs a process as nobody that keeps swapping
// its directory for a symlink to the outside, while the driver writes,
// re-moded and prunes files in that directory in a loop. Whatever the
// interleaving, nothing outside may change.
func TestRaceWithUnprivilegedUser(t *testing.T) {
	for _, withRoot := range []bool{true, false} {
		t.Run(map[bool]string{true: "under a root", false: "without a root"}[withRoot], func(t *testing.T) {
			h := newHostile(t, withRoot)
			dir := h.base + h.app
			write(t, h.outside+"/evil", "the host's\n", 0o644)
			before := snapshot(t, h.outside)
			// The user's loop: conf is a directory, then a link to
			// the outside, then a directory again.
			script := `cd "$1" || exit 1
while :; do
	rm -rf conf 2>/dev/null
	ln -s "$2" conf 2>/dev/null
	ln -s "$2" conf/evil 2>/dev/null
	rm -f conf
	mkdir conf 2>/dev/null
done`
			cmd := exec.Command("sh", "-c", script, "racer", dir, h.outside)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			if err := cmd.Start(); err != nil {
				t.Fatalf("start the racing user: %v", err)
			}
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					cmd.Process.Kill()
					cmd.Wait()
				}
			}
			defer stop()
			d := h.driver(t)
			ctx := context.Background()
			id := spec.ID{Kind: file.Kind, Name: h.app + "/conf/evil"}
			var refused, done int
			// Until the user's swaps were met often enough: the loop
			// is bounded by a count, not a time.
			for i := 0; i < 200000 && (i < 400 || refused < 50); i++ {
				d.Prepare(ctx, nil, true)
				_, err := d.CheckApply(ctx, fileRes(id.Name, "evil "+string(rune('a'+i%26))+"\n", mode(0o644|fs.ModeSetuid), owner("0", "0")), true)
				if errors.Is(err, file.ErrSymlink) {
					refused++
				} else if err == nil {
					done++
				}
				_, err = d.Remove(ctx, id, true)
				if errors.Is(err, file.ErrSymlink) {
					refused++
				}
			}
			stop()
			d.Close()
			t.Logf("%d operations refused on a symlink, %d writes done", refused, done)
			if refused == 0 {
				t.Errorf("no operation met the symlink: the race did not run")
			}
			if diff := cmp.Diff(before, snapshot(t, h.outside)); diff != "" {
				t.Errorf("the directory outside changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestAdopt takes over a file that Outpost did not create, and prune puts
// the original back as it was: content, mode, owner, and without the mark.
func TestAdopt(t *testing.T) {
	root, stateDir := t.TempDir(), t.TempDir()
	write(t, root+"/etc/fstab", "host's fstab\n", 0o640)
	chown(t, root+"/etc/fstab", 0, nobody)
	d := file.New(file.Options{Root: root, StateDir: stateDir})
	ctx := context.Background()
	r := adopted(fileRes("/etc/fstab", "managed\n", mode(0o644)))

	got, err := d.CheckApply(ctx, r, false)
	want := spec.Change{Action: spec.ActionUpdate, Fields: []string{"adopted", "content", "mode 0640 -> 0644"},
		Before: &spec.Before{Content: []byte("host's fstab\n"), Size: 13}}
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("CheckApply(adopt, dry run) = %v, %v, want %v", got, err, want)
	}
	if b, _ := os.ReadFile(root + "/etc/fstab"); string(b) != "host's fstab\n" {
		t.Fatalf("a dry run changed the file: %q", b)
	}
	if got, err := d.CheckApply(ctx, r, true); err != nil || !cmp.Equal(got, want) {
		t.Fatalf("CheckApply(adopt) = %v, %v, want %v", got, err, want)
	}
	if b, _ := os.ReadFile(root + "/etc/fstab"); string(b) != "managed\n" {
		t.Errorf("adopted file = %q, want the managed content", b)
	}
	kept := keptFiles(t, stateDir)
	if len(kept) != 1 || kept[0].Mode().Perm() != 0o600 {
		t.Fatalf("kept originals = %v, want one file, 0600", kept)
	}
	// Owned from now on: no change, and no conflict once adopt is gone.
	if got, err := d.CheckApply(ctx, fileRes("/etc/fstab", "managed\n", mode(0o644)), true); err != nil || got.Changed() {
		t.Errorf("CheckApply() after adoption = %v, %v, want no change", got, err)
	}

	id := spec.ID{Kind: file.Kind, Name: "/etc/fstab"}
	if got, err := d.Remove(ctx, id, true); err != nil || got.Action != spec.ActionUpdate {
		t.Fatalf("Remove() = %v, %v, want the original restored", got, err)
	}
	after := snapshot(t, root)["etc/fstab"]
	if diff := cmp.Diff(node{Type: "file", Mode: 0o640, UID: 0, GID: nobody, Content: "host's fstab\n"}, after); diff != "" {
		t.Errorf("restored original (-want +got):\n%s", diff)
	}
	if _, err := unix.Lgetxattr(root+"/etc/fstab", "trusted.outpost.path", make([]byte, 64)); err != unix.ENODATA {
		t.Errorf("the restored original carries Outpost's mark (err %v)", err)
	}
	if kept := keptFiles(t, stateDir); len(kept) != 0 {
		t.Errorf("kept originals after the restore = %v, want none", kept)
	}
	// Back to the host's: a new resource for it is a conflict again.
	if _, err := d.CheckApply(ctx, fileRes("/etc/fstab", "x"), true); !errors.Is(err, file.ErrConflict) {
		t.Errorf("CheckApply() of the restored original = %v, want ErrConflict", err)
	}
}

func keptFiles(t *testing.T, stateDir string) []fs.FileInfo {
	t.Helper()
	var out []fs.FileInfo
	err := filepath.WalkDir(stateDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || !strings.Contains(p, "adopted") {
			return err
		}
		fi, err := de.Info()
		out = append(out, fi)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAbsentForce removes a file that Outpost did not create only with
// force: true.
func TestAbsentForce(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/etc/a", "host's", 0o644)
	d := file.New(file.Options{Root: root})
	ctx := context.Background()
	if _, err := d.CheckApply(ctx, fileRes("/etc/a", "", absent), true); !errors.Is(err, file.ErrConflict) {
		t.Fatalf("absent without force = %v, want ErrConflict", err)
	}
	if _, err := os.Stat(root + "/etc/a"); err != nil {
		t.Fatalf("absent without force removed the file: %v", err)
	}
	if got, err := d.CheckApply(ctx, forced(fileRes("/etc/a", "", absent)), true); err != nil || got.Action != spec.ActionDelete {
		t.Fatalf("absent with force = %v, %v, want delete", got, err)
	}
	if _, err := os.Stat(root + "/etc/a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent with force left the file: %v", err)
	}
}

// TestOwnedAfterCrash creates a file through the driver and then forgets
// everything, as an agent killed before it saved its state: the next agent
// still owns the file, converges it and prunes it.
func TestOwnedAfterCrash(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	r := fileRes("/etc/app.conf", "v1")
	if got, err := file.New(file.Options{Root: root}).CheckApply(ctx, r, true); err != nil || got.Action != spec.ActionCreate {
		t.Fatalf("create = %v, %v", got, err)
	}
	d := file.New(file.Options{Root: root})
	if got, err := d.CheckApply(ctx, r, true); err != nil || got.Changed() {
		t.Errorf("next agent's CheckApply() = %v, %v, want no change and no conflict", got, err)
	}
	if got, err := d.CheckApply(ctx, fileRes("/etc/app.conf", "v2"), true); err != nil || got.Action != spec.ActionUpdate {
		t.Errorf("next agent's update = %v, %v, want update", got, err)
	}
	if got, err := d.Remove(ctx, r.ID, true); err != nil || got.Action != spec.ActionDelete {
		t.Errorf("next agent's Remove() = %v, %v, want delete", got, err)
	}
}

// TestLongName writes a file whose name is 250 bytes, legal on Linux.
func TestLongName(t *testing.T) {
	root := t.TempDir()
	name := "/etc/" + strings.Repeat("n", 250)
	d := file.New(file.Options{Root: root})
	for _, content := range []string{"one", "two"} {
		if _, err := d.CheckApply(context.Background(), fileRes(name, content), true); err != nil {
			t.Fatalf("CheckApply() of a 250-byte name: %v", err)
		}
		if b, err := os.ReadFile(root + name); err != nil || string(b) != content {
			t.Errorf("content = %q, %v, want %q", b, err, content)
		}
	}
}

// TestMarkWithoutXattrs converges files on ramfs, which takes no extended
// attributes: the mark is then a record in the state directory, and a file
// created there is still Outpost's for the next agent, while a file that
// was there before is not.
func TestMarkWithoutXattrs(t *testing.T) {
	root, stateDir := t.TempDir(), t.TempDir()
	if err := unix.Mount("ramfs", root, "ramfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount ramfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	if err := unix.Setxattr(root, "trusted.outpost.probe", []byte("x"), 0); err != unix.ENOTSUP {
		t.Fatalf("setxattr on ramfs = %v, want ENOTSUP: the test needs a filesystem without xattrs", err)
	}
	write(t, root+"/etc/host.conf", "host's", 0o644)
	ctx := context.Background()
	r := fileRes("/etc/app.conf", "v1")
	if got, err := file.New(file.Options{Root: root, StateDir: stateDir}).CheckApply(ctx, r, true); err != nil || got.Action != spec.ActionCreate {
		t.Fatalf("create = %v, %v", got, err)
	}
	d := file.New(file.Options{Root: root, StateDir: stateDir})
	if got, err := d.CheckApply(ctx, r, true); err != nil || got.Changed() {
		t.Errorf("next agent's CheckApply() = %v, %v, want no change", got, err)
	}
	if _, err := d.CheckApply(ctx, fileRes("/etc/host.conf", "host's"), true); !errors.Is(err, file.ErrConflict) {
		t.Errorf("CheckApply() of a file there before = %v, want ErrConflict", err)
	}
	// A file put in place of Outpost's, with another inode, is not
	// Outpost's.
	write(t, root+"/etc/app.new", "v1", 0o644)
	if err := os.Rename(root+"/etc/app.new", root+"/etc/app.conf"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CheckApply(ctx, r, true); !errors.Is(err, file.ErrConflict) {
		t.Errorf("CheckApply() of a file renamed over Outpost's = %v, want ErrConflict", err)
	}
	if got, err := d.Remove(ctx, r.ID, true); err != nil || got.Changed() {
		t.Errorf("Remove() of a file renamed over Outpost's = %v, %v, want it left alone", got, err)
	}
	if _, err := os.Stat(root + "/etc/app.conf"); err != nil {
		t.Errorf("the file renamed over Outpost's was removed: %v", err)
	}
}

// TestRecordedWithoutMark checks the files that the state records as
// Outpost's but that carry no mark: written by a version that set none, or
// replaced by rename since. They are rewritten, which marks them again, and
// their attributes are never fixed through them; a file the state does not
// record stays a conflict.
func TestRecordedWithoutMark(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		recorded bool
		res      *spec.Resource
		want     []string // the change's fields; nil for a conflict
	}{
		{"same content", true, fileRes("/etc/app.conf", "v1", mode(0o644)), []string{"mark"}},
		{"other content", true, fileRes("/etc/app.conf", "v2", mode(0o644)), []string{"mark", "content"}},
		{"mode only", true, fileRes("/etc/app.conf", "v1", mode(0o600)), []string{"mark", "mode 0644 -> 0600"}},
		{"not recorded", false, fileRes("/etc/app.conf", "v1", mode(0o644)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root+"/etc/app.conf", "v1", 0o644)
			before, err := os.Stat(root + "/etc/app.conf")
			if err != nil {
				t.Fatal(err)
			}
			d := file.New(file.Options{Root: root, Recorded: func(name string) bool { return tt.recorded && name == "/etc/app.conf" }})
			got, err := d.CheckApply(ctx, tt.res, true)
			if tt.want == nil {
				if !errors.Is(err, file.ErrConflict) {
					t.Fatalf("CheckApply() = %v, %v, want a conflict", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Fields); diff != "" {
				t.Errorf("CheckApply() fields (-want +got):\n%s", diff)
			}
			after, err := os.Stat(root + "/etc/app.conf")
			if err != nil {
				t.Fatal(err)
			}
			if os.SameFile(before, after) {
				t.Error("the file was fixed in place; want it rewritten by rename")
			}
			// Marked now: a driver with no record owns it.
			fresh := file.New(file.Options{Root: root})
			if got, err := fresh.CheckApply(ctx, tt.res, false); err != nil || got.Changed() {
				t.Errorf("after the rewrite, CheckApply() = %v, %v, want no change", got, err)
			}
		})
	}
}
