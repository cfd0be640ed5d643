// Package hostpath resolves a path on this host the way the kernel reads it
// when a container engine binds it, and reports what lies at and under it
// that reaches the host: unix sockets and kernel filesystems. It decides
// nothing; the agent's container policy does. It imports nothing internal.
package hostpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUnresolved is matched by errors.Is when a path cannot be reduced to a
// plain path: a dangling link, a link through /proc/PID/root or another
// magic link, or a file where a directory is needed.
var ErrUnresolved = errors.New("cannot be resolved to a plain path on this host")

// ID identifies a file on this host whatever its path: a hard link or a
// bind mount of it has the same ID.
type ID struct{ Dev, Ino uint64 }

// IDOf returns the ID of what path names, links followed.
func IDOf(path string) (ID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return ID{}, err
	}
	return idOf(fi), nil
}

func idOf(fi fs.FileInfo) ID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ID{}
	}
	return ID{Dev: uint64(st.Dev), Ino: st.Ino}
}

// Object is a file found at or under a bind's source.
type Object struct {
	Path string // resolved
	ID   ID
	// FS names the kernel filesystem of a mount (proc, sysfs, ...); empty
	// for a socket.
	FS string
}

// Limits bound the walk of a directory. A walk that reaches them stops and
// says so (Bind.Incomplete): what it did not see is unknown, not safe.
type Limits struct {
	Entries int // directory entries read, in all
	Depth   int // directories below the source
}

// DefaultLimits are the walk's bounds when Limits is zero. A walk of that
// many entries took 3 ms on a warm cache (BenchmarkInspectFullWalk).
var DefaultLimits = Limits{Entries: 10000, Depth: 32}

// Bind is what a bind mount of Source would hand a container.
type Bind struct {
	Source string // cleaned, as written
	// Resolved is Source with every link followed; a tail that does not
	// exist yet (the engine creates it as a directory) is appended as
	// written.
	Resolved string
	Exists   bool
	// ID is that of Resolved when it exists, else of its deepest existing
	// directory.
	ID ID
	// Sockets are the unix sockets at or under Resolved.
	Sockets []Object
	// Kernel are the kernel filesystems (proc, sysfs, cgroup, ...) at or
	// under Resolved, or that the missing tail would be created in.
	Kernel []Object
	// Incomplete is set when the walk stopped at its limits.
	Incomplete bool
}

// Inspect resolves source and walks it, when it is a directory, within
// lim, without following links: a link in a bound directory is read inside
// the container, where it cannot leave the bound tree.
func Inspect(source string, lim Limits) (*Bind, error) {
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	b := &Bind{Source: filepath.Clean(source)}
	if !filepath.IsAbs(b.Source) {
		return nil, fmt.Errorf("%s: not an absolute path", source)
	}
	existing, rest, err := split(b.Source)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", source, ErrUnresolved, err)
	}
	// The kernel follows magic links (/proc/PID/root, /proc/PID/cwd) to
	// objects that their text does not name: what the path reaches must
	// be what its resolved text names.
	viaPath, err := os.Stat(existing)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", source, ErrUnresolved, err)
	}
	viaReal, err := os.Stat(real)
	if err != nil || !os.SameFile(viaPath, viaReal) {
		return nil, fmt.Errorf("%s: %w: it reaches another file than %s", source, ErrUnresolved, real)
	}
	b.Resolved = filepath.Join(append([]string{real}, rest...)...)
	b.Exists = len(rest) == 0
	b.ID = idOf(viaReal)
	if len(rest) > 0 && !viaReal.IsDir() {
		return nil, fmt.Errorf("%s: %w: %s is not a directory", source, ErrUnresolved, real)
	}
	if name := kernelFS(real); name != "" {
		b.Kernel = append(b.Kernel, Object{Path: real, ID: b.ID, FS: name})
	}
	switch {
	case !b.Exists:
	case viaReal.Mode()&fs.ModeSocket != 0:
		b.Sockets = append(b.Sockets, Object{Path: real, ID: b.ID})
	case viaReal.IsDir() && len(b.Kernel) == 0:
		w := walker{b: b, left: lim.Entries, depth: lim.Depth}
		if err := w.dir(real, b.ID.Dev, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
	}
	return b, nil
}

// split returns the deepest prefix of the clean path p that exists (a link
// counts, dangling or not) and the names below it that do not.
func split(p string) (existing string, rest []string, err error) {
	for {
		_, err := os.Lstat(p)
		if err == nil {
			return p, rest, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("%s: %w: %w", p, ErrUnresolved, err)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = filepath.Dir(p)
	}
}

type walker struct {
	b     *Bind
	left  int
	depth int
}

// dir walks the directory p on device dev, at depth d below the source.
func (w *walker) dir(p string, dev uint64, d int) error {
	if d > w.depth {
		w.b.Incomplete = true
		return nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		// An unreadable directory hides what it holds: the walk is
		// not complete.
		if errors.Is(err, fs.ErrPermission) {
			w.b.Incomplete = true
			return nil
		}
		return err
	}
	for _, e := range entries {
		if w.left--; w.left < 0 {
			w.b.Incomplete = true
			return nil
		}
		t := e.Type()
		if t&(fs.ModeSocket|fs.ModeDir) == 0 {
			continue
		}
		child := filepath.Join(p, e.Name())
		fi, err := os.Lstat(child)
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone since it was listed
		}
		if err != nil {
			return err
		}
		id := idOf(fi)
		switch {
		case fi.Mode()&fs.ModeSocket != 0:
			w.b.Sockets = append(w.b.Sockets, Object{Path: child, ID: id})
		case fi.IsDir():
			// A mount below the source is bound too (the engine binds
			// recursively); a kernel filesystem there reaches the host.
			if id.Dev != dev {
				if name := kernelFS(child); name != "" {
					w.b.Kernel = append(w.b.Kernel, Object{Path: child, ID: id, FS: name})
					continue
				}
			}
			if err := w.dir(child, id.Dev, d+1); err != nil {
				return err
			}
		}
		if w.b.Incomplete {
			return nil
		}
	}
	return nil
}

// kernelFSTypes are the statfs magic numbers of the filesystems through
// which a container reaches the host's kernel and processes (linux/magic.h).
var kernelFSTypes = map[uint32]string{
	0x9fa0:     "proc",
	0x62656572: "sysfs",
	0x27e0eb:   "cgroup",
	0x63677270: "cgroup2",
	0x64626720: "debugfs",
	0x74726163: "tracefs",
	0x73636673: "securityfs",
	0xcafe4a11: "bpf",
	0xde5e81e4: "efivarfs",
	0x6165676c: "pstore",
	0x62656570: "configfs",
	0x42494e4d: "binfmt_misc",
	0x65735543: "fusectl",
	0x6e736673: "nsfs",
}

// kernelFS names the kernel filesystem that p lies on, or "".
func kernelFS(p string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return ""
	}
	return kernelFSTypes[uint32(st.Type)] // int32 on 32-bit systems
}
