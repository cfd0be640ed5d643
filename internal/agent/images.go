package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
)

// images resolves the tags of containers that follow their registry: the
// resolved tag@digest of each is kept in the state directory, so a restart
// pins the same image without the registry, and a tag whose deployment
// failed is marked bad for this host.
type images struct {
	store  *registry.Store
	poller *registry.Poller
}

// newImages builds the registry client, with the credentials that the
// Docker config file holds now, over store; a nil store is opened in the
// state directory. The client keeps each registry's session and its
// credentials, so a reload builds it again.
func newImages(cfg *Config, log *slog.Logger, store *registry.Store) (*images, error) {
	if store == nil {
		var err error
		if store, err = registry.OpenStore(cfg.StateDir); err != nil {
			return nil, err
		}
	}
	res, err := registry.NewResolver(registry.Options{Bad: store, Logger: log, UserAgent: "outpost/" + Version})
	if err != nil {
		return nil, err
	}
	return &images{
		store: store,
		poller: registry.NewPoller(res, store, registry.PollerOptions{
			HostName: cfg.Host.Name,
			Interval: time.Duration(cfg.Images.Interval),
			Logger:   log,
		}),
	}, nil
}

// following returns the containers of st that follow their registry.
func following(st *spec.State) []*spec.Container {
	var cs []*spec.Container
	for _, r := range st.Resources {
		if c := r.Container; c != nil && c.Update != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

// pin sets the tag and digest of every following container of st from the
// store; with resolve true it first polls the registries of those that have
// none yet. A container left unresolved fails when it is converged, with
// the registry's error.
func (im *images) pin(ctx context.Context, st *spec.State, resolve bool) {
	unresolved := im.store.PinState(st)
	if len(unresolved) == 0 || !resolve {
		return
	}
	var cs []*spec.Container
	for _, c := range following(st) {
		for _, n := range unresolved {
			if c.Name == n {
				cs = append(cs, c)
			}
		}
	}
	im.poller.Poll(ctx, cs) // errors are recorded in the store per container
	im.store.PinState(st)
}

// markBad records the images of following containers that failed in a
// converge, so that the next pin falls back to the previous tag. It reports
// whether it marked any.
func (im *images) markBad(st *spec.State, failed map[spec.ID]string) bool {
	marked := false
	for _, r := range st.Resources {
		c := r.Container
		reason, bad := failed[r.ID]
		if c == nil || c.Update == nil || !bad || c.Tag == "" {
			continue
		}
		if err := im.store.MarkBad(c.Name, c.Tag, c.Digest, reason); err == nil {
			marked = true
		}
	}
	return marked
}

// ImagesReport renders the source for this host, checks the registries of
// the containers that follow one, and returns `outpost images`'s rows.
func ImagesReport(ctx context.Context, cfg *Config, log *slog.Logger) ([]registry.Row, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prior, err := state.New(cfg.StateDir).Load()
	if err != nil {
		return nil, err
	}
	snap, _, err := openSourceOr(ctx, cfg, log, prior.LastGood)
	if err != nil {
		return nil, err
	}
	desired, err := desiredState(snap, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shortRev(snap.Revision), err)
	}
	im, err := newImages(cfg, log, nil)
	if err != nil {
		return nil, err
	}
	cs := following(desired)
	im.poller.Poll(ctx, cs) // per-container errors land in the rows
	return registry.Report(cs, im.store, nil), nil
}

// failedIDs maps each failed item of a pass to its error.
func failedIDs(res *converge.Result) map[spec.ID]string {
	out := map[spec.ID]string{}
	if res == nil {
		return out
	}
	for _, it := range res.Failed() {
		out[it.ID] = it.Err.Error()
	}
	return out
}
