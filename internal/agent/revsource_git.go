package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// gitRevSource reads revisions from a Git repository through a clone cache in
// the state directory: Poll fetches, Snapshot and Verify read the cache.
type gitRevSource struct {
	repo   *pull.Repo
	verify bool
}

func newGitRevSource(cfg *Config, log *slog.Logger) (revSource, error) {
	repo, err := pull.Open(filepath.Join(cfg.StateDir, "git"), pullConfig(cfg), log)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	return &gitRevSource{repo: repo, verify: cfg.Source.Verify.AllowedSigners != "" || cfg.Source.Verify.OpenPGPKeyring != ""}, nil
}

// pullConfig maps the agent's source configuration onto the Git package's.
func pullConfig(cfg *Config) pull.Config {
	s := cfg.Source
	return pull.Config{
		URL:     s.URL,
		Branch:  s.Branch,
		Timeout: time.Duration(s.Timeout),
		// An object larger than the largest file a manifest may read can
		// be of no use, and go-git holds each object whole while it
		// indexes a fetch.
		MaxObjectBytes: spec.DefaultMaxFileSize,
		MaxFetchBytes:  s.MaxFetchBytes,
		Auth: pull.Auth{
			SSHKeyFile:     s.Auth.SSHKeyFile,
			KnownHostsFile: s.Auth.KnownHostsFile,
			Username:       s.Auth.Username,
			PasswordFile:   s.Auth.PasswordFile,
			TokenFile:      s.Auth.TokenFile,
			CAFile:         s.Auth.CAFile,
		},
		Verify: pull.Verify{
			AllowedSigners: s.Verify.AllowedSigners,
			OpenPGPKeyring: s.Verify.OpenPGPKeyring,
		},
	}
}

func (s *gitRevSource) Poll(ctx context.Context) (string, error) {
	res, err := s.repo.Poll(ctx)
	if err != nil {
		return "", err
	}
	return res.Commit, nil
}

func (s *gitRevSource) Snapshot(ctx context.Context, rev string) (*Snapshot, error) {
	fsys, err := s.repo.Tree(ctx, rev)
	if err != nil {
		return nil, err
	}
	return &Snapshot{FS: fsys, Revision: rev, Commit: rev}, nil
}

// Message returns the message of the commit rev.
func (s *gitRevSource) Message(rev string) (string, error) { return s.repo.Message(rev) }

// Descends reports whether commit descends from ancestor, from the cache.
func (s *gitRevSource) Descends(commit, ancestor string) bool {
	return s.repo.Descends(commit, ancestor)
}

// Commit returns rev: a Git revision is its commit.
func (s *gitRevSource) Commit(rev string) string { return rev }

func (s *gitRevSource) Verify(ctx context.Context, rev string) error {
	if !s.verify {
		return nil
	}
	return s.repo.Verify(rev)
}

// transient reports whether a source error is worth retrying soon (the
// network, a server error) rather than at the normal interval.
func transient(err error) bool { return pull.IsTransient(err) }
