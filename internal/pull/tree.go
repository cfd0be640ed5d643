package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrSymlinkEscapes is the cause of a PathError for a symlink whose target
// leaves the commit's tree (absolute, or too many ".."). Such a link can be
// read with ReadLink and Lstat, never opened.
var ErrSymlinkEscapes = errors.New("symlink leaves the repository")

// maxLinks bounds the symlinks followed in one path, as Linux does.
const maxLinks = 40

// Tree returns the tree of commit as a read-only fs.FS. It also implements
// fs.ReadLinkFS (ReadLink and Lstat), fs.ReadDirFS, fs.ReadFileFS and
// fs.StatFS. Open follows symlinks inside the tree only. The directory
// structure is read at once; file contents are read when opened.
//
// A commit that is not in the cache (one cloned again after damage holds
// only the tip) is fetched from the branch's history first, as Fetch does.
//
// The FS stays valid until a Poll clones a damaged cache again.
func (r *Repo) Tree(ctx context.Context, commit string) (fs.FS, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.resolve(commit)
	if errors.Is(err, ErrCommitNotFound) && !r.tr.Local {
		if ferr := r.ensure(ctx, commit); ferr == nil {
			c, err = r.resolve(commit)
		} else if !errors.Is(ferr, ErrCommitNotFound) {
			err = ferr
		}
	}
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, r.noteDamage(fmt.Errorf("tree of %s: %w", commit, err))
	}
	t := &treeFS{r: r, commit: commit, when: c.Committer.When, nodes: map[string]*node{}}
	root := &node{name: ".", mode: filemode.Dir}
	t.nodes["."] = root
	if err := t.load(ctx, root, ".", tree); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, &Error{Op: "read", URL: r.redacted, Kind: ErrTooLarge, Err: err, Commit: commit}
		}
		return nil, err
	}
	return t, nil
}

type treeFS struct {
	r      *Repo
	commit string
	when   time.Time
	nodes  map[string]*node
}

type node struct {
	name     string
	mode     filemode.FileMode
	hash     plumbing.Hash
	children []*node // directories only, in tree order (sorted by name)
}

var (
	_ fs.ReadLinkFS = (*treeFS)(nil)
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
)

// load walks one tree object into t.nodes, up to
// MaxTreeEntries paths in all and MaxTreeDepth deep: a tree can list the
// same subtree many times over, so a small commit may name millions of
// paths. r.mu is held.
func (t *treeFS) load(ctx context.Context, dir *node, dirPath string, tree *object.Tree) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, e := range tree.Entries {
		n := &node{name: e.Name, mode: e.Mode, hash: e.Hash}
		p := e.Name
		if dirPath != "." {
			p = dirPath + "/" + e.Name
		}
		if err := checkTreeBounds(t.commit, p, len(t.nodes)); err != nil {
			return err
		}
		t.nodes[p] = n
		dir.children = append(dir.children, n)
		if e.Mode != filemode.Dir {
			continue
		}
		sub, err := t.r.repo.TreeObject(e.Hash)
		if err != nil {
			return t.r.noteDamage(fmt.Errorf("tree %s of %s: %w", p, t.commit, err))
		}
		if err := t.load(ctx, n, p, sub); err != nil {
			return err
		}
	}
	slices.SortFunc(dir.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	return nil
}

// lookup returns the node at name, following symlinks in every element when
// follow is true, and in every element but the last when it is false.
func (t *treeFS) lookup(op, name string, follow bool) (string, *node, error) {
	if !fs.ValidPath(name) {
		return "", nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	links := 0
	rest := strings.Split(name, "/")
	if name == "." {
		rest = nil
	}
	cur := "."
	for len(rest) > 0 {
		elem := rest[0]
		rest = rest[1:]
		next := elem
		if cur != "." {
			next = cur + "/" + elem
		}
		n, ok := t.nodes[next]
		if !ok {
			return "", nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if n.mode == filemode.Symlink && (follow || len(rest) > 0) {
			links++
			if links > maxLinks {
				return "", nil, &fs.PathError{Op: op, Path: name, Err: errors.New("too many symlinks")}
			}
			target, err := t.readBlob(n.hash, maxLinkTarget)
			if err != nil {
				return "", nil, &fs.PathError{Op: op, Path: name, Err: err}
			}
			resolved, ok := joinLink(cur, string(target))
			if !ok {
				return "", nil, &fs.PathError{Op: op, Path: name, Err: ErrSymlinkEscapes}
			}
			var parts []string
			if resolved != "." {
				parts = strings.Split(resolved, "/")
			}
			rest = append(parts, rest...)
			cur = "."
			continue
		}
		if len(rest) > 0 && n.mode != filemode.Dir {
			return "", nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		cur = next
	}
	return cur, t.nodes[cur], nil
}

// joinLink resolves a symlink's target against the directory holding it;
// false when it leaves the tree.
func joinLink(dir, target string) (string, bool) {
	if target == "" || path.IsAbs(target) {
		return "", false
	}
	depth := 0
	if dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	for _, elem := range strings.Split(target, "/") {
		switch elem {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", false
			}
		default:
			depth++
		}
	}
	return path.Join(dir, target), true
}

// readBlob returns a blob's content, refusing one larger than max from its
// header, before reading it.
func (t *treeFS) readBlob(h plumbing.Hash, max int64) ([]byte, error) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	size, err := t.r.objectSize(h)
	if err != nil {
		return nil, t.r.noteDamage(fmt.Errorf("blob %s of %s: %w", h, t.commit, err))
	}
	if size > max {
		return nil, &Error{Op: "read", URL: t.r.redacted, Kind: ErrTooLarge, Err: fmt.Errorf("blob %s of %s is %d bytes, more than %d", h, t.commit, size, max)}
	}
	b, err := t.r.repo.BlobObject(h)
	if err != nil {
		return nil, t.r.noteDamage(fmt.Errorf("blob %s of %s: %w", h, t.commit, err))
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, t.r.noteDamage(fmt.Errorf("blob %s of %s: %w", h, t.commit, err))
	}
	defer rd.Close()
	data, err := io.ReadAll(io.LimitReader(rd, max+1))
	if err == nil && int64(len(data)) != size {
		err = fmt.Errorf("read %d bytes, its header says %d", len(data), size)
	}
	if err != nil {
		return nil, t.r.noteDamage(fmt.Errorf("blob %s of %s: %w", h, t.commit, err))
	}
	return data, nil
}

// blobSize is a blob's size from its header, or 0 when it cannot be read
// (reading it then says why).
func (t *treeFS) blobSize(h plumbing.Hash) int64 {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	size, err := t.r.objectSize(h)
	if err != nil {
		return 0
	}
	return size
}

func (t *treeFS) info(n *node) fs.FileInfo {
	fi := &fileInfo{name: n.name, mode: fsMode(n.mode), when: t.when}
	if n.mode.IsFile() {
		fi.size = t.blobSize(n.hash)
	}
	return fi
}

func fsMode(m filemode.FileMode) fs.FileMode {
	switch m {
	case filemode.Dir:
		return fs.ModeDir | 0o755
	case filemode.Executable:
		return 0o755
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Submodule:
		return fs.ModeIrregular
	}
	return 0o644
}

// Open opens a file or directory, following symlinks inside the tree.
func (t *treeFS) Open(name string) (fs.File, error) {
	p, n, err := t.lookup("open", name, true)
	if err != nil {
		return nil, err
	}
	switch {
	case n.mode == filemode.Dir:
		return &dirFile{t: t, n: n, path: p}, nil
	case n.mode.IsFile():
		data, err := t.readBlob(n.hash, t.r.maxObject())
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &blobFile{info: &fileInfo{name: n.name, mode: fsMode(n.mode), size: int64(len(data)), when: t.when}, Reader: bytes.NewReader(data)}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: not a file or directory (git mode %o)", fs.ErrInvalid, n.mode)}
}

// ReadFile reads a whole file, following symlinks inside the tree.
func (t *treeFS) ReadFile(name string) ([]byte, error) {
	_, n, err := t.lookup("read", name, true)
	if err != nil {
		return nil, err
	}
	if n.mode == filemode.Dir {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	if !n.mode.IsFile() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	data, err := t.readBlob(n.hash, t.r.maxObject())
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

// ReadDir lists a directory sorted by name, following symlinks inside the
// tree.
func (t *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	_, n, err := t.lookup("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if n.mode != filemode.Dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	out := make([]fs.DirEntry, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, dirEntry{t: t, n: c})
	}
	return out, nil
}

// Stat describes a file, following symlinks inside the tree.
func (t *treeFS) Stat(name string) (fs.FileInfo, error) {
	_, n, err := t.lookup("stat", name, true)
	if err != nil {
		return nil, err
	}
	return t.info(n), nil
}

// Lstat describes a file without following a final symlink.
func (t *treeFS) Lstat(name string) (fs.FileInfo, error) {
	_, n, err := t.lookup("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return t.info(n), nil
}

// ReadLink returns a symlink's target as stored, even when it leaves the
// tree.
func (t *treeFS) ReadLink(name string) (string, error) {
	_, n, err := t.lookup("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.mode != filemode.Symlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	target, err := t.readBlob(n.hash, maxLinkTarget)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(target), nil
}

type fileInfo struct {
	name string
	mode fs.FileMode
	size int64
	when time.Time
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *fileInfo) ModTime() time.Time { return fi.when }
func (fi *fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *fileInfo) Sys() any           { return nil }

type dirEntry struct {
	t *treeFS
	n *node
}

func (d dirEntry) Name() string               { return d.n.name }
func (d dirEntry) IsDir() bool                { return d.n.mode == filemode.Dir }
func (d dirEntry) Type() fs.FileMode          { return fsMode(d.n.mode).Type() }
func (d dirEntry) Info() (fs.FileInfo, error) { return d.t.info(d.n), nil }

type blobFile struct {
	info *fileInfo
	*bytes.Reader
}

func (f *blobFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *blobFile) Close() error               { return nil }

type dirFile struct {
	t    *treeFS
	n    *node
	path string
	off  int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.t.info(d.n), nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *dirFile) ReadDir(count int) ([]fs.DirEntry, error) {
	rest := d.n.children[d.off:]
	if count > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if count > 0 && len(rest) > count {
		rest = rest[:count]
	}
	d.off += len(rest)
	out := make([]fs.DirEntry, 0, len(rest))
	for _, c := range rest {
		out = append(out, dirEntry{t: d.t, n: c})
	}
	return out, nil
}

// Revision resolves rev (a full or short hash, a branch, a tag, HEAD~1,
// as git rev-parse reads them, within what go-git understands) to a full
// commit hash, for commands that name revisions, such as outpost plan.
func (r *Repo) Revision(rev string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, err := r.repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", &Error{Op: "read", URL: r.redacted, Kind: ErrCommitNotFound, Err: fmt.Errorf("revision %q: %w", rev, err)}
	}
	if _, err := r.repo.CommitObject(*h); err != nil {
		return "", &Error{Op: "read", URL: r.redacted, Kind: ErrCommitNotFound, Err: fmt.Errorf("revision %q: %w", rev, err)}
	}
	return h.String(), nil
}
