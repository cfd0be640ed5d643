package status

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// RefPrefix is the prefix of every host's notes ref; a host's notes live in
// RefPrefix + host.
const RefPrefix = "refs/notes/outpost/"

// commitTrailer names, in a notes commit's message, the commit whose note
// that notes commit wrote, so that a reader finds a host's latest note
// without comparing trees.
const commitTrailer = "Outpost-Commit: "

// ErrInvalidHost is matched by errors.Is for a host name that cannot be
// part of a ref name.
var ErrInvalidHost = errors.New("invalid host name for a notes ref")

// RefName returns the notes ref of host.
func RefName(host string) (plumbing.ReferenceName, error) {
	if err := checkHost(host); err != nil {
		return "", err
	}
	return plumbing.ReferenceName(RefPrefix + host), nil
}

// checkHost applies git's rules for one ref component (git check-ref-format).
func checkHost(host string) error {
	bad := host == "" || host == "@" || strings.HasPrefix(host, ".") ||
		strings.HasSuffix(host, ".") || strings.HasSuffix(host, ".lock") ||
		strings.Contains(host, "..") || strings.Contains(host, "@{") ||
		strings.ContainsAny(host, "/\\ ~^:?*[")
	for _, c := range host {
		if c < 0x20 || c == 0x7f {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("%w: %q", ErrInvalidHost, host)
	}
	return nil
}

// Notes is one host's notes ref in a local repository: the agent's clone
// cache. Its methods are safe for concurrent use with each other and with a
// Pusher of the same Notes; the caller must not use the repository from
// another goroutine (a fetch) while they run.
type Notes struct {
	repo *git.Repository
	host string
	ref  plumbing.ReferenceName
	now  func() time.Time

	// mu serializes every use of repo by this package: go-git's
	// repositories are not safe for concurrent use.
	mu sync.Mutex
}

// Open returns host's notes in repo.
func Open(repo *git.Repository, host string) (*Notes, error) {
	ref, err := RefName(host)
	if err != nil {
		return nil, err
	}
	return &Notes{repo: repo, host: host, ref: ref, now: time.Now}, nil
}

// OpenPath opens the repository at path (a bare repository or a work tree)
// and returns host's notes in it.
func OpenPath(path, host string) (*Notes, error) {
	repo, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", path, err)
	}
	return Open(repo, host)
}

// Host returns the host whose notes these are.
func (s *Notes) Host() string { return s.host }

// Ref returns the notes ref's name.
func (s *Notes) Ref() plumbing.ReferenceName { return s.ref }

// WriteOptions tune Write.
type WriteOptions struct {
	// Force writes the note even when the latest note says the same.
	Force bool
	// Secrets are replaced by Redacted wherever they appear in the note,
	// beside the user information of URLs, which is always stripped. Pass
	// Secrets(state) of the state the note is about.
	Secrets []string
}

// Write redacts n and writes it as the note on n.Commit, unless the latest
// note of this host has the same outcome (see docs/status.md) and o.Force
// is false. It reports whether it wrote. A note on a commit that already
// has one replaces it; the notes history keeps the old one.
func (s *Notes) Write(ctx context.Context, n Note, o WriteOptions) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if n.Host != s.host {
		return false, fmt.Errorf("%w: note of host %q written into the notes of %q", ErrInvalidNote, n.Host, s.host)
	}
	n = n.Redact(NewRedactor(o.Secrets...))
	body, err := n.Marshal()
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.tip()
	if err != nil {
		return false, err
	}
	var entries map[string]plumbing.Hash
	if old != nil {
		tip, err := object.GetCommit(s.repo.Storer, old.Hash())
		if err != nil {
			return false, fmt.Errorf("read notes commit %s: %w", old.Hash(), err)
		}
		if !o.Force {
			prev, _, err := latest(s.repo.Storer, tip)
			if err == nil && n.sameOutcome(prev) {
				return false, nil
			}
			// A latest note that cannot be read is replaced by a new one.
		}
		if entries, err = noteEntries(tip); err != nil {
			return false, err
		}
	} else {
		entries = map[string]plumbing.Hash{}
	}
	blob, err := writeBlob(s.repo.Storer, body)
	if err != nil {
		return false, err
	}
	entries[n.Commit] = blob
	tree, err := writeTree(s.repo.Storer, entries)
	if err != nil {
		return false, err
	}
	var parents []plumbing.Hash
	if old != nil {
		parents = []plumbing.Hash{old.Hash()}
	}
	sig := object.Signature{Name: "outpost " + s.host, Email: "outpost@" + s.host, When: s.now()}
	msg := fmt.Sprintf("outpost: %s %s %s\n\n%s%s\n", s.host, n.Result, short(n.Commit), commitTrailer, n.Commit)
	c, err := writeCommit(s.repo.Storer, &object.Commit{
		Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: parents,
	})
	if err != nil {
		return false, err
	}
	if err := s.repo.Storer.CheckAndSetReference(plumbing.NewHashReference(s.ref, c), old); err != nil {
		return false, fmt.Errorf("update %s: %w", s.ref, err)
	}
	return true, nil
}

// Latest returns this host's latest note; ok is false when it has none.
// A note of a newer schema comes with a *SchemaError.
func (s *Notes) Latest() (n Note, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, err := s.tip()
	if err != nil || ref == nil {
		return Note{}, false, err
	}
	tip, err := object.GetCommit(s.repo.Storer, ref.Hash())
	if err != nil {
		return Note{}, false, fmt.Errorf("read notes commit %s: %w", ref.Hash(), err)
	}
	n, _, err = latest(s.repo.Storer, tip)
	return n, err == nil || isSchemaError(err), err
}

// Show returns this host's note on commit (a full hash); ok is false when
// there is none.
func (s *Notes) Show(commit string) (n Note, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, err := s.tip()
	if err != nil || ref == nil {
		return Note{}, false, err
	}
	tip, err := object.GetCommit(s.repo.Storer, ref.Hash())
	if err != nil {
		return Note{}, false, fmt.Errorf("read notes commit %s: %w", ref.Hash(), err)
	}
	entries, err := noteEntries(tip)
	if err != nil {
		return Note{}, false, err
	}
	h, found := entries[commit]
	if !found {
		return Note{}, false, nil
	}
	n, err = readNote(s.repo.Storer, h)
	return n, err == nil || isSchemaError(err), err
}

// locked runs f with the repository to itself.
func (s *Notes) locked(f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f()
}

// tip returns the notes ref, or nil when the host has written nothing yet.
func (s *Notes) tip() (*plumbing.Reference, error) {
	ref, err := s.repo.Storer.Reference(s.ref)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.ref, err)
	}
	return ref, nil
}

func isSchemaError(err error) bool {
	var se *SchemaError
	return errors.As(err, &se)
}

func short(h string) string {
	if len(h) > 7 {
		return h[:7]
	}
	return h
}

// noteEntries returns the notes of a notes commit's tree: the annotated
// commit's hash to the note's blob. A tree with fanout directories (as git
// writes for many notes) is read too; Outpost itself writes flat trees.
func noteEntries(c *object.Commit) (map[string]plumbing.Hash, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read notes tree of %s: %w", c.Hash, err)
	}
	return treeEntries(tree)
}

func treeEntries(tree *object.Tree) (map[string]plumbing.Hash, error) {
	out := make(map[string]plumbing.Hash, len(tree.Entries))
	var walk func(t *object.Tree, prefix string) error
	walk = func(t *object.Tree, prefix string) error {
		for _, e := range t.Entries {
			name := prefix + e.Name
			if e.Mode == filemode.Dir {
				sub, err := t.Tree(e.Name)
				if err != nil {
					return fmt.Errorf("read notes tree %s: %w", name, err)
				}
				if err := walk(sub, name); err != nil {
					return err
				}
				continue
			}
			if isHash(name) {
				out[name] = e.Hash
			}
		}
		return nil
	}
	if err := walk(tree, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// latest returns the note that the notes commit c wrote: the one its
// message names, else the one whose blob changed against its parent (when
// the parent is at hand), else the most recent by applied_at.
func latest(s storer.EncodedObjectStorer, c *object.Commit) (Note, string, error) {
	entries, err := noteEntries(c)
	if err != nil {
		return Note{}, "", err
	}
	if commit := trailer(c.Message); commit != "" {
		if h, ok := entries[commit]; ok {
			n, err := readNote(s, h)
			return n, commit, err
		}
	}
	candidates := entries
	if len(c.ParentHashes) > 0 {
		if parent, err := object.GetCommit(s, c.ParentHashes[0]); err == nil {
			if before, err := noteEntries(parent); err == nil {
				candidates = map[string]plumbing.Hash{}
				for k, h := range entries {
					if before[k] != h {
						candidates[k] = h
					}
				}
			}
		}
	}
	var best Note
	var bestCommit string
	var bestErr error
	for k, h := range candidates {
		n, err := readNote(s, h)
		if err != nil && !isSchemaError(err) {
			continue
		}
		if bestCommit == "" || n.AppliedAt.After(best.AppliedAt) || (n.AppliedAt.Equal(best.AppliedAt) && k > bestCommit) {
			best, bestCommit, bestErr = n, k, err
		}
	}
	if bestCommit == "" {
		return Note{}, "", fmt.Errorf("%w: notes commit %s holds no readable note", ErrInvalidNote, c.Hash)
	}
	return best, bestCommit, bestErr
}

// trailer returns the commit named by the Outpost-Commit trailer of msg.
func trailer(msg string) string {
	for line := range strings.Lines(msg) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), commitTrailer); ok && isHash(v) {
			return v
		}
	}
	return ""
}

// maxNoteSize bounds what a reader loads from one note blob.
const maxNoteSize = 1 << 20

func readNote(s storer.EncodedObjectStorer, h plumbing.Hash) (Note, error) {
	blob, err := object.GetBlob(s, h)
	if err != nil {
		return Note{}, fmt.Errorf("read note %s: %w", h, err)
	}
	if blob.Size > maxNoteSize {
		return Note{}, fmt.Errorf("%w: note %s is %d bytes", ErrInvalidNote, h, blob.Size)
	}
	r, err := blob.Reader()
	if err != nil {
		return Note{}, fmt.Errorf("read note %s: %w", h, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return Note{}, fmt.Errorf("read note %s: %w", h, err)
	}
	return Parse(b)
}

func writeBlob(s storer.EncodedObjectStorer, b []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(b)))
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write note: %w", err)
	}
	if _, err := io.Copy(w, bytes.NewReader(b)); err != nil {
		w.Close()
		return plumbing.ZeroHash, fmt.Errorf("write note: %w", err)
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write note: %w", err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write note: %w", err)
	}
	return h, nil
}

// writeTree writes a flat notes tree (no fanout): one entry per annotated
// commit, named by its hash.
func writeTree(s storer.EncodedObjectStorer, entries map[string]plumbing.Hash) (plumbing.Hash, error) {
	names := make([]string, 0, len(entries))
	for k := range entries {
		names = append(names, k)
	}
	slices.Sort(names)
	t := &object.Tree{Entries: make([]object.TreeEntry, 0, len(names))}
	for _, k := range names {
		t.Entries = append(t.Entries, object.TreeEntry{Name: k, Mode: filemode.Regular, Hash: entries[k]})
	}
	obj := s.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write notes tree: %w", err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write notes tree: %w", err)
	}
	return h, nil
}

func writeCommit(s storer.EncodedObjectStorer, c *object.Commit) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write notes commit: %w", err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write notes commit: %w", err)
	}
	return h, nil
}
