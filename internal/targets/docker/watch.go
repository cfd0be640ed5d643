package docker

import (
	"context"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// Watch follows the engine's event stream, filtered to Outpost's
// containers, and calls notify with the resource of every container event
// among rs. It notifies every resource once at start, and again each time
// it has reopened a dropped stream (the engine restarted), since events were
// missed meanwhile. It returns nil when ctx is done.
func (d *Driver) Watch(ctx context.Context, rs []*spec.Resource, notify func(spec.ID)) error {
	ids := map[string]spec.ID{}
	for _, r := range rs {
		if Of(r) != nil {
			ids[Of(r).Name] = r.ID
		}
	}
	all := func() {
		for _, r := range rs {
			if Of(r) != nil {
				notify(r.ID)
			}
		}
	}
	backoff := d.opts.ReconnectMin
	for {
		opened := time.Now()
		err := d.follow(ctx, ids, all, notify)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(opened) > d.opts.ReconnectMax {
			backoff = d.opts.ReconnectMin
		}
		d.log.Warn("docker event stream dropped; reconnecting", "error", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, d.opts.ReconnectMax)
	}
}

// follow opens one event stream, notifies every resource once it is open,
// and forwards its events until it fails or ctx is done.
func (d *Driver) follow(ctx context.Context, ids map[string]spec.ID, all func(), notify func(spec.ID)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := d.api.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", LabelManaged+"=true"),
	)})
	// The stream is open (or failing) before the full check, so that no
	// change between the two is missed.
	all()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case m := <-msgs:
			if strings.HasPrefix(string(m.Action), "exec_") {
				continue
			}
			if id, ok := ids[m.Actor.Attributes[LabelResource]]; ok {
				d.log.Debug("docker event", "resource", id.String(), "action", string(m.Action))
				notify(id)
			}
		}
	}
}
