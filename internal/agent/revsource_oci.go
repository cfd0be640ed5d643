package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-gitops/outpost/internal/oci"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/status"
)

// ociRevSource reads revisions from an OCI artifact that outpost publish
// pushed. A revision is the artifact's manifest digest; each one is unpacked
// once into a content-addressed cache in the state directory. A poll is one
// HEAD of the tag when the digest is already cached.
type ociRevSource struct {
	ref        string
	cache      string
	signers    []pull.AllowedSigner
	opts       []remote.Option  // credentials: source.auth, else config.json
	unverified map[string]error // digests refused by allowed_signers
	origins    map[string]ociOrigin
}

// ociOrigin is what an artifact says it was packed from: the commit,
// branch and repository of its annotations. It is kept beside the unpacked
// tree (DIGEST.json) so that a restart without the registry still knows it.
type ociOrigin struct {
	Commit string `json:"commit"`
	Branch string `json:"branch,omitempty"`
	Source string `json:"source,omitempty"`
}

func newOCIRevSource(cfg *Config) (revSource, error) {
	s := &ociRevSource{ref: cfg.Source.URL, cache: filepath.Join(cfg.StateDir, "oci"), unverified: map[string]error{}, origins: map[string]ociOrigin{}}
	if f := cfg.Source.Verify.AllowedSigners; f != "" {
		signers, err := pull.ReadAllowedSigners(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSource, err)
		}
		s.signers = signers
	}
	a := cfg.Source.Auth
	opts, err := oci.Auth{Username: a.Username, PasswordFile: a.PasswordFile, TokenFile: a.TokenFile, CAFile: a.CAFile}.Options()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	s.opts = opts
	if err := os.MkdirAll(s.cache, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	return s, nil
}

func (s *ociRevSource) dir(d v1.Hash) string { return filepath.Join(s.cache, d.Hex) }

func (s *ociRevSource) Poll(ctx context.Context) (string, error) {
	ref, err := oci.ParseRef(s.ref)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrSource, err)
	}
	opts := s.opts
	d, err := oci.Head(ctx, ref, opts...)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrSource, err)
	}
	if _, err := os.Stat(s.dir(d)); err == nil {
		if _, err := os.Stat(s.originFile(d)); errors.Is(err, fs.ErrNotExist) {
			s.learnOrigin(ctx, ref, d)
		}
		return d.String(), nil
	}
	if _, seen := s.unverified[d.String()]; seen {
		return d.String(), nil
	}
	f, err := oci.Fetch(ctx, ref, d, s.signers, s.dir(d), opts...)
	if err != nil {
		if errors.Is(err, oci.ErrUnverified) {
			// Verify reports it, as for an unsigned Git commit,
			// against the commit the artifact names.
			s.unverified[d.String()] = err
			if status.IsHash(f.Revision) {
				s.origins[d.String()] = ociOrigin{Commit: f.Revision, Branch: f.Branch, Source: f.Source}
			}
			return d.String(), nil
		}
		return "", fmt.Errorf("%w: %w", ErrSource, err)
	}
	if err := s.keepOrigin(d, f); err != nil {
		return "", fmt.Errorf("%w: %w", ErrSource, err)
	}
	return d.String(), nil
}

// keepOrigin writes what the verified artifact d was packed from beside
// its tree.
func (s *ociRevSource) keepOrigin(d v1.Hash, f oci.Fetched) error {
	o := ociOrigin{Commit: f.Revision, Branch: f.Branch, Source: f.Source}
	if !status.IsHash(o.Commit) {
		o.Commit = ""
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.originFile(d), b, 0o600); err != nil {
		return err
	}
	s.origins[d.String()] = o
	return nil
}

// learnOrigin fetches and checks the cached artifact d once more, into a
// directory that is then removed, to learn its origin: a tree unpacked
// before origins were kept, or one whose origin a crash left unwritten.
// The tree in force stays as it is; a failure leaves the origin unknown
// until the next poll.
func (s *ociRevSource) learnOrigin(ctx context.Context, ref name.Reference, d v1.Hash) {
	tmp, err := os.MkdirTemp(s.cache, ".origin-")
	if err != nil {
		return
	}
	defer os.RemoveAll(tmp)
	f, err := oci.Fetch(ctx, ref, d, s.signers, filepath.Join(tmp, "tree"), s.opts...)
	if err != nil {
		return
	}
	_ = s.keepOrigin(d, f)
}

func (s *ociRevSource) originFile(d v1.Hash) string { return filepath.Join(s.cache, d.Hex+".json") }

// origin returns what the artifact rev was packed from, as its verified
// manifest said; the zero value when it is not known (an artifact that has
// no commit annotation, or one that was never unpacked here).
func (s *ociRevSource) origin(rev string) ociOrigin {
	if o, ok := s.origins[rev]; ok {
		return o
	}
	o, ok := readOCIOrigin(s.cache, rev)
	if ok {
		s.origins[rev] = o
	}
	return o
}

// readOCIOrigin reads the origin of the artifact rev from the cache
// directory; ok is false when it is not there.
func readOCIOrigin(cache, rev string) (o ociOrigin, ok bool) {
	d, err := v1.NewHash(rev)
	if err != nil {
		return ociOrigin{}, false
	}
	b, err := os.ReadFile(filepath.Join(cache, d.Hex+".json"))
	if err != nil || json.Unmarshal(b, &o) != nil {
		return ociOrigin{}, false
	}
	if !status.IsHash(o.Commit) {
		o.Commit = ""
	}
	return o, true
}

// ociCommits returns the commit of rev and its digest, from the OCI
// cache of stateDir: ("", "") stays so, a Git revision is returned as it
// is, and an artifact whose commit is not known keeps its digest alone.
func ociCommits(stateDir, rev string) (commit, digest string) {
	if !strings.HasPrefix(rev, "sha256:") {
		return rev, ""
	}
	o, _ := readOCIOrigin(filepath.Join(stateDir, "oci"), rev)
	if o.Commit == "" {
		return rev, ""
	}
	return o.Commit, rev
}

// Commit returns the Git commit that the artifact rev was packed from, or
// "" when it is not known.
func (s *ociRevSource) Commit(rev string) string { return s.origin(rev).Commit }

func (s *ociRevSource) Snapshot(ctx context.Context, rev string) (*Snapshot, error) {
	d, err := v1.NewHash(rev)
	if err != nil {
		return nil, fmt.Errorf("%w: revision %q: %w", ErrSource, rev, err)
	}
	if _, err := os.Stat(s.dir(d)); err != nil {
		return nil, fmt.Errorf("%w: artifact %s is not in the cache: %w", ErrSource, rev, err)
	}
	return &Snapshot{FS: os.DirFS(s.dir(d)), Revision: rev, Commit: s.Commit(rev)}, nil
}

func (s *ociRevSource) Verify(ctx context.Context, rev string) error {
	return s.unverified[rev]
}

func isOCIURL(u string) bool { return strings.HasPrefix(u, "oci://") }
