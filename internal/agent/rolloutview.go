package agent

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/rollout"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
)

// RolloutView is a commit's rollout across the fleet: `outpost fleet
// --rollout`.
type RolloutView struct {
	Commit string `json:"commit"`
	// Halted is true when a wave failed the commit: later waves never
	// take it.
	Halted bool           `json:"halted"`
	Waves  []rollout.Wave `json:"waves"`
}

// FleetRollout reads the rollout of fleet.yaml at commit (the branch's
// tip when empty) from the source, and each wave's hosts from their
// notes. Hosts count as alive for the rollout's alive time, or three of
// this host's poll intervals.
func FleetRollout(ctx context.Context, cfg *Config, commit string) (*RolloutView, error) {
	dir, err := os.MkdirTemp("", "outpost-rollout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	repo, err := pull.Open(dir, pullConfig(cfg), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	defer repo.Close()
	res, err := repo.Poll(ctx)
	if err != nil {
		return nil, err
	}
	if commit == "" {
		commit = res.Commit
	} else if err := repo.Fetch(ctx, commit); err != nil {
		return nil, fmt.Errorf("--commit: %w", err)
	}
	fsys, err := repo.Tree(ctx, commit)
	if err != nil {
		return nil, err
	}
	rp, err := spec.Load(fsys, spec.Options{})
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", shortRev(commit), err)
	}
	r := rp.Rollout()
	if r == nil {
		return nil, fmt.Errorf("commit %s: fleet.yaml has no rollout", shortRev(commit))
	}
	o, url, err := FleetOptions(cfg)
	if err != nil {
		return nil, err
	}
	hosts, err := status.Fleet(ctx, url, o)
	if err != nil {
		return nil, err
	}
	waves := rollout.Waves(rollout.Input{
		Rollout: r, Commit: commit, Hosts: hosts, Now: time.Now(), Alive: aliveTime(cfg, r),
		Later: func(c string) bool { return repo.Descends(c, commit) },
	})
	return &RolloutView{Commit: commit, Halted: rollout.Halted(waves), Waves: waves}, nil
}
