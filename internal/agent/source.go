package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"regexp"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// Snapshot is one version of the environment repository, ready to load.
type Snapshot struct {
	// FS is the repository's tree.
	FS fs.FS
	// Revision identifies the version: a commit for Git, a content hash
	// ("sha256:...") for a plain directory.
	Revision string
	// Commit is the Git commit the version was made from: the revision
	// itself for Git, the commit an OCI artifact was packed from (its
	// annotation; "" when it has none), "" for a plain directory.
	Commit string
	// Display prefixes the positions of validation errors so that they
	// point at a file that the operator can open: the directory as given
	// for a local source, empty for a Git one.
	Display string
}

// ErrSource is matched by errors.Is when the source cannot be read.
var ErrSource = errors.New("cannot read source")

// gitURL matches what is fetched with Git rather than read as a directory:
// a URL with a scheme, or scp-like user@host:path.
var gitURL = regexp.MustCompile(`^([a-z][a-z0-9+.-]*://|[^/@:]+@[^/:]+:)`)

// openSource reads the configured source's newest revision for one pass of
// diff or apply: the daemon's source (a directory or a Git repository)
// polled once, its signature verified when the configuration asks for
// signed revisions.
func openSource(ctx context.Context, cfg *Config, log *slog.Logger) (*Snapshot, error) {
	snap, _, err := openSourceOr(ctx, cfg, log, "")
	return snap, err
}

// openSourceOr reads the source's newest revision, or lastGood when the tip
// cannot be used: the server is away, or the tip is not verified. The
// choice says which and why. Without a usable tip and without lastGood it
// fails, matching pull.ErrNoGoodCommit and the cause.
func openSourceOr(ctx context.Context, cfg *Config, log *slog.Logger, lastGood string) (*Snapshot, pull.Choice, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := newRevSource(cfg, log)
	if err != nil {
		return nil, pull.Choice{}, err
	}
	rev, pollErr := src.Poll(ctx)
	var verifyErr error
	if pollErr == nil {
		verifyErr = src.Verify(ctx, rev)
	}
	if ctx.Err() != nil {
		return nil, pull.Choice{}, ctx.Err()
	}
	choice, err := pull.Choose(rev, pollErr, verifyErr, lastGood)
	if err != nil {
		return nil, choice, err
	}
	if choice.Fallback != nil {
		log.Info("converging the last good revision", "revision", choice.Commit, "offline", choice.Offline, "reason", choice.Fallback)
	}
	snap, err := src.Snapshot(ctx, choice.Commit)
	if err != nil {
		return nil, choice, err
	}
	return snap, choice, nil
}

// dirSnapshot reads a plain directory as it is on disk.
func dirSnapshot(dir string) (*Snapshot, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrSource, dir)
	}
	if isBareRepo(dir) {
		return nil, fmt.Errorf("%w: %s is a bare Git repository, not a directory of manifests: validate a checkout of it (git clone %s), or pass it as --source to diff and apply, which fetch it with Git", ErrSource, dir, dir)
	}
	fsys := os.DirFS(dir)
	rev, err := treeHash(fsys)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	return &Snapshot{FS: fsys, Revision: rev, Display: dir}, nil
}

// treeHash identifies a directory's content: its paths, modes, symlink
// targets and file contents, skipping .git. It stands in for a commit.
func treeHash(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return fs.SkipDir
		}
		fmt.Fprintf(h, "%s\x00%o\x00", p, d.Type())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			if rl, ok := fsys.(fs.ReadLinkFS); ok {
				target, err := rl.ReadLink(p)
				if err != nil {
					return err
				}
				io.WriteString(h, target)
			}
		case d.Type().IsRegular():
			// A file over the size limit can be no resource's content,
			// and is refused if named: its size and time stand for it,
			// so that a 2 GB file is not read just to be refused.
			if fi, err := d.Info(); err == nil && fi.Size() > spec.DefaultMaxFileSize {
				fmt.Fprintf(h, "%d\x00%d", fi.Size(), fi.ModTime().UnixNano())
				break
			}
			f, err := fsys.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash the source tree: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
