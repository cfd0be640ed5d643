package status

import (
	"fmt"
	"io"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// rebaseOnto makes the local notes ref descend from remote, the remote's
// notes commit for this host (zero when the remote has none): the local
// notes commits that remote lacks are replayed on top of it, each with the
// notes it added or changed, so that the next push fast-forwards and no
// note of either side is lost. When the host has written nothing locally,
// the local ref starts from remote.
//
// The caller holds s.mu.
//
// It stays one function: the replay reads and writes one set of trees in
// order, and a reader follows it better as one sequence.
func (s *Notes) rebaseOnto(remote plumbing.Hash) error {
	if remote.IsZero() {
		return nil
	}
	st := s.repo.Storer
	old, err := s.tip()
	if err != nil {
		return err
	}
	if old == nil {
		return s.setTip(remote, nil)
	}
	if old.Hash() == remote {
		return nil
	}
	remoteHas, err := ancestors(st, remote)
	if err != nil {
		return err
	}
	if remoteHas[old.Hash()] {
		return s.setTip(remote, old) // the local ref is behind: catch up
	}
	// The local notes commits that the remote lacks, newest first, along
	// first parents (Outpost writes no merges).
	var replay []*object.Commit
	for h := old.Hash(); !h.IsZero() && !remoteHas[h]; {
		c, err := object.GetCommit(st, h)
		if err != nil {
			return fmt.Errorf("read notes commit %s: %w", h, err)
		}
		replay = append(replay, c)
		h = plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			h = c.ParentHashes[0]
		}
	}
	if last := replay[len(replay)-1]; len(last.ParentHashes) > 0 && last.ParentHashes[0] == remote {
		return nil // already built on remote
	}
	base, err := object.GetCommit(st, remote)
	if err != nil {
		return fmt.Errorf("read remote notes commit %s: %w", remote, err)
	}
	entries, err := noteEntries(base)
	if err != nil {
		return err
	}
	cur := remote
	for _, c := range slices.Backward(replay) {
		after, err := noteEntries(c)
		if err != nil {
			return err
		}
		before := map[string]plumbing.Hash{}
		if len(c.ParentHashes) > 0 {
			p, err := object.GetCommit(st, c.ParentHashes[0])
			if err != nil {
				return fmt.Errorf("read notes commit %s: %w", c.ParentHashes[0], err)
			}
			if before, err = noteEntries(p); err != nil {
				return err
			}
		}
		for k, h := range after {
			if before[k] != h {
				entries[k] = h
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				delete(entries, k)
			}
		}
		tree, err := writeTree(st, entries)
		if err != nil {
			return err
		}
		cur, err = writeCommit(st, &object.Commit{
			Author:       c.Author,
			Committer:    c.Committer,
			Message:      c.Message,
			TreeHash:     tree,
			ParentHashes: []plumbing.Hash{cur},
		})
		if err != nil {
			return err
		}
	}
	return s.setTip(cur, old)
}

func (s *Notes) setTip(h plumbing.Hash, old *plumbing.Reference) error {
	if err := s.repo.Storer.CheckAndSetReference(plumbing.NewHashReference(s.ref, h), old); err != nil {
		return fmt.Errorf("update %s: %w", s.ref, err)
	}
	return nil
}

// ancestors returns every commit reachable from h, h included.
func ancestors(st storer.EncodedObjectStorer, h plumbing.Hash) (map[plumbing.Hash]bool, error) {
	seen := map[plumbing.Hash]bool{}
	stack := []plumbing.Hash{h}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		c, err := object.GetCommit(st, h)
		if err != nil {
			return nil, fmt.Errorf("read notes commit %s: %w", h, err)
		}
		stack = append(stack, c.ParentHashes...)
	}
	return seen, nil
}

// copyNotes copies the notes commits reachable from tip, with their trees
// and notes, from src to dst, stopping at commits dst already has.
func copyNotes(dst, src storer.EncodedObjectStorer, tip plumbing.Hash) error {
	stack := []plumbing.Hash{tip}
	seen := map[plumbing.Hash]bool{}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[h] || dst.HasEncodedObject(h) == nil {
			continue
		}
		seen[h] = true
		c, err := object.GetCommit(src, h)
		if err != nil {
			return fmt.Errorf("read notes commit %s: %w", h, err)
		}
		if err := copyTree(dst, src, c.TreeHash); err != nil {
			return err
		}
		if err := copyObject(dst, src, h); err != nil {
			return err
		}
		stack = append(stack, c.ParentHashes...)
	}
	return nil
}

func copyTree(dst, src storer.EncodedObjectStorer, h plumbing.Hash) error {
	if dst.HasEncodedObject(h) == nil {
		return nil
	}
	t, err := object.GetTree(src, h)
	if err != nil {
		return fmt.Errorf("read notes tree %s: %w", h, err)
	}
	for _, e := range t.Entries {
		if e.Mode == filemode.Dir {
			if err := copyTree(dst, src, e.Hash); err != nil {
				return err
			}
			continue
		}
		if dst.HasEncodedObject(e.Hash) == nil {
			continue
		}
		if err := copyObject(dst, src, e.Hash); err != nil {
			return err
		}
	}
	return copyObject(dst, src, h)
}

func copyObject(dst, src storer.EncodedObjectStorer, h plumbing.Hash) error {
	obj, err := src.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return fmt.Errorf("read object %s: %w", h, err)
	}
	out := dst.NewEncodedObject()
	out.SetType(obj.Type())
	out.SetSize(obj.Size())
	r, err := obj.Reader()
	if err != nil {
		return fmt.Errorf("read object %s: %w", h, err)
	}
	defer r.Close()
	w, err := out.Writer()
	if err != nil {
		return fmt.Errorf("copy object %s: %w", h, err)
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return fmt.Errorf("copy object %s: %w", h, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("copy object %s: %w", h, err)
	}
	if _, err := dst.SetEncodedObject(out); err != nil {
		return fmt.Errorf("copy object %s: %w", h, err)
	}
	return nil
}
