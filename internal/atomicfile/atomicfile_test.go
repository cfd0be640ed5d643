package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		perm    os.FileMode
	}{
		{"new file", func(*testing.T, string) {}, 0o640},
		{"replace file", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, 0o644},
		{"replace symlink without following it", func(t *testing.T, p string) {
			victim := filepath.Join(filepath.Dir(p), "victim")
			if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, p); err != nil {
				t.Fatal(err)
			}
		}, 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "target")
			tt.prepare(t, p)
			if err := WriteFile(p, []byte("new"), tt.perm, Options{}); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != tt.perm {
				t.Errorf("mode = %v, want regular %v", fi.Mode(), tt.perm)
			}
			if b, _ := os.ReadFile(p); string(b) != "new" {
				t.Errorf("content = %q, want %q", b, "new")
			}
			if b, err := os.ReadFile(filepath.Join(dir, "victim")); err == nil && string(b) != "keep" {
				t.Errorf("symlink target written through: %q", b)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "target" && e.Name() != "victim" {
					t.Errorf("leftover file %s", e.Name())
				}
			}
		})
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFile(p, []byte("x"), 0o644, Options{}); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

func TestWriteFileRemovesStaleTemporaries(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a[1].conf")
	// What a write killed before its rename leaves behind, and a file of
	// another path that must stay.
	stale := filepath.Join(dir, ".a[1].conf.outpost-123")
	other := filepath.Join(dir, ".b.conf.outpost-456")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFile(p, []byte("new"), 0o644, Options{}); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary %s still there (err %v)", stale, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another path's temporary was removed: %v", err)
	}
}

// A name of 250 bytes is legal: its temporary name must fit in 255 too, and
// a stale temporary of it is still found.
func TestWriteFileLongName(t *testing.T) {
	for _, n := range []int{200, 237, 238, 250, 255} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			dir := t.TempDir()
			base := strings.Repeat("x", n)
			p := filepath.Join(dir, base)
			for i := range 2 {
				if err := WriteFile(p, []byte{byte('a' + i)}, 0o644, Options{}); err != nil {
					t.Fatalf("WriteFile of a %d-byte name: %v", n, err)
				}
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "b" {
				t.Errorf("content = %q, %v, want %q", b, err, "b")
			}
			stale := tempPrefix(base) + "0badcafe"
			if err := os.WriteFile(filepath.Join(dir, stale), nil, 0o600); err != nil {
				t.Fatalf("temporary name of %d bytes: %v", len(stale), err)
			}
			if err := WriteFile(p, []byte("c"), 0o644, Options{}); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the file", len(entries))
			}
		})
	}
}

// TestBeforeRename checks that the hook sees the complete temporary file
// while it is still its creator's to write (mode 0600: a user.* attribute
// needs write access, and 0444 files are common), and that its error
// abandons the write.
func TestBeforeRename(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	var seen os.FileMode
	var content string
	hook := func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		seen = fi.Mode().Perm()
		b, err := os.ReadFile(f.Name())
		content = string(b)
		return err
	}
	t.Chdir(dir)
	if err := WriteFile(p, []byte("data"), 0o444, Options{BeforeRename: hook}); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if seen != 0o600 || content != "data" {
		t.Errorf("hook saw mode %v and content %q, want 0600 and %q", seen, content, "data")
	}
	failed := errors.New("refused")
	err := WriteFile(p, []byte("new"), 0o644, Options{BeforeRename: func(*os.File) error { return failed }})
	if !errors.Is(err, failed) {
		t.Fatalf("WriteFile with a failing hook = %v, want %v", err, failed)
	}
	if b, _ := os.ReadFile(p); string(b) != "data" {
		t.Errorf("content after a refused write = %q, want the old %q", b, "data")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries after a refused write, want 1", len(entries))
	}
}
