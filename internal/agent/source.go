package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
)

// Snapshot is one version of the environment repository, ready to load.
type Snapshot struct {
	// FS is the repository's tree.
	FS fs.FS
	// Revision identifies the version: a commit for Git, a content hash
	// ("sha256:...") for a plain directory.
	Revision string
	// Display prefixes the positions of validation errors so that they
	// point at a file that the operator can open: the directory as given
	// for a local source, empty for a Git one.
	Display string
}

// ErrSource is matched by errors.Is when the source cannot be read.
var ErrSource = errors.New("cannot read source")

// openFunc opens one kind of source.
type openFunc func(ctx context.Context, cfg *Config) (*Snapshot, error)

// gitURL matches what is fetched with Git rather than read as a directory:
// a URL with a scheme, or scp-like user@host:path.
var gitURL = regexp.MustCompile(`^([a-z][a-z0-9+.-]*://|[^/@:]+@[^/:]+:)`)

// openSource reads the configured source. Git sources are fetched by the
// Git package once it is wired in here: this is the one place that decides
// between a directory and a repository.
func openSource(ctx context.Context, cfg *Config) (*Snapshot, error) {
	url := cfg.Source.URL
	if url == "" {
		return nil, fmt.Errorf("%w: no source: set source.url in the configuration or pass --source", ErrSource)
	}
	open := openDir
	if gitURL.MatchString(url) {
		open = openGit
	}
	return open(ctx, cfg)
}

func openGit(ctx context.Context, cfg *Config) (*Snapshot, error) {
	return nil, fmt.Errorf("%w: %s: Git sources are not supported by this build; pass a directory", ErrSource, redactURL(cfg.Source.URL))
}

// redactURL hides a password in a URL's user information.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	at := strings.LastIndex(rest, "@")
	slash := strings.Index(rest, "/")
	if at < 0 || (slash >= 0 && at > slash) {
		return u
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":REDACTED@" + rest[at+1:]
}

// openDir reads a plain directory as it is on disk.
func openDir(ctx context.Context, cfg *Config) (*Snapshot, error) {
	return dirSnapshot(cfg.Source.URL)
}

func dirSnapshot(dir string) (*Snapshot, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrSource, dir)
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
