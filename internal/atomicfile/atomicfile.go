// Package atomicfile owns Outpost's one way of writing a file that matters:
// a temporary file in the same directory, fsync, rename over the target, and
// fsync of the directory, so that a crash leaves the old file or the new one
// and never a partial one.
//
// atomicfile imports no other Outpost package.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Options are the optional attributes of a written file.
type Options struct {
	// UID and GID own the new file when Chown is true.
	Chown    bool
	UID, GID int
	// BeforeRename, when set, is called with the temporary file once its
	// content is written, to mark it: whatever it sets is there from the
	// moment the file appears at its name. It runs before the owner and
	// mode are set, while the file is still writable by its creator (a
	// user.* attribute needs that). Its error abandons the write.
	BeforeRename func(f *os.File) error
}

// WriteFile writes data to path atomically with the given permission bits.
// A symlink at path is replaced, never written through. The parent directory
// must exist.
func WriteFile(path string, data []byte, perm os.FileMode, opts Options) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(dfd)
	return WriteFileAt(dfd, path, base, data, perm, opts)
}

// WriteFileAt is WriteFile in the directory open as dirfd: the temporary
// file is created, and renamed to base, in that directory whatever its path
// leads to now. name is only for errors. The write's mode and ownership are
// set on the open file, the ownership first since chown clears the setuid
// and setgid bits.
func WriteFileAt(dirfd int, name, base string, data []byte, perm os.FileMode, opts Options) (err error) {
	if base == "" || strings.Contains(base, "/") || base == "." || base == ".." {
		return fmt.Errorf("write %s: %q is not a file name", name, base)
	}
	removeStale(dirfd, base)
	f, tmp, err := createTemp(dirfd, base)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if opts.BeforeRename != nil {
		if err = opts.BeforeRename(f); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if opts.Chown {
		if err = f.Chown(opts.UID, opts.GID); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	// The temporary file is made 0600; set the wanted bits explicitly so
	// the umask plays no part.
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = unix.Renameat(dirfd, tmp, dirfd, base); err != nil {
		return fmt.Errorf("write %s: rename: %w", name, err)
	}
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("sync the directory of %s: %w", name, err)
	}
	return nil
}

// createTemp creates a new temporary file for base in dirfd, 0600.
func createTemp(dirfd int, base string) (*os.File, string, error) {
	prefix := tempPrefix(base)
	var rnd [4]byte
	for range 100 {
		rand.Read(rnd[:])
		tmp := prefix + hex.EncodeToString(rnd[:])
		fd, err := unix.Openat(dirfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST || err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, "", &os.PathError{Op: "create", Path: tmp, Err: err}
		}
		return os.NewFile(uintptr(fd), tmp), tmp, nil
	}
	return nil, "", fmt.Errorf("create a temporary file for %s: too many tries", base)
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

// maxName is the longest file name that Linux filesystems take, in bytes.
const maxName = 255

// tempPrefix returns the start of base's temporary names. A name too long
// to take the infix and 8 random characters within maxName is cut, and a
// hash of the whole name keeps apart the names that share the cut part.
func tempPrefix(base string) string {
	if 1+len(base)+len(tempInfix)+8 <= maxName {
		return "." + base + tempInfix
	}
	h := fnv.New64a()
	h.Write([]byte(base))
	return "." + base[:200] + "~" + hex.EncodeToString(h.Sum(nil)) + tempInfix
}

// removeStale removes the temporary files that an earlier write of the same
// name left when its process was killed before the rename. Writes of one
// path are never concurrent (the engine converges a resource once at a
// time), so any such file is stale.
func removeStale(dirfd int, base string) {
	prefix := tempPrefix(base)
	dfd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(dfd), ".")
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		if rest, ok := strings.CutPrefix(n, prefix); ok && isRandom(rest) {
			unix.Unlinkat(dirfd, n, 0)
		}
	}
}

// isRandom reports whether s can be the random part of a temporary name:
// 8 hexadecimal digits, or the up to 10 decimal digits of earlier builds.
func isRandom(s string) bool {
	if len(s) == 0 || len(s) > 10 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}
