package oci

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/outpost-gitops/outpost/internal/pull"
)

// Commit is a repository tree at one commit, ready to pack.
type Commit struct {
	Hash   string
	Branch string    // empty for a detached revision
	Time   time.Time // the committer's
	Tree   fs.FS
}

// ReadCommit resolves rev (default: HEAD) in the Git repository at dir, or
// in the repository that holds dir, and returns its tree as the agent reads
// a commit's tree: through the pull package, with the same bounds on
// objects and paths. File contents are read when the tree is packed.
func ReadCommit(ctx context.Context, dir, rev string) (Commit, error) {
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
	root := dir
	if wt, err := repo.Worktree(); err == nil {
		root = wt.Filesystem.Root()
	}
	src, err := pull.Open("", pull.Config{URL: root}, nil)
	if err != nil {
		return Commit{}, err
	}
	tree, err := src.Tree(ctx, h.String())
	if err != nil {
		return Commit{}, fmt.Errorf("%s: %w", dir, err)
	}
	commit, err := repo.CommitObject(*h)
	if err != nil {
		return Commit{}, fmt.Errorf("%s: %w", dir, err)
	}
	c.Hash, c.Time, c.Tree = h.String(), commit.Committer.When, tree
	return c, nil
}
