// Package pull owns Outpost's side of Git: a bare, shallow clone cache of the
// environment repository, cheap polls of its branch, reading a commit's tree
// as an fs.FS, verifying commit signatures (SSH and OpenPGP), classifying
// and retrying failures, and choosing the commit to converge when the server
// is away (the last good one).
//
// pull imports no other Outpost package. It does not know manifests, the
// engine or the state document: the caller keeps the last good commit and
// hands it in.
package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/outpost-gitops/outpost/internal/redact"
)

// DefaultTimeout limits each network operation when Config.Timeout is 0.
const DefaultTimeout = 2 * time.Minute

// Config says where the environment repository is and how to trust it.
type Config struct {
	// URL is https://, http://, ssh://, user@host:path, git://, file:// or
	// a local path. User info in an https URL is used as credentials and
	// never logged.
	URL string
	// Branch is the branch to follow; "" means main.
	Branch string
	Auth   Auth
	Verify Verify
	// Timeout limits each network operation; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxFetchBytes bounds the pack of one fetch; 0 means
	// DefaultMaxFetchBytes.
	MaxFetchBytes int64
	// MaxObjectBytes bounds the inflated size of any object fetched or
	// read; 0 means DefaultMaxObjectBytes.
	MaxObjectBytes int64

	// maxPacks is the pack count above which a fetch merges the cache's
	// packs; 0 means defaultMaxPacks. Tests lower it.
	maxPacks int
	// stopMerge, when set, is asked after each step of a pack merge
	// whether the merge stops there as if the process had died: nothing
	// is cleaned up. Tests set it.
	stopMerge func(step string) bool
}

// Auth names the credential files of a source. Key and CA files are read
// when the Repo is opened, token and password files before each request;
// their content is never logged.
type Auth struct {
	// SSHKeyFile is a private key without a passphrase (ssh sources).
	SSHKeyFile string
	// KnownHostsFile is checked strictly (ssh sources); "" means
	// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.
	KnownHostsFile string
	// Username goes with PasswordFile or TokenFile (https), or is the ssh
	// login when the URL has none.
	Username string
	// PasswordFile holds an https password.
	PasswordFile string
	// TokenFile holds an https access token. Without Username it is sent
	// as the basic auth user name with an empty password (the form Gitea,
	// Forgejo and Gogs document, and GitHub accepts); with Username, as the
	// password of that user name (GitLab's "oauth2", Bitbucket's
	// "x-token-auth", GitHub's "x-access-token").
	TokenFile string
	// CAFile holds PEM certificates trusted for https besides the system's.
	CAFile string
}

// Verify names the keys that must have signed a commit. With both empty no
// signature is checked.
type Verify struct {
	// AllowedSigners is an allowed_signers file as ssh-keygen -Y verify
	// reads it.
	AllowedSigners string
	// OpenPGPKeyring is a file of OpenPGP public keys, armored or binary.
	OpenPGPKeyring string
}

// Enabled reports whether commits must be signed.
func (v Verify) Enabled() bool { return v.AllowedSigners != "" || v.OpenPGPKeyring != "" }

// Repo is a source repository: a clone cache under a directory, or, for a
// local path or file:// URL, the repository itself read in place. Its
// methods are safe for concurrent use.
type Repo struct {
	cfg      Config
	log      *slog.Logger
	dir      string
	tr       Transport
	redacted string
	branch   plumbing.ReferenceName // on the remote
	tracking plumbing.ReferenceName // in the cache

	mu      sync.Mutex // guards repo, damaged, seen and every read of repo
	repo    *git.Repository
	store   *filesystem.Storage // the cache's; nil for a local repository
	damaged error               // why the cache must be cloned again, or nil
	seen    string              // the tip of the last Poll of a local repository
	rm      *Remote             // the server, in protocol v2 where it speaks it (protov2.go)
	// refused holds the tips whose fetch passed a bound, so that polls do
	// not fetch them again until the branch moves.
	refused map[plumbing.Hash]error
}

// Result is the outcome of a Poll.
type Result struct {
	// Commit is the branch tip, now in the local clone.
	Commit string
	// Changed is true when the tip differs from the one fetched before
	// (by this cache; for a local repository, by this Repo).
	Changed bool
}

// Open prepares the source of cfg with its clone cache in dir (created 0700
// when missing; not used for local repositories). It does not touch the
// network. A cache that is damaged is noted and cloned again by the next
// Poll; the commits it held are fetched again then.
func Open(dir string, cfg Config, log *slog.Logger) (*Repo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	tr, err := cfg.Transport()
	if err != nil {
		return nil, &Error{Op: "open", URL: redact.URLs(cfg.URL), Err: err}
	}
	r := &Repo{
		cfg: cfg, dir: dir, tr: tr, redacted: redact.URLs(cfg.URL),
		branch:   plumbing.NewBranchReferenceName(cfg.Branch),
		tracking: plumbing.NewRemoteReferenceName("origin", cfg.Branch),
	}
	r.log = log.With("source", r.redacted, "branch", cfg.Branch)
	r.rm = NewRemote(tr, r.log)
	if tr.Local {
		repo, err := git.PlainOpenWithOptions(tr.LocalPath, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
		if err != nil {
			return nil, &Error{Op: "open", URL: r.redacted, Kind: ErrRepoNotFound, Err: err}
		}
		r.repo = repo
		return r, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &Error{Op: "open", URL: r.redacted, Err: err}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.openCache(); err != nil {
		return nil, err
	}
	return r, nil
}

// Dir returns the clone cache's directory ("" for a local repository).
func (r *Repo) Dir() string {
	if r.tr.Local {
		return ""
	}
	return r.dir
}

// Transport returns how the source is reached.
func (r *Repo) Transport() Transport { return r.tr }

// storage opens the cache's object store with a small object cache: the
// tree of a large repository must not all stay in memory.
// Up to maxOpenPacks pack files stay open between reads (reading a tree of
// thousands of files would otherwise open the pack once per file), and no
// more, whatever the number of packs that years of fetches leave.
func (r *Repo) storage() *filesystem.Storage {
	r.closeStore()
	r.store = filesystem.NewStorageWithOptions(osfs.New(r.dir), cache.NewObjectLRU(8*cache.MiByte),
		filesystem.Options{ExclusiveAccess: true, MaxOpenDescriptors: maxOpenPacks, LargeObjectThreshold: 1 << 20})
	return r.store
}

// maxOpenPacks bounds the file descriptors of the cache.
const maxOpenPacks = 16

// defaultMaxPacks is the number of pack files above which a fetch merges
// them all into one: each fetch adds one, and a cache that follows a
// branch for years would otherwise slow every lookup down.
const defaultMaxPacks = 32

func (r *Repo) maxPacks() int {
	if r.cfg.maxPacks > 0 {
		return r.cfg.maxPacks
	}
	return defaultMaxPacks
}

// closeStore closes the open pack files of the cache. r.mu is held.
func (r *Repo) closeStore() {
	if r.store != nil {
		if err := r.store.Close(); err != nil {
			r.log.Debug("close clone cache", "err", err)
		}
		r.store = nil
	}
}

// Close releases the files and idle connections that the Repo keeps open.
// A Tree read or a Poll after Close opens them again.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rm.closeIdle()
	if r.store != nil {
		return r.store.ObjectStorage.Close()
	}
	return nil
}

// openCache opens or creates the bare cache and checks what the tracking ref
// points to. r.mu is held.
func (r *Repo) openCache() error {
	r.damaged = nil
	r.tidyPacks(true)
	repo, err := git.Open(r.storage(), nil)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.Init(r.store, nil)
		if err != nil {
			return &Error{Op: "open", URL: r.redacted, Err: fmt.Errorf("create clone cache %s: %w", r.dir, err)}
		}
		r.repo = repo
		return nil
	}
	if err != nil {
		r.damaged = err
		r.log.Warn("clone cache damaged; it will be cloned again", "dir", r.dir, "err", err)
		return r.resetCache()
	}
	r.repo = repo
	if err := r.checkTip(); err != nil && !errors.Is(err, ErrTooLarge) {
		r.damaged = err
		r.log.Warn("clone cache damaged; it will be cloned again", "dir", r.dir, "err", err)
	}
	return nil
}

// resetCache removes the cache and creates it empty. r.mu is held.
func (r *Repo) resetCache() error {
	r.closeStore()
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return &Error{Op: "reset", URL: r.redacted, Err: err}
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(r.dir, e.Name())); err != nil {
			return &Error{Op: "reset", URL: r.redacted, Err: err}
		}
	}
	repo, err := git.Init(r.storage(), nil)
	if err != nil {
		return &Error{Op: "reset", URL: r.redacted, Err: fmt.Errorf("create clone cache %s: %w", r.dir, err)}
	}
	r.repo = repo
	r.damaged = nil
	return nil
}

// checkTip reads the tracking ref and every object of its commit's tree,
// so that a truncated pack, a missing object or a broken ref is found
// before it is trusted. A cache without the ref is fine. r.mu is held.
func (r *Repo) checkTip() error {
	ref, err := r.repo.Storer.Reference(r.tracking)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: ref %s: %w", ErrCorrupt, r.tracking, err)
	}
	if ref.Type() != plumbing.HashReference || ref.Hash().IsZero() {
		return fmt.Errorf("%w: ref %s is not a commit", ErrCorrupt, r.tracking)
	}
	return r.checkCommit(ref.Hash())
}

// checkCommit reads the commit, its tree and every blob in it. r.mu is held.
func (r *Repo) checkCommit(h plumbing.Hash) error {
	c, err := r.repo.CommitObject(h)
	if err != nil {
		return fmt.Errorf("%w: commit %s: %w", ErrCorrupt, h, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return fmt.Errorf("%w: tree of %s: %w", ErrCorrupt, h, err)
	}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	read := map[plumbing.Hash]bool{} // a tree may list one blob many times
	for entries := 1; ; entries++ {
		name, e, err := walker.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tree of %s: %w", ErrCorrupt, h, err)
		}
		if err := checkTreeBounds(h.String(), name, entries); err != nil {
			return err
		}
		if e.Mode == filemode.Dir || e.Mode == filemode.Submodule || read[e.Hash] {
			continue
		}
		read[e.Hash] = true
		if err := r.readObject(e.Hash); err != nil {
			if errors.Is(err, ErrTooLarge) {
				return fmt.Errorf("%s in %s: %w", name, h, err)
			}
			return fmt.Errorf("%w: %s in %s: %w", ErrCorrupt, name, h, err)
		}
	}
}

// readObject reads an object through, to check it, after checking its size
// from its header. r.mu is held.
func (r *Repo) readObject(h plumbing.Hash) error {
	size, err := r.objectSize(h)
	if err != nil {
		return err
	}
	if size > r.maxObject() {
		return tooLargef("%d bytes, more than %d", size, r.maxObject())
	}
	o, err := r.repo.Storer.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return err
	}
	rd, err := o.Reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	n, err := io.Copy(io.Discard, rd)
	if err != nil {
		return err
	}
	if n != o.Size() {
		return fmt.Errorf("object %s: read %d of %d bytes", h, n, o.Size())
	}
	return nil
}

// Poll asks the server for the branch tip (ls-refs in protocol v2, see
// protov2.go, or a v0 ref advertisement) and, only when it moved, fetches it: single branch, depth 1, no tags, following
// force-pushes. A damaged cache is cloned again first.
func (r *Repo) Poll(ctx context.Context) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tr.Local {
		return r.pollLocal()
	}
	if r.damaged != nil {
		r.log.Info("cloning again into a damaged cache", "dir", r.dir, "err", r.damaged)
		if err := r.resetCache(); err != nil {
			return Result{}, err
		}
	}
	prev := r.trackedTip()

	tip, err := r.lsRemote(ctx)
	if err != nil {
		return Result{}, err
	}
	if err, ok := r.refused[tip]; ok {
		return Result{}, err
	}
	if tip == prev {
		r.log.Debug("branch unchanged", "commit", tip.String())
		return Result{Commit: tip.String()}, nil
	}
	if r.checkCommit(tip) == nil {
		// A force-push back to a commit that is still here.
		if err := r.repo.Storer.SetReference(plumbing.NewHashReference(r.tracking, tip)); err != nil {
			return Result{}, &Error{Op: "fetch", URL: r.redacted, Kind: ErrCorrupt, Err: err}
		}
	} else if err := r.fetch(ctx); err != nil {
		if errors.Is(err, ErrTooLarge) {
			cause := err
			var pe *Error
			if errors.As(err, &pe) && pe.Err != nil {
				cause = pe.Err
			}
			err = &Error{Op: "fetch", URL: r.redacted, Kind: ErrTooLarge, Err: fmt.Errorf("commit %s: %w", tip, cause), Commit: tip.String()}
			r.refused = map[plumbing.Hash]error{tip: err} // only the newest tip matters
		}
		return Result{}, err
	}
	now := r.trackedTip()
	if now.IsZero() {
		return Result{}, &Error{Op: "fetch", URL: r.redacted, Kind: ErrBranchNotFound, Err: fmt.Errorf("%s", r.cfg.Branch)}
	}
	r.log.Info("fetched new commit", "commit", now.String(), "previous", prev.String())
	return Result{Commit: now.String(), Changed: now != prev}, nil
}

// trackedTip returns the cache's tracking ref, or the zero hash.
func (r *Repo) trackedTip() plumbing.Hash {
	ref, err := r.repo.Storer.Reference(r.tracking)
	if err != nil {
		return plumbing.ZeroHash
	}
	return ref.Hash()
}

// proxyOptions bound ssh connections by the operation's timeout.
func (r *Repo) proxyOptions() transport.ProxyOptions { return r.tr.Proxy }

func (r *Repo) remote() *git.Remote {
	return git.NewRemote(r.fetchStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.tr.URL}})
}

// fetchStorage is the storage that fetches write to: the cache's, with
// its bounds on what a fetch may bring.
func (r *Repo) fetchStorage() storage.Storer {
	if r.store != nil {
		return &boundedStorage{Storage: r.store, dir: r.packDir(), maxFetch: r.maxFetch(), maxObject: r.maxObject()}
	}
	return r.repo.Storer
}

// lsRemote returns the branch's tip on the server.
func (r *Repo) lsRemote(ctx context.Context) (plumbing.Hash, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	refs, err := r.rm.ListRefs(ctx, r.branch.String())
	if err != nil {
		return plumbing.ZeroHash, r.wrapErr("ls-remote", err)
	}
	if tip, ok := refs[r.branch.String()]; ok {
		return tip, nil
	}
	return plumbing.ZeroHash, &Error{Op: "ls-remote", URL: r.redacted, Kind: ErrBranchNotFound, Err: fmt.Errorf("no branch %q", r.cfg.Branch)}
}

// fetch fetches the branch tip at depth 1 into the tracking ref. A fetch that
// fails on the local side (a damaged pack) clones again once.
func (r *Repo) fetch(ctx context.Context) error {
	return r.fetchDepth(ctx, 1)
}

// fetchDepth fetches the branch with depth commits (0: all). r.mu is held.
func (r *Repo) fetchDepth(ctx context.Context, depth int) error {
	r.tidyPacks(false)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	spec := config.RefSpec(fmt.Sprintf("+%s:%s", r.branch, r.tracking))
	opts := &git.FetchOptions{
		RemoteName:   "origin",
		RefSpecs:     []config.RefSpec{spec},
		Depth:        depth,
		Tags:         git.NoTags,
		Force:        true,
		Auth:         r.tr.Auth,
		CABundle:     r.tr.CABundle,
		ProxyOptions: r.proxyOptions(),
	}
	err := r.fetchOnce(ctx, opts)
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		err = nil
	}
	if err != nil {
		werr := r.wrapErr("fetch", err)
		if ctx.Err() != nil || !errors.Is(werr, ErrUnreachable) {
			return werr
		}
		// A failure that is not the network's may be the cache's.
		if cerr := r.checkTip(); cerr == nil {
			return werr
		}
		r.log.Warn("clone cache damaged; cloning again", "dir", r.dir, "err", err)
		if rerr := r.resetCache(); rerr != nil {
			return rerr
		}
		if err := r.fetchOnce(ctx, opts); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return r.wrapErr("fetch", err)
		}
	}
	if err := r.checkTip(); err != nil {
		if errors.Is(err, ErrTooLarge) {
			// Whole, but refused: the cache is fine.
			return &Error{Op: "fetch", URL: r.redacted, Kind: ErrTooLarge, Err: err}
		}
		r.damaged = err
		return &Error{Op: "fetch", URL: r.redacted, Err: err}
	}
	if err := r.compact(); err != nil {
		// The packs are all still there: only slower.
		r.log.Warn("could not merge the clone cache's packs", "dir", r.dir, "err", err)
	}
	return nil
}

// fetchOnce fetches the branch in protocol v2 where the server speaks it
// (fetchv2.go), else with go-git's v0 fetch. r.mu is held.
func (r *Repo) fetchOnce(ctx context.Context, opts *git.FetchOptions) error {
	var haves []plumbing.Hash
	if prev := r.trackedTip(); !prev.IsZero() && opts.Depth == 1 {
		// The next tip's objects that the previous one shares are not
		// sent again. A deeper fetch (an older commit brought back) asks
		// for the history whole.
		haves = append(haves, prev)
	}
	tip, err := r.rm.fetchRef(ctx, r.fetchStorage(), r.branch.String(), haves, opts.Depth)
	switch {
	case errors.Is(err, ErrNotV2):
		return r.remote().FetchContext(ctx, opts)
	case errors.Is(err, plumbing.ErrReferenceNotFound):
		return &Error{Op: "fetch", URL: r.redacted, Kind: ErrBranchNotFound, Err: fmt.Errorf("no branch %q", r.cfg.Branch)}
	case err != nil:
		return err
	}
	r.log.Debug("fetched in git protocol v2", "commit", tip.String(), "depth", opts.Depth)
	return r.repo.Storer.SetReference(plumbing.NewHashReference(r.tracking, tip))
}

// Has reports whether commit and its whole tree are in the repository.
func (r *Repo) Has(commit string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.has(commit)
}

func (r *Repo) has(commit string) bool {
	h := plumbing.NewHash(commit)
	return h.String() == commit && r.checkCommit(h) == nil
}

// deepenSteps are the depths tried, in turn, to bring an older commit back
// into a shallow cache; 0 is the whole history.
var deepenSteps = []int{16, 256, 0}

// Fetch makes sure that commit, which the branch's history holds, is in the
// cache: a cache cloned again after damage holds only the tip, and the last
// good commit must stay readable. It fetches the branch deeper until the
// commit is there. Tree does the same for a commit it does not find.
func (r *Repo) Fetch(ctx context.Context, commit string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ensure(ctx, commit)
}

// ensure is Fetch with r.mu held.
func (r *Repo) ensure(ctx context.Context, commit string) error {
	if r.has(commit) {
		return nil
	}
	if r.tr.Local || plumbing.NewHash(commit).String() != commit {
		return &Error{Op: "read", URL: r.redacted, Kind: ErrCommitNotFound, Err: fmt.Errorf("commit %q", commit)}
	}
	for _, depth := range deepenSteps {
		if err := r.fetchDepth(ctx, depth); err != nil {
			return err
		}
		if r.has(commit) {
			r.log.Info("fetched an older commit again", "commit", commit, "depth", depth)
			return nil
		}
	}
	return &Error{Op: "fetch", URL: r.redacted, Kind: ErrCommitNotFound, Err: fmt.Errorf("commit %s is not in the history of %s", commit, r.cfg.Branch)}
}

func (r *Repo) pollLocal() (Result, error) {
	ref, err := r.repo.Reference(r.branch, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return Result{}, &Error{Op: "read", URL: r.redacted, Kind: ErrBranchNotFound, Err: fmt.Errorf("no branch %q", r.cfg.Branch)}
	}
	if err != nil {
		return Result{}, &Error{Op: "read", URL: r.redacted, Err: err}
	}
	tip := ref.Hash().String()
	res := Result{Commit: tip, Changed: tip != r.seen}
	r.seen = tip
	return res, nil
}

// resolve returns the hash of a commit that is in the repository.
func (r *Repo) resolve(commit string) (*object.Commit, error) {
	h := plumbing.NewHash(commit)
	if len(commit) != 40 || h.String() != commit {
		return nil, &Error{Op: "read", URL: r.redacted, Kind: ErrCommitNotFound, Err: fmt.Errorf("%q is not a full commit hash", commit)}
	}
	c, err := r.repo.CommitObject(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, &Error{Op: "read", URL: r.redacted, Kind: ErrCommitNotFound, Err: fmt.Errorf("commit %s", commit)}
	}
	if err != nil {
		return nil, r.noteDamage(fmt.Errorf("commit %s: %w", commit, err))
	}
	return c, nil
}

// noteDamage marks the cache to be cloned again and returns err as
// ErrCorrupt. r.mu is held.
func (r *Repo) noteDamage(err error) error {
	if !r.tr.Local {
		r.damaged = err
	}
	return &Error{Op: "read", URL: r.redacted, Kind: ErrCorrupt, Err: err}
}

// Message returns the message of commit, which the cache holds.
func (r *Repo) Message(commit string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.resolve(commit)
	if err != nil {
		return "", err
	}
	return c.Message, nil
}

// descendLimit bounds the walk of Descends: a rollout compares commits a
// few pushes apart.
const descendLimit = 256

// Descends reports whether commit is ancestor or descends from it within
// descendLimit commits, as far as the cache holds their history: a commit
// the cache does not hold is not known to descend. It fetches nothing.
func (r *Repo) Descends(commit, ancestor string) bool {
	if commit == ancestor {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := plumbing.NewHash(ancestor)
	queue := []plumbing.Hash{plumbing.NewHash(commit)}
	seen := map[plumbing.Hash]bool{}
	for len(queue) > 0 && len(seen) < descendLimit {
		h := queue[0]
		queue = queue[1:]
		if seen[h] {
			continue
		}
		seen[h] = true
		c, err := r.repo.CommitObject(h)
		if err != nil {
			continue // beyond the shallow boundary, or never fetched
		}
		for _, p := range c.ParentHashes {
			if p == want {
				return true
			}
			queue = append(queue, p)
		}
	}
	return false
}
