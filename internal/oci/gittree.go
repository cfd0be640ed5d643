package oci

import (
	"fmt"
	"io"
	"io/fs"
	"testing/fstest"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Commit is a repository tree at one commit, ready to pack.
type Commit struct {
	Hash   string
	Branch string // empty for a detached revision
	Tree   fs.FS
}

// ReadCommit reads the tree of rev (default: HEAD) in the Git repository at
// dir into memory. Submodules are refused: a host could not resolve them.
func ReadCommit(dir, rev string) (Commit, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return Commit{}, fmt.Errorf("%s: %w", dir, err)
	}
	var c Commit
	if rev == "" {
		rev = "HEAD"
		if head, err := repo.Head(); err == nil && head.Name().IsBranch() {
			c.Branch = head.Name().Short()
		}
	} else if b, err := repo.Reference(plumbing.NewBranchReferenceName(rev), true); err == nil {
		c.Branch = b.Name().Short()
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return Commit{}, fmt.Errorf("%s: revision %q: %w", dir, rev, err)
	}
	commit, err := repo.CommitObject(*h)
	if err != nil {
		return Commit{}, fmt.Errorf("%s: %w", dir, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return Commit{}, fmt.Errorf("%s: %w", dir, err)
	}
	m := fstest.MapFS{}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, e, err := walker.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Commit{}, fmt.Errorf("%s: %w", dir, err)
		}
		if err := addEntry(repo, m, name, e); err != nil {
			return Commit{}, fmt.Errorf("%s: %s: %w", dir, name, err)
		}
	}
	c.Hash, c.Tree = h.String(), m
	return c, nil
}

func addEntry(repo *git.Repository, m fstest.MapFS, name string, e object.TreeEntry) error {
	switch e.Mode {
	case filemode.Dir:
		m[name] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
		return nil
	case filemode.Submodule:
		return fmt.Errorf("submodules cannot be published")
	}
	blob, err := repo.BlobObject(e.Hash)
	if err != nil {
		return err
	}
	r, err := blob.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f := &fstest.MapFile{Data: data, Mode: 0o644}
	switch e.Mode {
	case filemode.Executable:
		f.Mode = 0o755
	case filemode.Symlink:
		f.Mode = fs.ModeSymlink | 0o777
	}
	m[name] = f
	return nil
}
