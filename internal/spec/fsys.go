package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// maxLinkHops bounds the symlinks followed while resolving one path.
const maxLinkHops = 40

// tooLargeError is a file over the size limit.
type tooLargeError struct {
	path  string
	limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", Quote(e.path), e.limit)
}

// escapes reports whether the clean, slash-separated relative path p leaves
// the repository's root.
func escapes(p string) bool {
	return p == ".." || strings.HasPrefix(p, "../") || path.IsAbs(p)
}

// resolve returns the path, free of symlinks, that the clean repository path
// p names. When fsys can read links, every symlink on the way is followed
// inside fsys the way the kernel would ("a/link/.." is the parent of the
// link's target, not "a"); a link that is absolute or that leaves the
// repository is an error. Without fs.ReadLinkFS, fsys is trusted to confine
// itself.
func resolve(fsys fs.FS, p string) (string, error) {
	rl, ok := fsys.(fs.ReadLinkFS)
	if !ok || p == "." {
		return p, nil
	}
	done, rest, lastLink := ".", p, ""
	for hops := 0; rest != ""; {
		var elem string
		elem, rest, _ = strings.Cut(rest, "/")
		switch elem {
		case "", ".":
			continue
		case "..":
			if done == "." {
				if lastLink != "" {
					return "", fmt.Errorf("%s leads outside the repository through the symlink %s", Quote(p), Quote(lastLink))
				}
				return "", fmt.Errorf("%s leaves the repository", Quote(p))
			}
			done = path.Dir(done)
			continue
		}
		next := path.Join(done, elem)
		fi, err := rl.Lstat(next)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("%s does not exist", Quote(p))
			}
			return "", fmt.Errorf("%s: %w", Quote(next), err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		hops++
		if hops > maxLinkHops {
			return "", fmt.Errorf("%s: too many symlinks", Quote(p))
		}
		target, err := rl.ReadLink(next)
		if err != nil {
			return "", fmt.Errorf("%s: %w", Quote(next), err)
		}
		if path.IsAbs(target) {
			return "", fmt.Errorf("symlink %s points to the absolute path %s, outside the repository", Quote(next), Quote(target))
		}
		lastLink = next
		// The target is relative to the link's directory, done.
		if rest != "" {
			rest = target + "/" + rest
		} else {
			rest = target
		}
	}
	return done, nil
}

// readFile reads the regular file at the clean repository path p, confined to
// fsys, refusing files larger than limit without reading them.
func readFile(fsys fs.FS, p string, limit int64) ([]byte, error) {
	real, err := resolve(fsys, p)
	if err != nil {
		return nil, err
	}
	// Stat before opening: opening a FIFO for reading blocks until a writer
	// comes, and a device reads forever. real is free of symlinks, so Stat
	// describes the file itself.
	fi, err := fs.Stat(fsys, real)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist", Quote(p))
		}
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", Quote(p), kindOf(fi.Mode()))
	}
	if fi.Size() > limit {
		return nil, &tooLargeError{path: p, limit: limit}
	}
	f, err := fsys.Open(real)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist", Quote(p))
		}
		return nil, err
	}
	defer f.Close()
	// The file may have been replaced between Stat and Open.
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", Quote(p), kindOf(fi.Mode()))
	}
	if fi.Size() > limit {
		return nil, &tooLargeError{path: p, limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Quote(p), err)
	}
	if int64(len(data)) > limit {
		return nil, &tooLargeError{path: p, limit: limit}
	}
	return data, nil
}

// kindOf names the type of a file that is not a regular one.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "not a file"
}
