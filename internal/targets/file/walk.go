package file

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrSymlink is matched by errors.Is when a directory on a managed path is a
// symlink. Outpost runs as root over directories that other users may own:
// following a link there would let them point a write or a removal anywhere.
// The error names the real path to use instead.
var ErrSymlink = errors.New("symlink on the path")

// dirFlags open a directory that is only used as the base of *at calls. A
// directory's fsync needs a real descriptor, so the parent that a write or a
// removal goes through is opened O_RDONLY instead.
const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openRoot opens the directory that every managed path is beneath: --root,
// or the host's /. The root itself is trusted and may be a symlink.
func (d *Driver) openRoot(create bool) (int, error) {
	root := d.root
	if root == "" {
		root = "/"
	}
	if create && d.root != "" {
		// The root is the operator's: made as given, symlinks and all.
		if err := os.MkdirAll(root, 0o755); err != nil {
			return -1, fmt.Errorf("root %s: %w", root, err)
		}
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("root %s: %w", root, &fs.PathError{Op: "open", Path: root, Err: err})
	}
	return fd, nil
}

// openParent opens the parent directory of the managed path name, walking
// from the root one component at a time with O_NOFOLLOW, so that no symlink
// is followed whoever swaps one in during the walk: each step is relative to
// the descriptor verified by the step before. With create, missing
// directories are made (0755) through mkdirat on that descriptor. Without it,
// a missing directory is an error matching fs.ErrNotExist, and a file where a
// directory should be one matching syscall.ENOTDIR. The returned descriptor
// is readable (for fsync) and must be closed.
func (d *Driver) openParent(name string, create bool) (int, error) {
	if !filepath.IsAbs(name) || filepath.Clean(name) != name || name == "/" {
		return -1, fmt.Errorf("%s: not an absolute clean path", name)
	}
	fd, err := d.openRoot(create)
	if err != nil {
		return -1, err
	}
	dir := filepath.Dir(name)
	if dir == "/" {
		pfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("%s: open /: %w", name, err)
		}
		return pfd, nil
	}
	comps := strings.Split(dir[1:], "/")
	for i, c := range comps {
		flags := dirFlags
		if i == len(comps)-1 {
			flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		}
		next, err := openDir(fd, c, flags, create)
		if err != nil {
			err = d.walkError(fd, name, comps, i, err)
			unix.Close(fd)
			return -1, err
		}
		unix.Close(fd)
		fd = next
	}
	return fd, nil
}

// openDir opens the directory c in the directory fd without following a
// symlink, making it first when create is set and it is missing.
func openDir(fd int, c string, flags int, create bool) (int, error) {
	for {
		next, err := unix.Openat(fd, c, flags, 0)
		if err == unix.EINTR {
			continue
		}
		if err != unix.ENOENT || !create {
			return next, err
		}
		if err := unix.Mkdirat(fd, c, 0o755); err != nil && err != unix.EEXIST {
			return -1, err
		}
		// Made, or made by someone else meanwhile: open what is there
		// now, with the same checks.
		create = false
	}
}

// walkError explains why the component comps[i] of name could not be
// opened as a directory.
func (d *Driver) walkError(fd int, name string, comps []string, i int, err error) error {
	at := "/" + strings.Join(comps[:i+1], "/")
	if err == unix.ENOENT {
		return fmt.Errorf("%s: %s: %w", name, at, fs.ErrNotExist)
	}
	if err != unix.ELOOP && err != unix.ENOTDIR {
		return fmt.Errorf("%s: open %s: %w", name, at, err)
	}
	var st unix.Stat_t
	if serr := unix.Fstatat(fd, comps[i], &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return fmt.Errorf("%s: %s is not a directory: %w", name, at, unix.ENOTDIR)
	}
	rest := strings.Join(comps[i+1:], "/")
	if real := suggest(fd, d.root, comps, i); real != "" {
		return fmt.Errorf("%s: %w: %s is a symlink, which Outpost does not follow; use %s", name, ErrSymlink, at, filepath.Join(real, rest, filepath.Base(name)))
	}
	return fmt.Errorf("%s: %w: %s is a symlink, which Outpost does not follow", name, ErrSymlink, at)
}

// suggest returns the managed path that the symlink comps[i] names, for an
// error message, or "" when it cannot tell. It only reads the link: the
// target is never opened.
func suggest(fd int, root string, comps []string, i int) string {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, comps[i], buf)
	if err != nil || n == 0 {
		return ""
	}
	target := string(buf[:n])
	switch {
	case !filepath.IsAbs(target):
		target = filepath.Join("/"+strings.Join(comps[:i], "/"), target)
	case root != "":
		// An absolute link names a host path: only one inside the
		// root is a managed path.
		if !within(root, target) {
			return ""
		}
		target = "/" + strings.TrimPrefix(strings.TrimPrefix(target, root), "/")
	}
	return filepath.Clean(target)
}

// parents caches the parent directories opened during one pass, for the
// checks that only read. A write, a change of attributes or a removal always
// walks again: a cached descriptor may name a directory that has been moved
// since, and must never decide where something is written or deleted. A
// stale one can at worst make a check see the old directory, and the next
// pass walks again.
type parents struct {
	mu  sync.RWMutex
	on  bool // only between Prepare and the next Prepare
	fds map[string]int
}

// maxParents bounds the descriptors that the cache keeps open.
const maxParents = 512

// reset closes every cached descriptor and starts a new pass.
func (c *parents) reset(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
	c.on = on
}

// readParent runs f with a descriptor of name's parent directory, for a
// check that only reads: a cached one when a pass is prepared.
func (d *Driver) readParent(name string, f func(pfd int) error) error {
	dir := filepath.Dir(name)
	c := &d.parents
	c.mu.RLock()
	if fd, ok := c.fds[dir]; ok {
		defer c.mu.RUnlock()
		return f(fd)
	}
	on := c.on
	c.mu.RUnlock()
	fd, err := d.openParent(name, false)
	if err != nil {
		return err
	}
	if !on {
		defer unix.Close(fd)
		return f(fd)
	}
	c.mu.Lock()
	if old, ok := c.fds[dir]; ok {
		unix.Close(fd)
		fd = old
	} else if c.on && len(c.fds) < maxParents {
		if c.fds == nil {
			c.fds = map[string]int{}
		}
		c.fds[dir] = fd
	} else {
		c.mu.Unlock()
		defer unix.Close(fd)
		return f(fd)
	}
	c.mu.Unlock()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cur, ok := c.fds[dir]; ok {
		return f(cur)
	}
	// Reset by a new pass meanwhile: walk again.
	fd, err = d.openParent(name, false)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return f(fd)
}
