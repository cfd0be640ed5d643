package agent

import (
	"context"
	"fmt"
	"log/slog"
)

// revSource is where the daemon's revisions come from.
type revSource interface {
	// Poll returns the source's newest revision, fetching it when it is
	// remote. It is the only call that needs the network.
	Poll(ctx context.Context) (string, error)
	// Snapshot returns the tree of a revision that Poll returned before,
	// from local storage.
	Snapshot(ctx context.Context, rev string) (*Snapshot, error)
	// Verify checks a revision's signature when the configuration asks for
	// signed revisions.
	Verify(ctx context.Context, rev string) error
}

// newRevSource returns the source that cfg names.
func newRevSource(cfg *Config, log *slog.Logger) (revSource, error) {
	if cfg.Source.URL == "" {
		return nil, fmt.Errorf("%w: no source: set source.url in the configuration or pass --source", ErrSource)
	}
	if isOCIURL(cfg.Source.URL) {
		return newOCIRevSource(cfg)
	}
	if gitURL.MatchString(cfg.Source.URL) {
		return newGitRevSource(cfg, log)
	}
	return &dirRevSource{dir: cfg.Source.URL}, nil
}

// dirRevSource reads a plain directory: for local work and demos. Its
// revisions are content hashes, and only the current one can be read, so a
// directory source cannot roll back to older content.
type dirRevSource struct {
	dir  string
	last *Snapshot
}

func (s *dirRevSource) Poll(ctx context.Context) (string, error) {
	snap, err := dirSnapshot(s.dir)
	if err != nil {
		return "", err
	}
	s.last = snap
	return snap.Revision, nil
}

func (s *dirRevSource) Snapshot(ctx context.Context, rev string) (*Snapshot, error) {
	if s.last != nil && s.last.Revision == rev {
		return s.last, nil
	}
	snap, err := dirSnapshot(s.dir)
	if err != nil {
		return nil, err
	}
	if snap.Revision != rev {
		return nil, fmt.Errorf("%w: %s no longer holds revision %s", ErrSource, s.dir, shortRev(rev))
	}
	s.last = snap
	return snap, nil
}

func (s *dirRevSource) Verify(ctx context.Context, rev string) error { return nil }
