package oci

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits on an unpacked layer. The compressed bound is the one a Git fetch
// has (256 MiB); a file may be no larger than the largest object a Git
// source reads, and the count of entries matches a Git tree's bound.
const (
	MaxLayerBytes = 256 << 20
	MaxFileBytes  = 16 << 20
	MaxEntries    = 100_000
	MaxTotalBytes = 1 << 30
)

// ErrHostile marks a layer refused for its content: an entry that would leave
// the destination, a device file or an entry over a bound.
var ErrHostile = errors.New("refused layer")

func hostile(name, format string, a ...any) error {
	return fmt.Errorf("%w: entry %q: %s", ErrHostile, name, fmt.Sprintf(format, a...))
}

// Unpack extracts the gzipped tar r into dir, which must not exist yet: it is
// written beside it and renamed into place only once the whole layer is
// accepted, so a refused layer leaves nothing behind.
func Unpack(r io.Reader, dir string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-")
	if err != nil {
		return err
	}
	if err := unpack(io.LimitReader(r, MaxLayerBytes+1), tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return nil
}

func unpack(r io.Reader, dir string) error {
	cr := &countReader{r: r}
	gz, err := gzip.NewReader(cr)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	tr := tar.NewReader(gz)
	var entries int
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if cr.n > MaxLayerBytes {
			return fmt.Errorf("%w: layer over %d bytes compressed", ErrHostile, MaxLayerBytes)
		}
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		if entries++; entries > MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrHostile, MaxEntries)
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return err
		}
		if err := noLinkParents(dir, name); err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("layer: entry %q: %w", h.Name, err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeSymlink:
			if err := checkLink(name, h.Linkname); err != nil {
				return err
			}
			err = os.Symlink(h.Linkname, dst)
		case tar.TypeReg:
			if h.Size > MaxFileBytes {
				return hostile(h.Name, "%d bytes, over the %d-byte bound", h.Size, MaxFileBytes)
			}
			if total += h.Size; total > MaxTotalBytes {
				return fmt.Errorf("%w: files over %d bytes in all", ErrHostile, MaxTotalBytes)
			}
			err = writeFile(dst, tr, h)
		default:
			return hostile(h.Name, "type %q not allowed", string(h.Typeflag))
		}
		if err != nil {
			return fmt.Errorf("layer: entry %q: %w", h.Name, err)
		}
	}
}

// cleanName refuses absolute names and names that climb out with "..".
func cleanName(n string) (string, error) {
	if n == "" || strings.HasPrefix(n, "/") || strings.Contains(n, "\\") {
		return "", hostile(n, "absolute or malformed path")
	}
	for _, el := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if el == ".." {
			return "", hostile(n, "path climbs out with ..")
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", hostile(n, "empty path")
	}
	return c, nil
}

// checkLink refuses a symlink whose target, resolved from the link's own
// directory, is absolute or leaves the tree.
func checkLink(name, target string) error {
	if target == "" || path.IsAbs(target) {
		return hostile(name, "symlink to %q leaves the tree", target)
	}
	if t := path.Join(path.Dir(name), target); t == ".." || strings.HasPrefix(t, "../") {
		return hostile(name, "symlink to %q leaves the tree", target)
	}
	return nil
}

// writeFile creates dst exclusively (O_EXCL and no following of a symlink at
// the last element) so an earlier entry cannot redirect the write.
func writeFile(dst string, r io.Reader, h *tar.Header) error {
	mode := os.FileMode(0o644)
	if h.Mode&0o111 != 0 {
		mode = 0o755
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, h.Size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// noLinkParents refuses an entry below a symlink already unpacked: links are
// kept in the tree but nothing is ever written through one.
func noLinkParents(dir, name string) error {
	cur := dir
	elems := strings.Split(name, "/")
	for _, el := range elems[:len(elems)-1] {
		cur = filepath.Join(cur, el)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return hostile(name, "parent %q is not a directory", el)
		}
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
