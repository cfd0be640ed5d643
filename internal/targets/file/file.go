// Package file owns the file target: it converges file resources on the
// host's filesystem (content, mode, owner, group, absence), removes the files
// that Outpost owned when they leave the desired state, and watches managed
// files for hand edits.
//
// file imports spec and atomicfile. It never imports converge, another target
// or the agent; it satisfies converge.Driver and converge.Watcher by shape.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// DefaultMode is a file's mode when its resource sets none.
const DefaultMode fs.FileMode = 0o644

// ErrOutsideRoot is matched by errors.Is when a managed path leads outside
// the root through a symlinked directory.
var ErrOutsideRoot = errors.New("path leads outside the root")

// ErrNotFile is matched by errors.Is when something other than a regular
// file or a symlink (a directory, a socket...) is at a managed path. Outpost
// never replaces or removes it.
var ErrNotFile = errors.New("not a regular file")

// Options configure the driver.
type Options struct {
	// Root prefixes every managed path (--root). Empty is the host's /.
	// Under a root, a symlinked directory on a managed path must resolve
	// inside the root.
	Root string
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
}

// Driver converges file resources. It is safe for concurrent use.
type Driver struct {
	root string
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	rootReal string // Root with its symlinks resolved, once known

	// verified remembers, per path, a version of a file whose content
	// was read and matched, so that a pass over unchanged files costs one
	// lstat each. See sameContent.
	vmu      sync.Mutex
	verified map[string]verifiedContent
	seed     maphash.Seed
	// reads counts the files whose content was read.
	reads atomic.Int64
}

// verifiedContent is a file version whose content was read and found equal
// to the content whose hash is sum.
type verifiedContent struct {
	id  fileID
	sum uint64
}

// trustAge is how much older than the moment it was read a file's change
// time must be for the file's version to be remembered as verified: then any
// later write gives it another change time, even on filesystems whose
// timestamps are coarse (seconds, or the kernel's clock tick).
const trustAge = 2 * time.Second

// New returns a file driver.
func New(opts Options) *Driver {
	root := opts.Root
	if root != "" {
		// Absolute, so that symlinks resolved to absolute paths compare
		// with it; Abs only fails without a working directory.
		if abs, err := filepath.Abs(root); err == nil {
			root = abs
		}
		root = filepath.Clean(root)
		if root == "/" {
			root = ""
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{root: root, log: log, now: time.Now, verified: map[string]verifiedContent{}, seed: maphash.MakeSeed()}
}

// Path returns where the managed path name is on this host: name under the
// root.
func (d *Driver) Path(name string) string {
	if d.root == "" {
		return filepath.Clean(name)
	}
	return filepath.Join(d.root, name)
}

// observed is what is at a managed path.
type observed struct {
	exists  bool
	symlink bool
	mode    fs.FileMode // permission and special bits
	uid     int
	gid     int
	size    int64
	// id names this version of the file's content, for the cache of
	// verified content.
	id fileID
}

// fileID is what changes whenever a file's content may have: a replaced
// file has a new inode, and any write sets the modification and change
// times to the current time. The change time cannot be set by hand.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

// want is a file resource with its owner and group resolved.
type want struct {
	content  []byte
	mode     fs.FileMode
	uid, gid int // -1: not managed
}

// CheckApply compares the file resource r with the host and, with apply
// true, converges the file. It implements converge.Driver.
func (d *Driver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	none := spec.Change{Action: spec.ActionNone}
	if r.File == nil {
		return none, fmt.Errorf("%s: not a file resource", r.ID)
	}
	if err := ctx.Err(); err != nil {
		return none, err
	}
	f := r.File
	p, err := d.resolve(f.Path)
	if err != nil {
		return none, err
	}
	obs, err := lstat(p)
	if f.Absent && errors.Is(err, syscall.ENOTDIR) {
		// A file where a directory should be: nothing can be there.
		return none, nil
	}
	if err != nil {
		return none, err
	}
	if f.Absent {
		return d.remove(p, obs, apply)
	}

	w := want{content: f.Content, mode: f.Mode, uid: -1, gid: -1}
	if w.mode == 0 {
		w.mode = DefaultMode
	}
	w.mode &= fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	if f.Owner != "" {
		if w.uid, err = lookupUser(f.Owner); err != nil {
			return none, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	if f.Group != "" {
		if w.gid, err = lookupGroup(f.Group); err != nil {
			return none, fmt.Errorf("%s: %w", f.Path, err)
		}
	}

	if !obs.exists {
		if apply {
			if err := d.write(p, w, obs); err != nil {
				return none, err
			}
		}
		return spec.Change{Action: spec.ActionCreate}, nil
	}

	var fields []string
	rewrite := false
	if obs.symlink {
		fields = append(fields, "symlink replaced")
		rewrite = true
	} else {
		same, err := d.sameContent(p, obs, w.content)
		if err != nil {
			return none, err
		}
		if !same {
			fields = append(fields, "content")
			rewrite = true
		}
		if obs.mode != w.mode {
			fields = append(fields, "mode "+octal(obs.mode)+" -> "+octal(w.mode))
		}
		if w.uid >= 0 && obs.uid != w.uid {
			fields = append(fields, "owner "+strconv.Itoa(obs.uid)+" -> "+strconv.Itoa(w.uid))
		}
		if w.gid >= 0 && obs.gid != w.gid {
			fields = append(fields, "group "+strconv.Itoa(obs.gid)+" -> "+strconv.Itoa(w.gid))
		}
	}
	if len(fields) == 0 {
		return none, nil
	}
	if apply {
		if rewrite {
			err = d.write(p, w, obs)
		} else {
			err = d.fixAttrs(p, w, obs)
		}
		if err != nil {
			return none, err
		}
	}
	return spec.Change{Action: spec.ActionUpdate, Fields: fields}, nil
}

// Remove deletes the owned file id, which left the desired state. Only a
// regular file is removed: a symlink, a directory or anything else that is
// there now was not written by Outpost and is left alone. It implements
// converge.Driver.
func (d *Driver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	none := spec.Change{Action: spec.ActionNone}
	if id.Kind != spec.KindFile {
		return none, fmt.Errorf("%s: not a file", id)
	}
	if err := ctx.Err(); err != nil {
		return none, err
	}
	p, err := d.resolve(id.Name)
	if err != nil {
		return none, err
	}
	obs, err := lstat(p)
	if errors.Is(err, syscall.ENOTDIR) {
		// A file where a directory should be: nothing to remove.
		return none, nil
	}
	if errors.Is(err, ErrNotFile) {
		d.log.Warn("not a regular file at a pruned file's path; left alone", "resource", id, "err", err)
		return none, nil
	}
	if err != nil {
		return none, err
	}
	if obs.symlink {
		d.log.Warn("a symlink is at a pruned file's path; left alone", "resource", id, "path", p)
		return none, nil
	}
	return d.remove(p, obs, apply)
}

// remove deletes the regular file at p.
func (d *Driver) remove(p string, obs observed, apply bool) (spec.Change, error) {
	none := spec.Change{Action: spec.ActionNone}
	if !obs.exists {
		return none, nil
	}
	if apply {
		d.forget(p)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return none, fmt.Errorf("remove %s: %w", p, err)
		}
		if err := atomicfile.SyncDir(filepath.Dir(p)); err != nil {
			return none, err
		}
	}
	return spec.Change{Action: spec.ActionDelete}, nil
}

// write replaces whatever is at p (nothing, a file or a symlink) with the
// wanted file, atomically. An owner or group that the resource leaves alone
// is kept from the file being replaced.
func (d *Driver) write(p string, w want, obs observed) error {
	d.forget(p)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("create parent directories of %s: %w", p, err)
	}
	uid, gid := w.uid, w.gid
	if obs.exists && !obs.symlink {
		if uid < 0 {
			uid = obs.uid
		}
		if gid < 0 {
			gid = obs.gid
		}
	}
	opts := atomicfile.Options{Chown: uid >= 0 || gid >= 0, UID: uid, GID: gid}
	if err := atomicfile.WriteFile(p, w.content, w.mode, opts); err != nil {
		return err
	}
	// chown clears the setuid and setgid bits: set them again.
	if opts.Chown && w.mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		if err := os.Chmod(p, w.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	return nil
}

// fixAttrs sets the mode and ownership of the regular file at p in place.
func (d *Driver) fixAttrs(p string, w want, obs observed) error {
	if (w.uid >= 0 && w.uid != obs.uid) || (w.gid >= 0 && w.gid != obs.gid) {
		if err := os.Lchown(p, w.uid, w.gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		// chown clears the setuid and setgid bits: set the mode again.
		obs.mode = 0
	}
	if obs.mode != w.mode {
		if err := os.Chmod(p, w.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	return nil
}

// resolve returns where the managed path name is on the host and checks,
// under a root, that no symlinked directory on the way leads outside it.
// Directories that do not exist yet are fine: they are created inside.
func (d *Driver) resolve(name string) (string, error) {
	if !filepath.IsAbs(name) || filepath.Clean(name) != name {
		return "", fmt.Errorf("%s: not an absolute clean path", name)
	}
	p := d.Path(name)
	if d.root == "" {
		return p, nil
	}
	rel := strings.Split(strings.TrimPrefix(filepath.Dir(name), "/"), "/")
	cur := d.root
	for _, c := range rel {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		real, err := filepath.EvalSymlinks(cur)
		if errors.Is(err, fs.ErrNotExist) {
			// A dangling link: creating directories would follow it
			// wherever it leads.
			return "", fmt.Errorf("%s: %s is a dangling symlink: %w", name, cur, ErrOutsideRoot)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		rootReal, err := d.realRoot()
		if err != nil {
			return "", err
		}
		if !within(rootReal, real) {
			return "", fmt.Errorf("%s: %s leads to %s: %w %s", name, cur, real, ErrOutsideRoot, d.root)
		}
	}
	return p, nil
}

func (d *Driver) realRoot() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rootReal != "" {
		return d.rootReal, nil
	}
	r, err := filepath.EvalSymlinks(d.root)
	if err != nil {
		return "", fmt.Errorf("root %s: %w", d.root, err)
	}
	d.rootReal = r
	return r, nil
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator)) || root == "/"
}

func lstat(p string) (observed, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return observed{}, nil
	}
	if err != nil {
		return observed{}, fmt.Errorf("stat %s: %w", p, err)
	}
	o := observed{exists: true, size: fi.Size()}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		o.symlink = true
	case !fi.Mode().IsRegular():
		return observed{}, fmt.Errorf("%s is a %s: %w", p, typeName(fi.Mode()), ErrNotFile)
	}
	o.mode = fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		o.uid, o.gid = int(st.Uid), int(st.Gid)
		o.id = fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
	}
	return o, nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// sameContent reports whether the regular file at p, as lstat observed it,
// holds want. Sizes are compared first. Then, as git does with its index, a
// file version that was read and matched before is trusted without reading
// it again when nothing that a write changes has changed: inode, size,
// modification and change time. A version is only remembered when its change
// time was trustAge older than the read, so that a write in the same clock
// tick as the version it replaced is never mistaken for it. On a filesystem
// that does not move the change time on writes (some FUSE mounts), a
// same-size edit that keeps the modification time is then only seen by a new
// driver: the next commit, or a restart of the agent.
func (d *Driver) sameContent(p string, obs observed, want []byte) (bool, error) {
	if obs.size != int64(len(want)) {
		return false, nil
	}
	sum := maphash.Bytes(d.seed, want)
	d.vmu.Lock()
	v, ok := d.verified[p]
	d.vmu.Unlock()
	if ok && v.id == obs.id && v.sum == sum {
		return true, nil
	}
	readAt := d.now()
	d.reads.Add(1)
	same, err := readSame(p, obs.size, want)
	if err != nil || !same {
		return same, err
	}
	if obs.id.ino != 0 && time.Unix(obs.id.ctime.Unix()).Before(readAt.Add(-trustAge)) {
		d.vmu.Lock()
		d.verified[p] = verifiedContent{id: obs.id, sum: sum}
		d.vmu.Unlock()
	}
	return true, nil
}

// forget drops what is remembered about the file at p, which Outpost is
// about to change.
func (d *Driver) forget(p string) {
	d.vmu.Lock()
	delete(d.verified, p)
	d.vmu.Unlock()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readSame reports whether the regular file at p, of the given size, holds
// want. The file is read with plain system calls: an os.File would register
// it with the poller, which costs more than the read itself for small files.
func readSame(p string, size int64, want []byte) (bool, error) {
	if size != int64(len(want)) {
		return false, nil
	}
	var fd int
	err := retryEINTR(func() (err error) {
		// O_NONBLOCK: never hang on a FIFO put there since lstat.
		fd, err = syscall.Open(p, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ELOOP) {
			// Replaced since lstat: not what is wanted.
			return false, nil
		}
		return false, fmt.Errorf("read %s: %w", p, &fs.PathError{Op: "open", Path: p, Err: err})
	}
	defer syscall.Close(fd)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rest := want
	for {
		var n int
		err := retryEINTR(func() (err error) {
			n, err = syscall.Read(fd, buf)
			return err
		})
		if err != nil {
			return false, fmt.Errorf("read %s: %w", p, &fs.PathError{Op: "read", Path: p, Err: err})
		}
		if n == 0 {
			return len(rest) == 0, nil
		}
		if n > len(rest) || !bytes.Equal(buf[:n], rest[:n]) {
			return false, nil
		}
		rest = rest[n:]
		if len(rest) == 0 {
			// All of the size that lstat saw matches: no need to
			// read the end of the file.
			return true, nil
		}
	}
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// octal formats a mode as chmod does: 0644, 4755.
func octal(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

// lookupUser resolves a user name or numeric ID.
func lookupUser(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("owner %q: %w", s, err)
	}
	return strconv.Atoi(u.Uid)
}

// lookupGroup resolves a group name or numeric ID.
func lookupGroup(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", s, err)
	}
	return strconv.Atoi(g.Gid)
}
