package file

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
)

// Outpost marks every file it writes as its own, and only ever rewrites,
// re-owns or removes a file that carries the mark. The mark is an extended
// attribute holding the managed path, set on the temporary file before it
// is renamed into place: a file is never at its name without it, so a
// crash between the write and the save of the state loses nothing. An
// unprivileged user cannot forge it: only CAP_SYS_ADMIN sets trusted.*
// attributes. A file copied or hard-linked elsewhere is not Outpost's at
// its other name, since the value names the path.
//
// Where the filesystem takes no extended attributes, or root lacks
// CAP_SYS_ADMIN (a container), the mark is a record
// in the state directory (marks/, 0700, root's) naming the file's device
// and inode, written atomically before the rename.
const (
	trustedMark = "trusted.outpost.path"
	userMark    = "user.outpost.path"
)

// setMark returns the hook that marks the temporary file of name.
func (d *Driver) setMark(name string) func(*os.File) error {
	return func(f *os.File) error {
		fd := int(f.Fd())
		err := unix.Fsetxattr(fd, d.attr, []byte(name), 0)
		// EPERM: root without CAP_SYS_ADMIN, as in a container.
		if err != unix.ENOTSUP && err != unix.EPERM {
			if err != nil {
				return fmt.Errorf("mark as Outpost's (%s): %w", d.attr, err)
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if d.stateDir == "" {
			return errors.New("the filesystem takes no extended attributes, and there is no state directory to mark the file in")
		}
		return d.keep("marks", name, []byte(strconv.FormatUint(st.Dev, 10)+" "+strconv.FormatUint(st.Ino, 10)+"\n"))
	}
}

// marked reports whether the open file fd, at the managed path name and
// with the device and inode dev and ino, carries Outpost's mark.
func (d *Driver) marked(fd int, name string, dev, ino uint64) (bool, error) {
	var small [256]byte
	buf := small[:]
	if len(name) >= len(small) {
		buf = make([]byte, len(name)+1)
	}
	n, err := unix.Fgetxattr(fd, d.attr, buf)
	switch err {
	case nil:
		return string(buf[:n]) == name, nil
	case unix.ERANGE:
		return false, nil
	case unix.ENODATA, unix.ENOTSUP, unix.EPERM:
		if d.stateDir == "" {
			return false, nil
		}
		b, err := os.ReadFile(d.keptPath("marks", name))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		want := strconv.FormatUint(dev, 10) + " " + strconv.FormatUint(ino, 10) + "\n"
		return string(b) == want, nil
	}
	return false, fmt.Errorf("read the mark of %s: %w", d.Path(name), err)
}

// keptPath is where the state directory keeps something of the managed
// path name: a hash, since a path may be longer than a file name.
func (d *Driver) keptPath(dir, name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(d.stateDir, "files", dir, hex.EncodeToString(sum[:16]))
}

// keep writes data for name under dir in the state directory, atomically
// and readable by root only.
func (d *Driver) keep(dir, name string, data []byte) error {
	p := d.keptPath(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, data, 0o600, atomicfile.Options{})
}

// origHeader is the first line of a kept original: what to restore with
// its content.
type origHeader struct {
	Path string `json:"path"`
	Mode uint32 `json:"mode"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

// kept is an adopted file's original.
type kept struct {
	origHeader
	content []byte
}

// keepOriginal copies the file at name, which is being adopted, into the
// state directory, so that prune can put it back. An original kept already
// (an adoption that failed after the copy) is not replaced: the file may be
// Outpost's content by now.
func (d *Driver) keepOriginal(name string) error {
	if d.stateDir == "" {
		return fmt.Errorf("%s: adopt needs the agent's state directory to keep the original", name)
	}
	if o, err := d.original(name); err != nil || o != nil {
		return err
	}
	fd, err := d.openExisting(name)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), d.Path(name))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: not a regular file to adopt: %w", d.Path(name), err)
	}
	h, _ := json.Marshal(origHeader{Path: name, Mode: st.Mode &^ unix.S_IFMT, UID: int(st.Uid), GID: int(st.Gid)})
	var b bytes.Buffer
	b.Write(h)
	b.WriteByte('\n')
	if _, err := io.Copy(&b, f); err != nil {
		return fmt.Errorf("read %s: %w", d.Path(name), err)
	}
	if err := d.keep("adopted", name, b.Bytes()); err != nil {
		return fmt.Errorf("%s: keep the original: %w", name, err)
	}
	return nil
}

// original returns the kept original of the adopted file name, or nil.
func (d *Driver) original(name string) (*kept, error) {
	if d.stateDir == "" {
		return nil, nil
	}
	p := d.keptPath("adopted", name)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	var k kept
	if err := json.NewDecoder(bufio.NewReader(bytes.NewReader(line))).Decode(&k.origHeader); err != nil || k.Path != name {
		return nil, fmt.Errorf("%s: the kept original %s is unreadable: %v", name, p, err)
	}
	k.content = rest
	return &k, nil
}

// restore puts the original of name back, unmarked, in the verified parent
// directory pfd, then drops the copy.
func (d *Driver) restore(pfd int, name string, k *kept) error {
	d.forget(name)
	mode := fs.FileMode(k.Mode & 0o777)
	for bit, m := range map[uint32]fs.FileMode{unix.S_ISUID: fs.ModeSetuid, unix.S_ISGID: fs.ModeSetgid, unix.S_ISVTX: fs.ModeSticky} {
		if k.Mode&bit != 0 {
			mode |= m
		}
	}
	opts := atomicfile.Options{Chown: true, UID: k.UID, GID: k.GID}
	if err := atomicfile.WriteFileAt(pfd, d.Path(name), filepath.Base(name), k.content, mode, opts); err != nil {
		return err
	}
	if err := os.Remove(d.keptPath("adopted", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
