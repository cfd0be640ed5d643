package file_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

// The file driver is a converge.Driver and a converge.Watcher. The check lives
// here because a target must not import converge.
var (
	_ converge.Driver  = (*file.Driver)(nil)
	_ converge.Watcher = (*file.Driver)(nil)
)

const nobody = 65534 // nobody and nogroup on Debian

// node is what a test sees at one path.
type node struct {
	Type     string // file, dir, symlink
	Mode     fs.FileMode
	UID, GID int
	Content  string // file content or symlink target
}

// snapshot returns every path under root.
func snapshot(t *testing.T, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{Mode: fi.Mode(), UID: int(st.Uid), GID: int(st.Gid)}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Type = "symlink"
			n.Content, err = os.Readlink(p)
		case fi.IsDir():
			n.Type = "dir"
		default:
			n.Type = "file"
			var b []byte
			b, err = os.ReadFile(p)
			n.Content = string(b)
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = n
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileRes(path, content string, opts ...func(*file.File)) *spec.Resource {
	f := &file.File{Path: path, Content: []byte(content), Mode: 0o644}
	for _, o := range opts {
		o(f)
	}
	return &spec.Resource{ID: spec.ID{Kind: file.Kind, Name: path}, Prune: true, Object: f}
}

func mode(m fs.FileMode) func(*file.File) { return func(f *file.File) { f.Mode = m } }
func owner(o, g string) func(*file.File) {
	return func(f *file.File) { f.Owner, f.Group = o, g }
}
func absent(f *file.File) { f.Absent = true }

func forced(r *spec.Resource) *spec.Resource  { r.Force = true; return r }
func adopted(r *spec.Resource) *spec.Resource { r.Adopt = true; return r }

func write(t *testing.T, p, content string, m fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), m); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

// ours writes a file as Outpost did: marked with its managed name.
func ours(t *testing.T, root, name, content string, m fs.FileMode) {
	t.Helper()
	write(t, root+name, content, m)
	mark(t, root, name)
}

// mark marks the file at name under root as Outpost's, as only root can.
func mark(t *testing.T, root, name string) {
	t.Helper()
	if err := unix.Lsetxattr(root+name, "trusted.outpost.path", []byte(name), 0); err != nil {
		t.Fatalf("mark %s: %v", name, err)
	}
}

func chown(t *testing.T, p string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestCheckApply(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, root string)
		r       *spec.Resource
		want    spec.Change
		// after lists what must be under root after the apply (other
		// paths are not checked).
		after map[string]node
	}{
		{
			name: "create with parent directories",
			r:    fileRes("/etc/web/app.conf", "a=1\n", mode(0o640)),
			want: spec.Change{Action: spec.ActionCreate},
			after: map[string]node{
				"etc":              {Type: "dir", Mode: fs.ModeDir | 0o755},
				"etc/web":          {Type: "dir", Mode: fs.ModeDir | 0o755},
				"etc/web/app.conf": {Type: "file", Mode: 0o640, Content: "a=1\n"},
			},
		},
		{
			name:  "create empty",
			r:     fileRes("/etc/empty", ""),
			want:  spec.Change{Action: spec.ActionCreate},
			after: map[string]node{"etc/empty": {Type: "file", Mode: 0o644}},
		},
		{
			name:    "no-op",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "same", 0o644) },
			r:       fileRes("/etc/a", "same"),
			want:    spec.Change{Action: spec.ActionNone},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o644, Content: "same"}},
		},
		{
			name:    "content of the same size",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "abcd", 0o644) },
			r:       fileRes("/etc/a", "abce"),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"content"}},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o644, Content: "abce"}},
		},
		{
			name:    "content of another size",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "old", 0o644) },
			r:       fileRes("/etc/a", "newer"),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"content"}},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o644, Content: "newer"}},
		},
		{
			name: "large content",
			prepare: func(t *testing.T, root string) {
				ours(t, root, "/etc/big", string(make([]byte, 100<<10))+"x", 0o644)
			},
			r:     fileRes("/etc/big", string(make([]byte, 100<<10))+"y"),
			want:  spec.Change{Action: spec.ActionUpdate, Fields: []string{"content"}},
			after: map[string]node{"etc/big": {Type: "file", Mode: 0o644, Content: string(make([]byte, 100<<10)) + "y"}},
		},
		{
			name:    "mode",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "x", 0o644) },
			r:       fileRes("/etc/a", "x", mode(0o640)),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"mode 0644 -> 0640"}},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o640, Content: "x"}},
		},
		{
			name:    "default mode",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "x", 0o600) },
			r:       fileRes("/etc/a", "x", mode(0)),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"mode 0600 -> 0644"}},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o644, Content: "x"}},
		},
		{
			name:    "content and mode",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "x", 0o644) },
			r:       fileRes("/etc/a", "y", mode(0o600)),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"content", "mode 0644 -> 0600"}},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o600, Content: "y"}},
		},
		{
			name:  "create owned by name",
			r:     fileRes("/etc/a", "x", owner("nobody", "nogroup")),
			want:  spec.Change{Action: spec.ActionCreate},
			after: map[string]node{"etc/a": {Type: "file", Mode: 0o644, UID: nobody, GID: nobody, Content: "x"}},
		},
		{
			name:    "owner and group by name",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "x", 0o644) },
			r:       fileRes("/etc/a", "x", owner("nobody", "nogroup")),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"owner 0 -> 65534", "group 0 -> 65534"}},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o644, UID: nobody, GID: nobody, Content: "x"}},
		},
		{
			name: "owner back to root, group left alone",
			prepare: func(t *testing.T, root string) {
				ours(t, root, "/etc/a", "x", 0o644)
				chown(t, root+"/etc/a", nobody, nobody)
			},
			r:     fileRes("/etc/a", "x", owner("root", "")),
			want:  spec.Change{Action: spec.ActionUpdate, Fields: []string{"owner 65534 -> 0"}},
			after: map[string]node{"etc/a": {Type: "file", Mode: 0o644, UID: 0, GID: nobody, Content: "x"}},
		},
		{
			name:    "numeric owner",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "x", 0o644) },
			r:       fileRes("/etc/a", "x", owner("1234", "4321")),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"owner 0 -> 1234", "group 0 -> 4321"}},
			after:   map[string]node{"etc/a": {Type: "file", Mode: 0o644, UID: 1234, GID: 4321, Content: "x"}},
		},
		{
			name: "new content keeps an owner left alone",
			prepare: func(t *testing.T, root string) {
				ours(t, root, "/etc/a", "x", 0o644)
				chown(t, root+"/etc/a", nobody, nobody)
			},
			r:     fileRes("/etc/a", "y"),
			want:  spec.Change{Action: spec.ActionUpdate, Fields: []string{"content"}},
			after: map[string]node{"etc/a": {Type: "file", Mode: 0o644, UID: nobody, GID: nobody, Content: "y"}},
		},
		{
			name:    "setuid survives chown",
			prepare: func(t *testing.T, root string) { ours(t, root, "/bin/tool", "x", 0o755) },
			r:       fileRes("/bin/tool", "y", owner("nobody", "nogroup"), mode(fs.ModeSetuid|0o755)),
			want:    spec.Change{Action: spec.ActionUpdate, Fields: []string{"content", "mode 0755 -> 4755", "owner 0 -> 65534", "group 0 -> 65534"}},
			after:   map[string]node{"bin/tool": {Type: "file", Mode: fs.ModeSetuid | 0o755, UID: nobody, GID: nobody, Content: "y"}},
		},
		{
			name: "symlink at the path is replaced, its target untouched",
			prepare: func(t *testing.T, root string) {
				write(t, root+"/victim", "keep", 0o600)
				symlink(t, root+"/victim", root+"/etc/a")
			},
			r:    fileRes("/etc/a", "new"),
			want: spec.Change{Action: spec.ActionUpdate, Fields: []string{"symlink replaced"}},
			after: map[string]node{
				"etc/a":  {Type: "file", Mode: 0o644, Content: "new"},
				"victim": {Type: "file", Mode: 0o600, Content: "keep"},
			},
		},
		{
			name: "symlink to identical content is still replaced",
			prepare: func(t *testing.T, root string) {
				write(t, root+"/victim", "new", 0o644)
				symlink(t, "../victim", root+"/etc/a")
			},
			r:    fileRes("/etc/a", "new"),
			want: spec.Change{Action: spec.ActionUpdate, Fields: []string{"symlink replaced"}},
			after: map[string]node{
				"etc/a":  {Type: "file", Mode: 0o644, Content: "new"},
				"victim": {Type: "file", Mode: 0o644, Content: "new"},
			},
		},
		{
			name:    "absent removes the file",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "x", 0o644) },
			r:       fileRes("/etc/a", "", absent),
			want:    spec.Change{Action: spec.ActionDelete},
			after:   map[string]node{"etc": {Type: "dir", Mode: fs.ModeDir | 0o755}},
		},
		{
			name:    "absent under a file",
			prepare: func(t *testing.T, root string) { write(t, root+"/etc", "x", 0o644) },
			r:       fileRes("/etc/a", "", absent),
			want:    spec.Change{Action: spec.ActionNone},
			after:   map[string]node{"etc": {Type: "file", Mode: 0o644, Content: "x"}},
		},
		{
			name:  "absent and missing",
			r:     fileRes("/etc/a", "", absent),
			want:  spec.Change{Action: spec.ActionNone},
			after: map[string]node{},
		},
		{
			name: "absent with force removes a symlink, not its target",
			prepare: func(t *testing.T, root string) {
				write(t, root+"/victim", "keep", 0o600)
				symlink(t, root+"/victim", root+"/etc/a")
			},
			r:    forced(fileRes("/etc/a", "", absent)),
			want: spec.Change{Action: spec.ActionDelete},
			after: map[string]node{
				"etc":    {Type: "dir", Mode: fs.ModeDir | 0o755},
				"victim": {Type: "file", Mode: 0o600, Content: "keep"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.prepare != nil {
				tt.prepare(t, root)
			}
			d := file.New(file.Options{Root: root})
			ctx := context.Background()

			before := snapshot(t, root)
			got, err := d.CheckApply(ctx, tt.r, false)
			if err != nil {
				t.Fatalf("CheckApply(apply=false) error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, ignoreBefore); diff != "" {
				t.Errorf("CheckApply(apply=false) mismatch (-want +got):\n%s", diff)
			}
			checkBefore(t, got, before[strings.TrimPrefix(tt.r.ID.Name, "/")].Content)
			if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
				t.Errorf("CheckApply(apply=false) changed the filesystem (-before +after):\n%s", diff)
			}

			got, err = d.CheckApply(ctx, tt.r, true)
			if err != nil {
				t.Fatalf("CheckApply(apply=true) error = %v", err)
			}
			checkBefore(t, got, before[strings.TrimPrefix(tt.r.ID.Name, "/")].Content)
			if diff := cmp.Diff(tt.want, got, ignoreBefore); diff != "" {
				t.Errorf("CheckApply(apply=true) mismatch (-want +got):\n%s", diff)
			}
			after := snapshot(t, root)
			for p, want := range tt.after {
				if diff := cmp.Diff(want, after[p]); diff != "" {
					t.Errorf("after apply, %s mismatch (-want +got):\n%s", p, diff)
				}
			}
			if file.Of(tt.r).Absent {
				if _, ok := after[file.Of(tt.r).Path[1:]]; ok {
					t.Errorf("after apply, %s exists", file.Of(tt.r).Path)
				}
			}
			for p := range after {
				if filepath.Base(p) != "." && filepath.Base(p)[0] == '.' {
					t.Errorf("leftover temporary file %s", p)
				}
			}

			got, err = d.CheckApply(ctx, tt.r, true)
			if err != nil || got.Changed() {
				t.Errorf("CheckApply() after apply = %v, %v, want none", got, err)
			}
		})
	}
}

func TestCheckApplyErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, root, outside string)
		r       *spec.Resource
		is      error // nil: any error
	}{
		{
			name: "directory at the path",
			prepare: func(t *testing.T, root, _ string) {
				if err := os.MkdirAll(root+"/etc/a", 0o755); err != nil {
					t.Fatal(err)
				}
			},
			r:  fileRes("/etc/a", "x"),
			is: file.ErrNotFile,
		},
		{
			name: "directory at an absent path",
			prepare: func(t *testing.T, root, _ string) {
				if err := os.MkdirAll(root+"/etc/a", 0o755); err != nil {
					t.Fatal(err)
				}
			},
			r:  fileRes("/etc/a", "", absent),
			is: file.ErrNotFile,
		},
		{
			name:    "symlinked parent leading outside the root",
			prepare: func(t *testing.T, root, outside string) { symlink(t, outside, root+"/etc") },
			r:       fileRes("/etc/a", "x"),
			is:      file.ErrSymlink,
		},
		{
			name:    "relative symlinked parent leading outside the root",
			prepare: func(t *testing.T, root, outside string) { symlink(t, "../../"+filepath.Base(outside), root+"/etc/sub") },
			r:       fileRes("/etc/sub/a", "x"),
			is:      file.ErrSymlink,
		},
		{
			name:    "dangling symlinked parent",
			prepare: func(t *testing.T, root, outside string) { symlink(t, outside+"/missing", root+"/etc") },
			r:       fileRes("/etc/a", "x"),
			is:      file.ErrSymlink,
		},
		{
			name: "symlinked parent inside the root",
			prepare: func(t *testing.T, root, _ string) {
				if err := os.MkdirAll(root+"/real", 0o755); err != nil {
					t.Fatal(err)
				}
				symlink(t, "../real", root+"/etc/link")
			},
			r:  fileRes("/etc/link/a", "x"),
			is: file.ErrSymlink,
		},
		{
			name:    "a file Outpost did not create, with the same content",
			prepare: func(t *testing.T, root, _ string) { write(t, root+"/etc/fstab", "x", 0o644) },
			r:       fileRes("/etc/fstab", "x"),
			is:      file.ErrConflict,
		},
		{
			name:    "a file Outpost did not create, other content",
			prepare: func(t *testing.T, root, _ string) { write(t, root+"/etc/fstab", "host's", 0o600) },
			r:       fileRes("/etc/fstab", "x", owner("0", "0")),
			is:      file.ErrConflict,
		},
		{
			name: "a file marked for another path",
			prepare: func(t *testing.T, root, _ string) {
				ours(t, root, "/etc/b", "x", 0o644)
				if err := os.Link(root+"/etc/b", root+"/etc/a"); err != nil {
					t.Fatal(err)
				}
			},
			r:  fileRes("/etc/a", "y"),
			is: file.ErrConflict,
		},
		{
			name:    "absent without force leaves a file Outpost did not create",
			prepare: func(t *testing.T, root, _ string) { write(t, root+"/etc/a", "x", 0o644) },
			r:       fileRes("/etc/a", "", absent),
			is:      file.ErrConflict,
		},
		{
			name: "absent without force leaves a symlink",
			prepare: func(t *testing.T, root, outside string) {
				symlink(t, outside, root+"/etc/a")
			},
			r:  fileRes("/etc/a", "", absent),
			is: file.ErrConflict,
		},
		{
			name:    "adopt without a state directory",
			prepare: func(t *testing.T, root, _ string) { write(t, root+"/etc/a", "x", 0o644) },
			r:       adopted(fileRes("/etc/a", "y")),
		},
		{
			name:    "a file where a directory should be",
			prepare: func(t *testing.T, root, _ string) { write(t, root+"/etc", "x", 0o644) },
			r:       fileRes("/etc/a", "x"),
		},
		{
			name: "unknown owner",
			r:    fileRes("/etc/a", "x", owner("no-such-user-outpost", "")),
		},
		{
			name: "unknown group",
			r:    fileRes("/etc/a", "x", owner("", "no-such-group-outpost")),
		},
		{
			name: "numeric owner out of range",
			r:    fileRes("/etc/a", "x", owner("4294967295", "")),
		},
		{
			name: "numeric group that would wrap",
			r:    fileRes("/etc/a", "x", owner("", "99999999999")),
		},
		{
			name: "relative path",
			r:    fileRes("etc/a", "x"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root, outside := filepath.Join(base, "a", "root"), filepath.Join(base, "outside")
			for _, d := range []string{root, outside} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.prepare != nil {
				tt.prepare(t, root, outside)
			}
			before := snapshot(t, base)
			d := file.New(file.Options{Root: root})
			for _, apply := range []bool{false, true} {
				got, err := d.CheckApply(context.Background(), tt.r, apply)
				if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
					t.Errorf("CheckApply(apply=%v) = %v, %v, want an error matching %v", apply, got, err, tt.is)
				}
			}
			if diff := cmp.Diff(before, snapshot(t, base)); diff != "" {
				t.Errorf("a failed CheckApply changed the filesystem (-before +after):\n%s", diff)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, root string)
		want    spec.Change
		gone    bool // etc/a must be gone after apply
	}{
		{
			name:    "regular file",
			prepare: func(t *testing.T, root string) { ours(t, root, "/etc/a", "x", 0o644) },
			want:    spec.Change{Action: spec.ActionDelete},
			gone:    true,
		},
		{
			name: "missing",
			want: spec.Change{Action: spec.ActionNone},
			gone: true,
		},
		{
			name: "symlink put there since is left alone",
			prepare: func(t *testing.T, root string) {
				write(t, root+"/victim", "keep", 0o644)
				symlink(t, root+"/victim", root+"/etc/a")
			},
			want: spec.Change{Action: spec.ActionNone},
		},
		{
			name: "a file where its directory was",
			prepare: func(t *testing.T, root string) {
				if err := os.RemoveAll(root + "/etc"); err != nil {
					t.Fatal(err)
				}
				write(t, root+"/etc", "not a directory", 0o644)
			},
			want: spec.Change{Action: spec.ActionNone},
			gone: true,
		},
		{
			name:    "a file Outpost did not create is left alone",
			prepare: func(t *testing.T, root string) { write(t, root+"/etc/a", "host's", 0o644) },
			want:    spec.Change{Action: spec.ActionNone},
		},
		{
			name: "directory is left alone",
			prepare: func(t *testing.T, root string) {
				write(t, root+"/etc/a/inside", "keep", 0o644)
			},
			want: spec.Change{Action: spec.ActionNone},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root+"/etc/unowned", "keep", 0o644)
			if tt.prepare != nil {
				tt.prepare(t, root)
			}
			d := file.New(file.Options{Root: root})
			id := spec.ID{Kind: file.Kind, Name: "/etc/a"}
			before := snapshot(t, root)
			got, err := d.Remove(context.Background(), id, false)
			if err != nil {
				t.Fatalf("Remove(apply=false) error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Remove(apply=false) mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
				t.Errorf("Remove(apply=false) changed the filesystem (-before +after):\n%s", diff)
			}
			got, err = d.Remove(context.Background(), id, true)
			if err != nil {
				t.Fatalf("Remove(apply=true) error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Remove(apply=true) mismatch (-want +got):\n%s", diff)
			}
			after := snapshot(t, root)
			if _, ok := after["etc/a"]; ok == tt.gone {
				t.Errorf("after Remove(), etc/a exists = %v, want %v", ok, !tt.gone)
			}
			delete(before, "etc/a")
			delete(after, "etc/a")
			if tt.gone {
				delete(before, "etc")
				delete(after, "etc")
			}
			for p, n := range before {
				if diff := cmp.Diff(n, after[p]); diff != "" && filepath.Dir(p) != "." {
					t.Errorf("Remove() changed %s (-before +after):\n%s", p, diff)
				}
			}
		})
	}
}

// ignoreBefore leaves the content found out of a comparison of changes;
// checkBefore checks it.
var ignoreBefore = cmpopts.IgnoreFields(spec.Change{}, "Before")

// checkBefore checks that a content change carries the content that was
// on the host, old, for its diff, and that no other change reads it.
func checkBefore(t *testing.T, ch spec.Change, old string) {
	t.Helper()
	if !slices.Contains(ch.Fields, "content") {
		if ch.Before != nil {
			t.Errorf("CheckApply() = %v with Before set, for no content change", ch)
		}
		return
	}
	switch {
	case ch.Before == nil:
		t.Errorf("CheckApply() = %v without Before", ch)
	case ch.Before.Size != int64(len(old)):
		t.Errorf("Before.Size = %d, want %d", ch.Before.Size, len(old))
	case ch.Before.Content != nil && string(ch.Before.Content) != old:
		t.Errorf("Before.Content = %q, want %q", ch.Before.Content, old)
	case ch.Before.Content == nil && ch.Before.Sum == "":
		t.Errorf("Before holds neither content nor hash: %+v", ch.Before)
	}
}

func TestRootPrefix(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "sandbox")
	d := file.New(file.Options{Root: root})
	if got, want := d.Path("/etc/motd"), filepath.Join(root, "etc", "motd"); got != want {
		t.Errorf("Path(/etc/motd) = %s, want %s", got, want)
	}
	if _, err := d.CheckApply(context.Background(), fileRes("/etc/motd", "hi"), true); err != nil {
		t.Fatalf("CheckApply() error = %v", err)
	}
	want := map[string]node{
		"sandbox":          {Type: "dir", Mode: fs.ModeDir | 0o755},
		"sandbox/etc":      {Type: "dir", Mode: fs.ModeDir | 0o755},
		"sandbox/etc/motd": {Type: "file", Mode: 0o644, Content: "hi"},
	}
	got := snapshot(t, base)
	delete(got, ".")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files under the base mismatch (-want +got):\n%s", diff)
	}

	// No root: the path is used as it is.
	abs := filepath.Join(base, "direct")
	if _, err := file.New(file.Options{}).CheckApply(context.Background(), fileRes(abs, "x"), true); err != nil {
		t.Fatalf("CheckApply() without a root error = %v", err)
	}
	if b, err := os.ReadFile(abs); err != nil || string(b) != "x" {
		t.Errorf("without a root, %s = %q, %v, want \"x\"", abs, b, err)
	}
}

func TestRelativeRoot(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	if err := os.MkdirAll("sandbox/real", 0o755); err != nil {
		t.Fatal(err)
	}
	// An absolute symlink into the root, under a root given as a relative
	// path: refused, and the error names the real path.
	symlink(t, filepath.Join(base, "sandbox/real"), "sandbox/etc")
	d := file.New(file.Options{Root: "sandbox"})
	_, err := d.CheckApply(context.Background(), fileRes("/etc/a", "x"), true)
	if !errors.Is(err, file.ErrSymlink) || !strings.Contains(err.Error(), "use /real/a") {
		t.Fatalf("CheckApply() through a symlink under a relative root = %v, want ErrSymlink suggesting /real/a", err)
	}
	if _, err := d.CheckApply(context.Background(), fileRes("/real/a", "x"), true); err != nil {
		t.Fatalf("CheckApply() under a relative root = %v, want nil", err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "sandbox/real/a")); err != nil || string(b) != "x" {
		t.Errorf("sandbox/real/a = %q, %v, want \"x\"", b, err)
	}
}
