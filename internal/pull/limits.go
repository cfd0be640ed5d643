package pull

import (
	"bufio"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Bounds on what a repository can make the agent read, store and hold in
// memory. A hostile commit can be small on the wire and huge once inflated
// (a 192 MiB blob of zeros packs into a few hundred KiB), or small as objects
// and huge as paths (one tree listed a thousand times over), so each is
// bounded where it is first known, before the work it would cause.
const (
	// DefaultMaxFetchBytes bounds the bytes of one fetch's pack when
	// Config.MaxFetchBytes is 0.
	DefaultMaxFetchBytes = 256 << 20
	// DefaultMaxObjectBytes bounds an object's size, inflated, when
	// Config.MaxObjectBytes is 0: the largest file a manifest may read.
	DefaultMaxObjectBytes = 16 << 20
	// MaxTreeEntries bounds the paths of a commit's tree, all directories
	// together.
	MaxTreeEntries = 100_000
	// MaxTreeDepth bounds how deep a commit's directories nest.
	MaxTreeDepth = 64
	// maxLinkTarget bounds a symlink's target, as PATH_MAX does.
	maxLinkTarget = 4096
)

// ErrTooLarge: a commit, fetch or object passes one of the bounds above.
// The commit is refused; a newer one is fetched as usual.
var ErrTooLarge = errors.New("too large")

// tooLarge is an ErrTooLarge whose text says what passed which bound,
// without repeating "too large" when an *Error wraps it with that kind.
type tooLarge struct{ msg string }

func (e *tooLarge) Error() string        { return e.msg }
func (e *tooLarge) Is(target error) bool { return target == ErrTooLarge }

func tooLargef(format string, args ...any) error {
	return &tooLarge{msg: fmt.Sprintf(format, args...)}
}

func (r *Repo) maxFetch() int64 {
	if r.cfg.MaxFetchBytes > 0 {
		return r.cfg.MaxFetchBytes
	}
	return DefaultMaxFetchBytes
}

func (r *Repo) maxObject() int64 {
	if r.cfg.MaxObjectBytes > 0 {
		return r.cfg.MaxObjectBytes
	}
	return DefaultMaxObjectBytes
}

// checkTreeBounds refuses the entries-th entry of commit's tree, at path
// name, when it passes MaxTreeEntries or MaxTreeDepth.
func checkTreeBounds(commit, name string, entries int) error {
	if entries > MaxTreeEntries {
		return tooLargef("the tree of %s has more than %d entries", commit, MaxTreeEntries)
	}
	if depth := strings.Count(name, "/") + 1; depth > MaxTreeDepth {
		return tooLargef("the tree of %s nests more than %d directories deep", commit, MaxTreeDepth)
	}
	return nil
}

// objectSize returns an object's inflated size from its header, without
// reading its content. r.mu is held.
func (r *Repo) objectSize(h plumbing.Hash) (int64, error) {
	if s, ok := r.repo.Storer.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}); ok {
		return s.EncodedObjectSize(h)
	}
	o, err := r.repo.Storer.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return 0, err
	}
	return o.Size(), nil
}

// boundedStorage is the cache's storage as a fetch sees it: the pack it
// receives goes to a temporary file, bounded in bytes, and is checked
// object by object before go-git indexes it, since go-git holds each
// object it indexes in memory.
type boundedStorage struct {
	*filesystem.Storage
	dir       string // where the temporary pack goes
	maxFetch  int64
	maxObject int64
}

// PackfileWriter returns the writer that a fetch copies the pack into.
func (s *boundedStorage) PackfileWriter() (io.WriteCloser, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.dir, tmpPrefix+"fetch_")
	if err != nil {
		return nil, err
	}
	return &boundedPack{s: s, f: f}, nil
}

// boundedPack is one fetch's pack on its way to the storage.
type boundedPack struct {
	s   *boundedStorage
	f   *os.File
	n   int64
	err error
}

func (w *boundedPack) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.n += int64(len(p))
	if w.n > w.s.maxFetch {
		w.err = tooLargef("the fetch is larger than %d bytes", w.s.maxFetch)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Close checks the whole pack and only then hands it to the storage; the
// temporary file goes either way.
func (w *boundedPack) Close() (err error) {
	defer os.Remove(w.f.Name())
	defer w.f.Close()
	if w.err != nil {
		return w.err
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := checkPack(bufio.NewReaderSize(w.f, 64<<10), w.s.maxObject); err != nil {
		return err
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	pw, err := w.s.Storage.PackfileWriter()
	if err != nil {
		return err
	}
	if _, err := io.Copy(pw, w.f); err != nil {
		pw.Close()
		return err
	}
	return pw.Close()
}

// Pack object types (gitformat-pack).
const (
	packOFSDelta = 6
	packREFDelta = 7
)

// checkPack reads a pack stream and refuses an object whose inflated size,
// or whose size once a delta is applied, passes max. It inflates each
// object to count its bytes, in constant memory; a pack that is malformed
// is left for go-git to refuse.
func checkPack(br *bufio.Reader, max int64) error {
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("pack header: %w", err)
	}
	if string(hdr[:4]) != "PACK" {
		return errors.New("pack header: not a pack")
	}
	count := binary.BigEndian.Uint32(hdr[8:])
	var zr io.ReadCloser
	for i := uint32(0); i < count; i++ {
		typ, size, err := objectHeader(br)
		if err != nil {
			return fmt.Errorf("pack object %d: %w", i, err)
		}
		switch typ {
		case packOFSDelta:
			for {
				b, err := br.ReadByte()
				if err != nil {
					return fmt.Errorf("pack object %d: %w", i, err)
				}
				if b&0x80 == 0 {
					break
				}
			}
		case packREFDelta:
			if _, err := br.Discard(20); err != nil {
				return fmt.Errorf("pack object %d: %w", i, err)
			}
		}
		if size > max {
			return tooLargef("an object of %d bytes, more than %d", size, max)
		}
		// br is an io.ByteReader, so inflating stops at the object's end.
		if zr == nil {
			zr, err = zlib.NewReader(br)
		} else {
			err = zr.(zlib.Resetter).Reset(br, nil)
		}
		if err != nil {
			return fmt.Errorf("pack object %d: %w", i, err)
		}
		cr := &countingReader{r: io.LimitReader(zr, size+1)}
		in := bufio.NewReaderSize(cr, 512)
		if typ == packOFSDelta || typ == packREFDelta {
			// A delta starts with the sizes of its base and of its result.
			if _, err := readVarint(in); err != nil {
				return fmt.Errorf("pack object %d: delta: %w", i, err)
			}
			target, err := readVarint(in)
			if err != nil {
				return fmt.Errorf("pack object %d: delta: %w", i, err)
			}
			if target > uint64(max) {
				return tooLargef("an object of %d bytes, more than %d", target, max)
			}
		}
		if _, err := io.Copy(io.Discard, in); err != nil {
			return fmt.Errorf("pack object %d: %w", i, err)
		}
		if cr.n != size {
			return fmt.Errorf("pack object %d: %d bytes, but its header says %d", i, cr.n, size)
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// objectHeader reads a pack object's type and inflated size.
func objectHeader(br *bufio.Reader) (typ byte, size int64, err error) {
	b, err := br.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	typ = (b >> 4) & 7
	size = int64(b & 0x0f)
	for shift := uint(4); b&0x80 != 0; shift += 7 {
		if shift > 56 {
			return 0, 0, errors.New("object size overflows")
		}
		if b, err = br.ReadByte(); err != nil {
			return 0, 0, err
		}
		size |= int64(b&0x7f) << shift
	}
	return typ, size, nil
}

// readVarint reads a delta's little-endian base-128 size.
func readVarint(br io.ByteReader) (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift > 63 {
			return 0, errors.New("size overflows")
		}
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return v, nil
		}
	}
}
