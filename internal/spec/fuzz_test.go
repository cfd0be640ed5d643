package spec_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	. "github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

// fuzzHosts are the hosts a fuzzed repository that loads is rendered for.
var fuzzHosts = []Host{
	{Name: "h1"},
	{Name: "edge-042", Labels: map[string]string{"role": "gateway", "site": "berlin"}},
}

// checkLoad loads fsys and checks what must hold for any input: no panic,
// validation errors as a sorted Errors with positions in the repository,
// and a repository that loads renders (or fails with Errors) for any host.
func checkLoad(t *testing.T, fsys fs.FS) {
	repo, err := Load(fsys, Options{MaxFileSize: 1 << 16})
	if err != nil {
		var es Errors
		if !errors.As(err, &es) || !errors.Is(err, ErrInvalid) {
			t.Fatalf("Load() = %v (%T), want Errors", err, err)
		}
		if len(es) == 0 {
			t.Fatalf("Load() = empty Errors")
		}
		for i, e := range es {
			if _, statErr := fs.Stat(fsys, e.Pos.File); statErr != nil {
				t.Errorf("error %q: position names %q, not a file of the repository", e, e.Pos.File)
			}
			if i > 0 && PosLess(e.Pos, es[i-1].Pos) {
				t.Errorf("errors not sorted: %q before %q", es[i-1], e)
			}
			if e.Msg == "" {
				t.Errorf("error at %s has no message", e.Pos)
			}
		}
		return
	}
	for _, h := range fuzzHosts {
		st, err := repo.Render(h)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Render(%s) = %v (%T), want Errors", h.Name, err, err)
			}
			continue
		}
		for i, r := range st.Resources {
			if n := len(r.Hash()); n != 64 {
				t.Fatalf("Hash() has %d digits, want 64", n)
			}
			if i > 0 && st.Resources[i-1].ID == r.ID {
				t.Errorf("Render(%s) holds %s twice", h.Name, r.ID)
			}
			if file.Of(r) != nil && int64(len(file.Of(r).Content)) > 1<<16 {
				t.Errorf("Render(%s): %s content of %d bytes passes the limit", h.Name, r.ID, len(file.Of(r).Content))
			}
		}
	}
}

// FuzzLoad feeds arbitrary bytes to the manifest parser, beside a fleet file
// and a source it may name. Seeds: testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("kind: file\npath: /etc/a\ncontent: a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLoad(t, fstest.MapFS{
			"m.yaml":       {Data: data},
			"src.conf":     {Data: []byte("listen {{ .Host.Name }}\n")},
			"sub/x.yaml":   {Data: []byte("kind: file\npath: /etc/x\ncontent: x\n")},
			"link.conf":    {Data: []byte("../../etc/passwd"), Mode: fs.ModeSymlink},
			"inside.conf":  {Data: []byte("src.conf"), Mode: fs.ModeSymlink},
			"dir/ok.conf":  {Data: []byte("ok\n")},
			"dir/up.conf":  {Data: []byte("../src.conf"), Mode: fs.ModeSymlink},
			"dir/abs.conf": {Data: []byte("/etc/shadow"), Mode: fs.ModeSymlink},
		})
	})
}

// FuzzFleet feeds arbitrary bytes to the fleet file's parser, over a
// repository whose manifests collide when targets overlap. Seeds:
// testdata/fuzz/FuzzFleet.
func FuzzFleet(f *testing.F) {
	f.Add([]byte("targets:\n  - path: common\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		manifest := func(content string) *fstest.MapFile {
			return &fstest.MapFile{Data: []byte("kind: file\npath: /etc/role\ncontent: " + content + "\n---\nkind: unit\nname: " +
				strings.ReplaceAll(content, " ", "-") + ".service\ncontent: x\nafter: [\"file:/etc/role\"]\n")}
		}
		checkLoad(t, fstest.MapFS{
			"fleet.yaml":         {Data: data},
			"common/a.yaml":      {Data: []byte("kind: file\npath: /etc/common\ncontent: c\n")},
			"roles/web/a.yaml":   manifest("web"),
			"roles/db/a.yaml":    manifest("db"),
			"hosts/h1/a.yaml":    manifest("h1"),
			"hosts/edge-042/a.y": {Data: []byte("not a manifest")},
		})
	})
}
