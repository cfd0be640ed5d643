package registry_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// The daemon's wiring: one store and one resolver for the agent's life, a
// poller at images.interval, every rendered state pinned from the store
// before it is converged, and a failed deployment marked bad.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	store, err := registry.OpenStore("/var/lib/outpost")
	if err != nil {
		log.Error("images state", "error", err)
		return
	}
	res, err := registry.NewResolver(registry.Options{Bad: store, Logger: log})
	if err != nil {
		log.Error("registry client", "error", err)
		return
	}
	poller := registry.NewPoller(res, store, registry.PollerOptions{
		HostName: "edge-042",
		Interval: 5 * time.Minute, // images.interval
		Logger:   log,
	})

	var desired *spec.State // rendered from the current commit
	following := func() []*docker.Container {
		var cs []*docker.Container
		for _, r := range desired.Resources {
			if docker.Of(r) != nil && docker.Of(r).Update != nil {
				cs = append(cs, docker.Of(r))
			}
		}
		return cs
	}
	reconcileNow := func() {} // asks the daemon for a pass

	// Before each pass: containers with nothing resolved yet are not
	// created until a poll resolves them.
	_ = store.PinState(desired)

	// The poll loop, owned by the daemon: cancel stops it, done says it
	// has stopped.
	done := make(chan error, 1)
	go func() { done <- poller.Run(ctx, following, func([]registry.Update) { reconcileNow() }) }()
	defer func() { cancel(); <-done }()

	// When the Docker target reports that a new container did not become
	// healthy and put the old one back (docker.ErrUnhealthy):
	onUnhealthy := func(c *docker.Container, err error) {
		if err := store.MarkBad(c.Name, c.Tag, c.Digest, err.Error()); err != nil {
			log.Error("images state", "error", err)
		}
		reconcileNow() // pins the previous tag@digest again
	}
	_ = onUnhealthy

	// outpost images:
	rows := registry.Report(following(), store, nil)
	registry.WriteText(os.Stdout, rows)
}
