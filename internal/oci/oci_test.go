package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			got[filepath.ToSlash(rel)] = "-> " + target
			return err
		}
		b, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestPackUnpackRoundTripIsDeterministic(t *testing.T) {
	files := map[string]string{"agent.yaml": "a: 1\n", "hosts/web/files/etc/motd": "hi\n", "z/b": "b", "z/a": "a"}
	src := writeTree(t, files)
	if err := os.Symlink("a", filepath.Join(src, "z", "link")); err != nil {
		t.Fatal(err)
	}
	var one, two bytes.Buffer
	if err := Pack(&one, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	// The same content written later, so with other mtimes, packs the same.
	src2 := writeTree(t, files)
	if err := os.Symlink("a", filepath.Join(src2, "z", "link")); err != nil {
		t.Fatal(err)
	}
	if err := Pack(&two, os.DirFS(src2)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("the same tree packed to different bytes")
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := Unpack(&one, dst); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"agent.yaml": "a: 1\n", "hosts/web/files/etc/motd": "hi\n", "z/b": "b", "z/a": "a", "z/link": "-> a"}
	if diff := cmp.Diff(want, readTree(t, dst)); diff != "" {
		t.Fatalf("unpacked tree (-want +got):\n%s", diff)
	}
}

type entry struct {
	h    tar.Header
	body string
}

func layer(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := e.h
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func reg(name, body string) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeReg}, body: body}
}

func link(name, target string) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}}
}

func TestUnpackRefusesHostileLayers(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		wantMsg string
	}{
		{"dot-dot entry", []entry{reg("ok", "x"), reg("a/../../escape", "x")}, `entry "a/../../escape": path climbs out with ..`},
		{"absolute path", []entry{reg("/etc/passwd", "x")}, `entry "/etc/passwd": absolute or malformed path`},
		{"symlink out", []entry{link("l", "../../etc")}, `entry "l": symlink to "../../etc" leaves the tree`},
		{"absolute symlink", []entry{link("l", "/etc")}, `entry "l": symlink to "/etc" leaves the tree`},
		{"write through a symlink", []entry{link("l", "."), link("l/m", "..")}, `entry "l/m": parent "l" is not a directory`},
		{"file through a symlink", []entry{reg("d/x", "x"), link("s", "d"), reg("s/y", "y")}, `entry "s/y": parent "s" is not a directory`},
		{"device file", []entry{{h: tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}}, `entry "dev": type "3" not allowed`},
		{"hard link", []entry{reg("a", "x"), {h: tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}}}, `entry "b": type "1" not allowed`},
		{"huge entry", []entry{{h: tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: MaxFileBytes + 1}, body: strings.Repeat("x", MaxFileBytes+1)}}, `entry "big": 16777217 bytes, over the 16777216-byte bound`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "out")
			err := Unpack(bytes.NewReader(layer(t, tt.entries...)), dst)
			if !errors.Is(err, ErrHostile) {
				t.Fatalf("Unpack: got %v, want ErrHostile", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
			left, rerr := os.ReadDir(parent)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if len(left) != 0 {
				t.Errorf("a refused layer left %v behind", left)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(parent), "escape")); err == nil {
				t.Error("an entry was written outside the destination")
			}
		})
	}
}
