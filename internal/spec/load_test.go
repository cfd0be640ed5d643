package spec_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	. "github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

func TestLoadRenderSmall(t *testing.T) {
	fsys := fstest.MapFS{
		"fleet.yaml": {Data: []byte("targets:\n  - path: common\n  - path: gw\n    selector: {labels: {role: gateway}}\n")},
		"common/files.yaml": {Data: []byte(`kind: file
path: /etc/motd
content: "hello {{ .Host.Name }}"
template: true
`)},
		"gw/web.yaml": {Data: []byte(`kind: container
name: web
image: registry.example.com/web
tag: "1.0"
restart_on: ["file:/etc/motd"]
`)},
	}
	repo, err := Load(fsys, Options{})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	tests := []struct {
		host Host
		want []string
	}{
		{Host{Name: "a"}, []string{"file:/etc/motd"}},
		{Host{Name: "b", Labels: map[string]string{"role": "gateway"}}, []string{"file:/etc/motd", "container:web"}},
	}
	for _, tt := range tests {
		t.Run(tt.host.Name, func(t *testing.T) {
			st, err := repo.Render(tt.host)
			if err != nil {
				t.Fatalf("Render(%v) = %v", tt.host, err)
			}
			var got []string
			for _, r := range st.Resources {
				got = append(got, r.ID.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Render(%v) IDs (-want +got):\n%s", tt.host, diff)
			}
			if c := string(file.Of(st.Resources[0]).Content); c != "hello "+tt.host.Name {
				t.Errorf("Render(%v) content = %q, want %q", tt.host, c, "hello "+tt.host.Name)
			}
		})
	}
}

func TestLoadInvalidIsErrors(t *testing.T) {
	fsys := fstest.MapFS{"a.yaml": {Data: []byte("kind: file\npath: etc/x\ncontent: x\n")}}
	_, err := Load(fsys, Options{})
	var es Errors
	if !errors.As(err, &es) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load() = %v, want Errors matching ErrInvalid", err)
	}
	want := `a.yaml:2:7: path: "etc/x" must be an absolute path`
	if got := es.Error(); got != want {
		t.Errorf("Load() = %q, want %q", got, want)
	}
}

// TestRenderIsolated checks that a rendered state is the caller's: changing
// it changes neither the Repo nor the next Render.
func TestRenderIsolated(t *testing.T) {
	fsys := fstest.MapFS{
		"a.yaml": {Data: []byte(`kind: file
path: /etc/a
content: a
---
kind: container
name: web
image: web
tag: "1"
env: {A: "1"}
command: [x]
update: null
`)},
	}
	_, err := Load(fsys, Options{})
	if err == nil {
		t.Fatalf("Load() with update: null = nil, want an error")
	}
	fsys["a.yaml"].Data = []byte(strings.Replace(string(fsys["a.yaml"].Data), "update: null\n", "", 1))
	repo, err := Load(fsys, Options{})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	first, err := repo.Render(Host{Name: "h"})
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	file.Of(first.Resources[0]).Content[0] = 'X'
	docker.Of(first.Resources[1]).Env["A"] = "changed"
	docker.Of(first.Resources[1]).Command[0] = "changed"
	second, err := repo.Render(Host{Name: "h"})
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	if got := string(file.Of(second.Resources[0]).Content); got != "a" {
		t.Errorf("second Render() content = %q, want %q", got, "a")
	}
	if got := docker.Of(second.Resources[1]).Env["A"]; got != "1" {
		t.Errorf("second Render() env A = %q, want %q", got, "1")
	}
	if got := docker.Of(second.Resources[1]).Command[0]; got != "x" {
		t.Errorf("second Render() command = %q, want %q", got, "x")
	}
}

// TestOptionsMaxFileSize checks that a smaller limit applies to sources,
// contents and template output.
func TestOptionsMaxFileSize(t *testing.T) {
	fsys := fstest.MapFS{
		"a.yaml": {Data: []byte("kind: file\npath: /etc/a\nsource: big\n---\nkind: file\npath: /etc/b\ncontent: \"0123456789\"\n---\nkind: file\npath: /etc/c\ncontent: '{{ printf \"%40d\" 1 }}'\ntemplate: true\n")},
		"big":    {Data: make([]byte, 31)},
	}
	_, err := Load(fsys, Options{MaxFileSize: 30})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Load() = %v, want Errors", err)
	}
	want := "a.yaml:3:9: source: big is larger than 30 bytes"
	if got := es.Error(); got != want {
		t.Errorf("Load() = %q, want %q", got, want)
	}
	fsys["big"].Data = make([]byte, 30)
	repo, err := Load(fsys, Options{MaxFileSize: 30})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	_, err = repo.Render(Host{Name: "h"})
	want = `a.yaml:11:10: template: content:1:3: executing "content" at <printf "%40d" 1>: error calling printf: template budget exceeded: printf would make up to 96 bytes, more than the limit of 30`
	if err == nil || err.Error() != want {
		t.Errorf("Render() = %v, want %q", err, want)
	}
}

// TestFieldForms checks forms of values that YAML types differently from
// what they mean: unquoted modes and tags, numbers and booleans in env.
func TestFieldForms(t *testing.T) {
	fsys := fstest.MapFS{"a.yaml": {Data: []byte(`kind: file
path: /etc/a
content: a
mode: 0640
---
kind: container
name: web
image: web
tag: 1.10
env: {N: 4, B: false, F: 1.50}
memory: 1073741824
`)}}
	repo, err := Load(fsys, Options{})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	st, err := repo.Render(Host{Name: "h"})
	if err != nil {
		t.Fatalf("Render() = %v", err)
	}
	if got := file.Of(st.Resources[0]).Mode; got != 0o640 {
		t.Errorf("mode: 0640 = %v, want %v", got, fs.FileMode(0o640))
	}
	c := docker.Of(st.Resources[1])
	if c.Tag != "1.10" {
		t.Errorf("tag: 1.10 = %q, want %q", c.Tag, "1.10")
	}
	if diff := cmp.Diff(map[string]string{"N": "4", "B": "false", "F": "1.50"}, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if c.Memory != 1<<30 {
		t.Errorf("memory = %d, want %d", c.Memory, 1<<30)
	}
}

// TestRenderConcurrent renders one Repo from several goroutines, under the
// race detector, and expects what a sequential Render gives.
func TestRenderConcurrent(t *testing.T) {
	repo, err := Load(os.DirFS("testdata/valid/fleet-selectors/repo"), Options{})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	hosts := []Host{
		{Name: "edge-042", Labels: map[string]string{"role": "gateway", "site": "berlin"}},
		{Name: "edge-043", Labels: map[string]string{"site": "berlin"}},
		{Name: "other"},
	}
	hashes := func(h Host) ([]string, error) {
		st, err := repo.Render(h)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, r := range st.Resources {
			out = append(out, r.ID.String()+" "+r.Hash())
		}
		return out, nil
	}
	want := make([][]string, len(hosts))
	for i, h := range hosts {
		if want[i], err = hashes(h); err != nil {
			t.Fatalf("Render(%s) = %v", h.Name, err)
		}
	}
	got := make([][]string, 4*len(hosts))
	errs := make([]error, len(got))
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i], errs[i] = hashes(hosts[i%len(hosts)]) })
	}
	wg.Wait()
	for i := range got {
		h := hosts[i%len(hosts)]
		if errs[i] != nil {
			t.Errorf("concurrent Render(%s) = %v", h.Name, errs[i])
			continue
		}
		if diff := cmp.Diff(want[i%len(hosts)], got[i]); diff != "" {
			t.Errorf("concurrent Render(%s) (-want +got):\n%s", h.Name, diff)
		}
	}
}

// TestParseDefaults parses one resource of each shape and compares the whole
// rendered resource, defaults included.
func TestParseDefaults(t *testing.T) {
	yes := true
	tests := []struct {
		name, yaml string
		want       *Resource
	}{
		{
			name: "file",
			yaml: "kind: file\npath: /etc/a\ncontent: a\n",
			want: &Resource{ID: ID{file.Kind, "/etc/a"}, Prune: true, Drift: DriftRevert,
				Object: &file.File{Path: "/etc/a", Content: []byte("a"), Mode: 0o644}},
		},
		{
			name: "absent file",
			yaml: "kind: file\npath: /etc/a\nstate: absent\nprune: false\ndrift: ignore\n",
			want: &Resource{ID: ID{file.Kind, "/etc/a"}, Drift: DriftIgnore,
				Object: &file.File{Path: "/etc/a", Mode: 0o644, Absent: true}},
		},
		{
			name: "unit",
			yaml: "kind: unit\nname: a.service\ncontent: x\nenabled: true\ndropins: {a.conf: {content: y}}\n",
			want: &Resource{ID: ID{systemd.Kind, "a.service"}, Prune: true, Drift: DriftRevert,
				Object: &systemd.Unit{Name: "a.service", Content: []byte("x"), Enabled: &yes, Dropins: map[string][]byte{"a.conf": []byte("y")}}},
		},
		{
			name: "container following semver",
			yaml: "kind: container\nname: web\nimage: web\nupdate: {policy: semver}\n",
			want: &Resource{ID: ID{docker.Kind, "web"}, Prune: true, Drift: DriftRevert,
				Object: &docker.Container{Name: "web", Image: "web", Update: &docker.UpdatePolicy{Policy: "semver", Exclude: docker.DefaultExclude}}},
		},
		{
			name: "container following alphabetical",
			yaml: "kind: container\nname: web\nimage: web\nupdate: {policy: alphabetical, exclude: []}\n",
			want: &Resource{ID: ID{docker.Kind, "web"}, Prune: true, Drift: DriftRevert,
				Object: &docker.Container{Name: "web", Image: "web", Update: &docker.UpdatePolicy{Policy: "alphabetical", Order: "asc", Exclude: []string{}}}},
		},
		{
			name: "container pinned by digest",
			yaml: "kind: container\nname: web\nimage: web@sha256:" + strings.Repeat("ab", 32) + "\n",
			want: &Resource{ID: ID{docker.Kind, "web"}, Prune: true, Drift: DriftRevert,
				Object: &docker.Container{Name: "web", Image: "web", Digest: "sha256:" + strings.Repeat("ab", 32)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, err := Load(fstest.MapFS{"a.yaml": {Data: []byte(tt.yaml)}}, Options{})
			if err != nil {
				t.Fatalf("Load(%q) = %v", tt.yaml, err)
			}
			st, err := repo.Render(Host{Name: "h"})
			if err != nil {
				t.Fatalf("Render() = %v", err)
			}
			if len(st.Resources) != 1 {
				t.Fatalf("Render() = %d resources, want 1", len(st.Resources))
			}
			got := st.Resources[0]
			tt.want.Pos = Pos{File: "a.yaml", Line: 1, Col: 1}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Load(%q) (-want +got):\n%s", tt.yaml, diff)
			}
		})
	}
}

// TestLoadUnreadable checks that a tree that cannot be read at all is an
// error of its own, not a validation error: the command line exits 2.
func TestLoadUnreadable(t *testing.T) {
	_, err := Load(os.DirFS(filepath.Join(t.TempDir(), "missing")), Options{})
	if err == nil {
		t.Fatal("Load(missing directory) = nil, want an error")
	}
	if errors.Is(err, ErrInvalid) {
		t.Errorf("Load(missing directory) = %v, want an error that is not ErrInvalid", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing directory) = %v, want fs.ErrNotExist", err)
	}
}

// TestLoadNonRegularSource checks that a source that is a FIFO, a device, a
// socket or a directory is refused at its position without being opened:
// opening a FIFO for reading would block until a writer comes.
func TestLoadNonRegularSource(t *testing.T) {
	tests := []struct {
		name string
		make func(p string) error
		want string
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }, "a FIFO"},
		{"chardev", func(p string) error { return syscall.Mknod(p, syscall.S_IFCHR|0o644, int(unix.Mkdev(1, 5))) }, "a character device"},
		{"blockdev", func(p string) error { return syscall.Mknod(p, syscall.S_IFBLK|0o644, int(unix.Mkdev(7, 200))) }, "a block device"},
		{"socket", func(p string) error {
			l, err := net.Listen("unix", p)
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		}, "a socket"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }, "a directory"},
		{"symlink-to-fifo", func(p string) error {
			if err := syscall.Mkfifo(p+".real", 0o644); err != nil {
				return err
			}
			return os.Symlink("src.real", p)
		}, "a FIFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("kind: file\npath: /etc/a\nsource: src\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tt.make(filepath.Join(dir, "src")); err != nil {
				t.Fatalf("make %s: %v", tt.name, err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := Load(os.DirFS(dir), Options{})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				// Not a timing target: only a hang takes this long.
				t.Fatalf("Load() with a %s source has not returned after a minute", tt.name)
			}
			want := "a.yaml:3:9: source: src is not a regular file (" + tt.want + ")"
			if err == nil || err.Error() != want {
				t.Errorf("Load() = %v, want %q", err, want)
			}
		})
	}
}

// TestBinaryContent checks that content: !!binary is decoded and its bytes
// written, that bad base64 is refused at its position, and that !!binary is
// refused where a string is meant as text.
func TestBinaryContent(t *testing.T) {
	tests := []struct {
		name, manifest string
		want           []byte
		wantErr        string
	}{
		{name: "decoded", manifest: "kind: file\npath: /etc/a\ncontent: !!binary AAEC/w==\n", want: []byte{0, 1, 2, 0xff}},
		{name: "folded", manifest: "kind: file\npath: /etc/a\ncontent: !!binary |\n  aGVs\n  bG8=\n", want: []byte("hello")},
		{name: "template", manifest: "kind: file\npath: /etc/a\ntemplate: true\ncontent: !!binary e3sgLkhvc3QuTmFtZSB9fQ==\n", want: []byte("h1")},
		{name: "dropin", manifest: "kind: unit\nname: a.service\ncontent: \"[Service]\\n\"\ndropins:\n  x.conf:\n    content: !!binary W1NlcnZpY2Vd\n"},
		{name: "bad-base64", manifest: "kind: file\npath: /etc/a\ncontent: !!binary 'not base64!'\n", wantErr: "a.yaml:3:10: content: !!binary: not base64: illegal base64 data at input byte 9"},
		{name: "path", manifest: "kind: file\npath: !!binary L2V0Yy9h\ncontent: x\n", wantErr: "a.yaml:2:7: path: !!binary is only allowed in content"},
		{name: "env", manifest: "kind: container\nname: web\nimage: web\ntag: \"1\"\nenv: {A: !!binary eA==}\n", wantErr: "a.yaml:5:10: env.A: !!binary is only allowed in content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, err := Load(fstest.MapFS{"a.yaml": {Data: []byte(tt.manifest)}}, Options{})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Load() = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			st, err := repo.Render(Host{Name: "h1"})
			if err != nil {
				t.Fatalf("Render() = %v", err)
			}
			r := st.Resources[0]
			if systemd.Of(r) != nil {
				if got := string(systemd.Of(r).Dropins["x.conf"]); got != "[Service]" {
					t.Errorf("dropin = %q, want %q", got, "[Service]")
				}
				return
			}
			if diff := cmp.Diff(tt.want, file.Of(r).Content); diff != "" {
				t.Errorf("content (-want +got):\n%s", diff)
			}
		})
	}
}
