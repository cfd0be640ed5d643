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

	"golang.org/x/sys/unix"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// DefaultMode is a file's mode when its resource sets none.
const DefaultMode fs.FileMode = 0o644

// ErrNotFile is matched by errors.Is when something other than a regular
// file or a symlink (a directory, a socket...) is at a managed path. Outpost
// never replaces or removes it.
var ErrNotFile = errors.New("not a regular file")

// Options configure the driver.
type Options struct {
	// Root prefixes every managed path (--root). Empty is the host's /.
	// No directory on a managed path may be a symlink, under a root or
	// not.
	Root string
	// StateDir is the agent's state directory: the originals of adopted
	// files are kept there, and the marks of files written where the
	// filesystem takes no extended attributes. Empty refuses both.
	StateDir string
	// Recorded reports whether the agent's state records the managed path
	// as a file Outpost wrote. Such a file is Outpost's even without the
	// mark: one written by a version that set no mark, or replaced by
	// rename (an editor, sed -i) since. It is marked again by rewriting
	// it, never by fixing attributes through it. Nil records nothing.
	Recorded func(name string) bool
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
}

// Driver converges file resources. It is safe for concurrent use.
type Driver struct {
	root string
	log  *slog.Logger
	now  func() time.Time

	stateDir string
	recorded func(name string) bool
	// attr is the extended attribute that marks a file as Outpost's:
	// trusted.* when the agent is root, which only CAP_SYS_ADMIN can set,
	// user.* otherwise (a demo under a root of one's own).
	attr string
	// parents are the directories that one pass's checks opened.
	parents parents

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
	attr := trustedMark
	if os.Geteuid() != 0 {
		attr = userMark
	}
	recorded := opts.Recorded
	if recorded == nil {
		recorded = func(string) bool { return false }
	}
	return &Driver{root: root, log: log, now: time.Now, stateDir: opts.StateDir, recorded: recorded, attr: attr, verified: map[string]verifiedContent{}, seed: maphash.MakeSeed()}
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

// ErrConflict is matched by errors.Is when a file that Outpost did not
// create is at a managed path: it is left alone unless the resource says
// adopt: true (or force: true, for state: absent).
var ErrConflict = errors.New("conflict")

// CheckApply compares the file resource r with the host and, with apply
// true, converges the file. It implements converge.Driver.
//
// Every directory on the path is opened without following symlinks (see
// openParent), and the file itself is only opened O_NOFOLLOW. A file at the
// path is Outpost's when it carries Outpost's mark (see mark.go); any other
// is a conflict, left alone, unless the resource adopts it.
//
// It reads as one sequence (open, observe, compare, write, mark), each
// step needing the open directory and file of the one before, so it
// stays whole.
func (d *Driver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	none := spec.Change{Action: spec.ActionNone}
	if Of(r) == nil {
		return none, fmt.Errorf("%s: not a file resource", r.ID)
	}
	if err := ctx.Err(); err != nil {
		return none, err
	}
	f := Of(r)
	w, err := wanted(f)
	if err != nil {
		return none, err
	}
	obs, same, marked, err := d.observe(f, w)
	if err != nil {
		return none, err
	}
	// recorded: Outpost's by the state, but without the mark (see
	// Options.Recorded); it is rewritten to carry the mark again.
	recorded := obs.exists && !obs.symlink && !marked && d.recorded(f.Path)
	owned := marked || recorded
	if f.Absent {
		if !obs.exists {
			return none, nil
		}
		if !owned && !r.Force {
			return none, d.conflict(f.Path, obs, "force: true removes it")
		}
		return d.remove(f.Path, apply)
	}

	if !obs.exists {
		if apply {
			if err := d.write(f.Path, w, obs); err != nil {
				return none, err
			}
		}
		return spec.Change{Action: spec.ActionCreate}, nil
	}

	var fields []string
	var before *spec.Before
	rewrite := false
	switch {
	case obs.symlink:
		// Documented: a symlink at the path is replaced, never
		// followed; Outpost never makes one, so it owns none.
		fields = append(fields, "symlink replaced")
		rewrite = true
	case !owned && !r.Adopt:
		return none, d.conflict(f.Path, obs, "adopt: true takes it over and keeps the original")
	case !owned && d.stateDir == "":
		return none, fmt.Errorf("%s: adopt needs the agent's state directory to keep the original", f.Path)
	default:
		if recorded {
			fields = append(fields, "mark")
			rewrite = true
		} else if !owned {
			// Adopted: rewritten, so that it carries the mark.
			fields = append(fields, "adopted")
			rewrite = true
		}
		if !same {
			fields = append(fields, "content")
			rewrite = true
			before = d.before(f.Path)
		}
		fields = append(fields, attrChanges(obs, w)...)
	}
	if len(fields) == 0 {
		return none, nil
	}
	if apply {
		switch {
		case !obs.symlink && !owned:
			if err = d.keepOriginal(f.Path); err == nil {
				err = d.write(f.Path, w, obs)
			}
		case rewrite:
			err = d.write(f.Path, w, obs)
		default:
			err = d.fixAttrs(f.Path, w)
		}
		if err != nil {
			return none, err
		}
	}
	return spec.Change{Action: spec.ActionUpdate, Fields: fields, Before: before}, nil
}

// wanted is the file resource f with its owner and group resolved.
func wanted(f *File) (want, error) {
	w := want{content: f.Content, mode: f.Mode, uid: -1, gid: -1}
	if w.mode == 0 {
		w.mode = DefaultMode
	}
	w.mode &= fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	var err error
	if !f.Absent && f.Owner != "" {
		if w.uid, err = lookupUser(f.Owner); err != nil {
			return w, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	if !f.Absent && f.Group != "" {
		if w.gid, err = lookupGroup(f.Group); err != nil {
			return w, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return w, nil
}

// observe looks at what is at f's path, through the pass's parent
// directories: whether a regular file there holds w's content (same) and
// carries Outpost's mark (owned).
func (d *Driver) observe(f *File, w want) (obs observed, same, owned bool, err error) {
	err = d.readParent(f.Path, func(pfd int) error {
		var err error
		if obs, err = statAt(pfd, d.Path(f.Path)); err != nil || !obs.exists || obs.symlink {
			return err
		}
		content := w.content
		if f.Absent {
			content = nil
		}
		same, owned, err = d.inspect(pfd, f.Path, obs, content, !f.Absent)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) || (f.Absent && errors.Is(err, syscall.ENOTDIR)) {
		// A missing directory: nothing is at the path, and a write
		// makes the directories. A file where a directory should be
		// is an error, unless nothing is wanted there.
		return observed{}, false, false, nil
	}
	return obs, same, owned, err
}

// attrChanges lists how the mode, owner and group of obs differ from w.
func attrChanges(obs observed, w want) []string {
	var fields []string
	if obs.mode != w.mode {
		fields = append(fields, "mode "+octal(obs.mode)+" -> "+octal(w.mode))
	}
	if w.uid >= 0 && obs.uid != w.uid {
		fields = append(fields, "owner "+strconv.Itoa(obs.uid)+" -> "+strconv.Itoa(w.uid))
	}
	if w.gid >= 0 && obs.gid != w.gid {
		fields = append(fields, "group "+strconv.Itoa(obs.gid)+" -> "+strconv.Itoa(w.gid))
	}
	return fields
}

// conflict is the error of a path that holds something Outpost did not
// create.
func (d *Driver) conflict(name string, obs observed, fix string) error {
	what := "file"
	if obs.symlink {
		what = "symlink"
	}
	return fmt.Errorf("%s: %w: a %s that Outpost did not create is there; it is left alone (%s)", name, ErrConflict, what, fix)
}

// Prepare starts a pass: the parent directories that the pass's checks open
// are kept open until the next pass, so that a pass over unchanged files
// costs about one fstatat each. It implements converge.Preparer.
func (d *Driver) Prepare(context.Context, []*spec.Resource, bool) error {
	d.parents.reset(true)
	return nil
}

// Close releases the directories kept open by the last pass.
func (d *Driver) Close() error {
	d.parents.reset(false)
	return nil
}

// Remove deletes the file id, which left the desired state, when it carries
// Outpost's mark; an adopted file's original is put back instead. A symlink,
// a directory, a file without the mark or anything else that is there now
// was not written by Outpost and is left alone. It implements
// converge.Driver.
func (d *Driver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	none := spec.Change{Action: spec.ActionNone}
	if id.Kind != Kind {
		return none, fmt.Errorf("%s: not a file", id)
	}
	if err := ctx.Err(); err != nil {
		return none, err
	}
	change := none
	_, err := d.atParent(id.Name, func(pfd int) (err error) {
		change, err = d.prune(pfd, id, apply)
		return err
	})
	return change, err
}

// prune is Remove in the verified parent directory pfd.
func (d *Driver) prune(pfd int, id spec.ID, apply bool) (spec.Change, error) {
	none := spec.Change{Action: spec.ActionNone}
	name := id.Name
	obs, err := statAt(pfd, d.Path(name))
	if errors.Is(err, ErrNotFile) {
		d.log.Warn("not a regular file at a pruned file's path; left alone", "resource", id, "err", err)
		return none, nil
	}
	if err != nil || !obs.exists {
		return none, err
	}
	if obs.symlink {
		d.log.Warn("a symlink is at a pruned file's path; left alone", "resource", id, "path", d.Path(name))
		return none, nil
	}
	_, owned, err := d.inspect(pfd, name, obs, nil, false)
	if err != nil {
		return none, err
	}
	if !owned && !d.recorded(name) {
		d.log.Warn("a file that Outpost did not create is at a pruned file's path; left alone", "resource", id, "path", d.Path(name))
		return none, nil
	}
	orig, err := d.original(name)
	if err != nil {
		return none, err
	}
	if orig != nil {
		if apply {
			if err := d.restore(pfd, name, orig); err != nil {
				return none, err
			}
		}
		return spec.Change{Action: spec.ActionUpdate, Fields: []string{"original restored"}}, nil
	}
	if apply {
		if err := d.unlink(pfd, name); err != nil {
			return none, err
		}
	}
	return spec.Change{Action: spec.ActionDelete}, nil
}

// remove deletes the file at the managed path name through a freshly
// verified parent directory.
func (d *Driver) remove(name string, apply bool) (spec.Change, error) {
	none := spec.Change{Action: spec.ActionNone}
	if apply {
		gone, err := d.atParent(name, func(pfd int) error { return d.unlink(pfd, name) })
		if gone || err != nil {
			return none, err
		}
	}
	return spec.Change{Action: spec.ActionDelete}, nil
}

// unlink removes name's file from its parent directory pfd, durably.
func (d *Driver) unlink(pfd int, name string) error {
	d.forget(name)
	if err := unix.Unlinkat(pfd, filepath.Base(name), 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove %s: %w", d.Path(name), err)
	}
	if err := unix.Fsync(pfd); err != nil {
		return fmt.Errorf("sync the directory of %s: %w", d.Path(name), err)
	}
	if d.stateDir != "" {
		// A record mark names an inode that may be reused.
		if err := os.Remove(d.keptPath("marks", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// write replaces whatever is at the managed path name (nothing, a file or
// a symlink) with the wanted file, atomically, marked as Outpost's, in the
// parent directory that a fresh walk verified. An owner or group that the
// resource leaves alone is kept from the file being replaced.
func (d *Driver) write(name string, w want, obs observed) error {
	d.forget(name)
	pfd, err := d.openParent(name, true)
	if err != nil {
		return fmt.Errorf("create parent directories of %s: %w", d.Path(name), err)
	}
	defer unix.Close(pfd)
	uid, gid := w.uid, w.gid
	if obs.exists && !obs.symlink {
		if uid < 0 {
			uid = obs.uid
		}
		if gid < 0 {
			gid = obs.gid
		}
	}
	opts := atomicfile.Options{Chown: uid >= 0 || gid >= 0, UID: uid, GID: gid, BeforeRename: d.setMark(name)}
	return atomicfile.WriteFileAt(pfd, d.Path(name), filepath.Base(name), w.content, w.mode, opts)
}

// fixAttrs sets the mode and ownership of the file at name on the open
// file, after checking that the file opened is still Outpost's: a file
// swapped in since the check never gets a setuid bit or a new owner.
func (d *Driver) fixAttrs(name string, w want) error {
	d.forget(name)
	fd, err := d.openExisting(name)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", d.Path(name), err)
	}
	owned, err := d.marked(fd, name, st.Dev, st.Ino)
	if err != nil {
		return err
	}
	if !owned {
		return d.conflict(name, observed{exists: true}, "it changed since the check")
	}
	if (w.uid >= 0 && uint32(w.uid) != st.Uid) || (w.gid >= 0 && uint32(w.gid) != st.Gid) {
		if err := unix.Fchown(fd, w.uid, w.gid); err != nil {
			return fmt.Errorf("chown %s: %w", d.Path(name), err)
		}
	}
	// Always: chown clears the setuid and setgid bits.
	if err := unix.Fchmod(fd, uint32(unixMode(w.mode))); err != nil {
		return fmt.Errorf("chmod %s: %w", d.Path(name), err)
	}
	return nil
}

// atParent runs f with a freshly verified descriptor of name's parent
// directory. When the directory is missing, or a file is where it should
// be, nothing is at name: f is not run and gone is true.
func (d *Driver) atParent(name string, f func(pfd int) error) (gone bool, err error) {
	pfd, err := d.openParent(name, false)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(pfd)
	return false, f(pfd)
}

// openExisting opens the file at name for reading through a freshly
// verified parent directory, never following a symlink.
func (d *Driver) openExisting(name string) (int, error) {
	var fd int
	_, err := d.atParent(name, func(pfd int) (err error) {
		fd, err = openFile(pfd, name)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", d.Path(name), err)
	}
	return fd, nil
}

// unixMode converts permission and special bits to chmod's.
func unixMode(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		v |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		v |= unix.S_ISVTX
	}
	return v
}

// openFile opens the file name in its parent directory pfd for reading,
// never following a symlink and never hanging on a FIFO.
func openFile(pfd int, name string) (int, error) {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Openat(pfd, filepath.Base(name), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		return err
	})
	return fd, err
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator)) || root == "/"
}

// statAt observes the file p (for errors) in its parent directory pfd,
// without following a symlink.
func statAt(pfd int, p string) (observed, error) {
	var st unix.Stat_t
	err := retryEINTR(func() error { return unix.Fstatat(pfd, filepath.Base(p), &st, unix.AT_SYMLINK_NOFOLLOW) })
	if err == unix.ENOENT {
		return observed{}, nil
	}
	if err != nil {
		return observed{}, fmt.Errorf("stat %s: %w", p, err)
	}
	o := observed{exists: true, size: st.Size}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		o.symlink = true
	case unix.S_IFREG:
	default:
		return observed{}, fmt.Errorf("%s is a %s: %w", p, typeName(st.Mode), ErrNotFile)
	}
	o.mode = fs.FileMode(st.Mode & 0o777)
	if st.Mode&unix.S_ISUID != 0 {
		o.mode |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		o.mode |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		o.mode |= fs.ModeSticky
	}
	o.uid, o.gid = int(st.Uid), int(st.Gid)
	o.id = fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: syscall.Timespec(st.Mtim), ctime: syscall.Timespec(st.Ctim)}
	return o, nil
}

func typeName(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFBLK, unix.S_IFCHR:
		return "device"
	}
	return "special file"
}

// inspect reads the regular file name, as statAt observed it in pfd: whether
// it holds want (when compare is set) and whether it carries Outpost's mark.
// Sizes are compared first. Then, as git does with its index, a file version
// that was read and matched before is trusted without reading it again when
// nothing that a write changes has changed: inode, size, modification and
// change time. Setting or removing a mark moves the change time too. A
// version is only remembered when its change time was trustAge older than
// the read, so that a write in the same clock tick as the version it
// replaced is never mistaken for it. On a filesystem that does not move the
// change time on writes (some FUSE mounts), a same-size edit that keeps the
// modification time is then only seen by a new driver: the next commit, or a
// restart of the agent.
func (d *Driver) inspect(pfd int, name string, obs observed, want []byte, compare bool) (same, owned bool, err error) {
	sum := maphash.Bytes(d.seed, want)
	if compare && obs.size == int64(len(want)) {
		d.vmu.Lock()
		v, ok := d.verified[name]
		d.vmu.Unlock()
		if ok && v.id == obs.id && v.sum == sum {
			return true, true, nil
		}
	}
	readAt := d.now()
	fd, err := openFile(pfd, name)
	if err == unix.ENOENT || err == unix.ELOOP {
		// Replaced since the stat: not what is wanted, not Outpost's.
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("read %s: %w", d.Path(name), err)
	}
	defer unix.Close(fd)
	// O_NOFOLLOW opened no symlink, O_NONBLOCK no FIFO: what is open is
	// what the stat saw, or a file put there since, whose mark and content
	// are then what is read.
	if owned, err = d.marked(fd, name, obs.id.dev, obs.id.ino); err != nil {
		return false, false, err
	}
	if !compare || obs.size != int64(len(want)) {
		return false, owned, nil
	}
	d.reads.Add(1)
	same, err = readSame(fd, d.Path(name), want)
	if err != nil || !same {
		return same, owned, err
	}
	if owned && obs.id.ino != 0 && time.Unix(obs.id.ctime.Unix()).Before(readAt.Add(-trustAge)) {
		d.vmu.Lock()
		d.verified[name] = verifiedContent{id: obs.id, sum: sum}
		d.vmu.Unlock()
	}
	return true, owned, nil
}

// forget drops what is remembered about the file at name, which Outpost is
// about to change.
func (d *Driver) forget(name string) {
	d.vmu.Lock()
	delete(d.verified, name)
	d.vmu.Unlock()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readSame reports whether the open file fd (p, for errors) holds want from
// its start, reading no further than len(want). It uses plain system calls:
// an os.File would register it with the poller, which costs more than the
// read itself for small files.
func readSame(fd int, p string, want []byte) (bool, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rest := want
	for {
		var n int
		err := retryEINTR(func() (err error) {
			n, err = unix.Read(fd, buf)
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
			// All of the size that the stat saw matches: no need to
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
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > MaxID {
			return 0, fmt.Errorf("numeric id %s is out of range (0 to %d)", s, uint64(MaxID))
		}
		return int(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("owner %q: %w", s, err)
	}
	return strconv.Atoi(u.Uid)
}

// lookupGroup resolves a group name or numeric ID.
func lookupGroup(s string) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > MaxID {
			return 0, fmt.Errorf("numeric id %s is out of range (0 to %d)", s, uint64(MaxID))
		}
		return int(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", s, err)
	}
	return strconv.Atoi(g.Gid)
}
