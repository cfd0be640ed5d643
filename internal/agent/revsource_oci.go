package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-gitops/outpost/internal/oci"
	"github.com/outpost-gitops/outpost/internal/pull"
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
}

func newOCIRevSource(cfg *Config) (revSource, error) {
	s := &ociRevSource{ref: cfg.Source.URL, cache: filepath.Join(cfg.StateDir, "oci"), unverified: map[string]error{}}
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
		return d.String(), nil
	}
	if _, seen := s.unverified[d.String()]; seen {
		return d.String(), nil
	}
	if _, err := oci.Fetch(ctx, ref, d, s.signers, s.dir(d), opts...); err != nil {
		if errors.Is(err, oci.ErrUnverified) {
			// Verify reports it, as for an unsigned Git commit.
			s.unverified[d.String()] = err
			return d.String(), nil
		}
		return "", fmt.Errorf("%w: %w", ErrSource, err)
	}
	return d.String(), nil
}

func (s *ociRevSource) Snapshot(ctx context.Context, rev string) (*Snapshot, error) {
	d, err := v1.NewHash(rev)
	if err != nil {
		return nil, fmt.Errorf("%w: revision %q: %w", ErrSource, rev, err)
	}
	if _, err := os.Stat(s.dir(d)); err != nil {
		return nil, fmt.Errorf("%w: artifact %s is not in the cache: %w", ErrSource, rev, err)
	}
	return &Snapshot{FS: os.DirFS(s.dir(d)), Revision: rev}, nil
}

func (s *ociRevSource) Verify(ctx context.Context, rev string) error {
	return s.unverified[rev]
}

func isOCIURL(u string) bool { return strings.HasPrefix(u, "oci://") }
