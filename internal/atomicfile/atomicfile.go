// Package atomicfile owns Outpost's one way of writing a file that matters:
// a temporary file in the same directory, fsync, rename over the target, and
// fsync of the directory, so that a crash leaves the old file or the new one
// and never a partial one.
//
// atomicfile imports no other Outpost package.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Options are the optional attributes of a written file.
type Options struct {
	// UID and GID own the new file when Chown is true.
	Chown    bool
	UID, GID int
}

// WriteFile writes data to path atomically with the given permission bits.
// A symlink at path is replaced, never written through. The parent directory
// must exist.
func WriteFile(path string, data []byte, perm os.FileMode, opts Options) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	removeStale(dir, base)
	f, err := os.CreateTemp(dir, "."+base+tempInfix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600; set the wanted bits explicitly so the
	// umask plays no part.
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if opts.Chown {
		if err = f.Chown(opts.UID, opts.GID); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename or removal in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// tempInfix marks the temporary files of WriteFile: ".NAME.outpost-RANDOM".
const tempInfix = ".outpost-"

// removeStale removes the temporary files that an earlier WriteFile of the
// same path left when its process was killed before the rename. Writes of one
// path are never concurrent (the engine converges a resource once at a
// time), so any such file is stale.
func removeStale(dir, base string) {
	stale, _ := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+tempInfix+"*"))
	for _, p := range stale {
		os.Remove(p)
	}
}

// globEscape quotes the characters that filepath.Match treats specially.
func globEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
