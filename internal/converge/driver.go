// Package converge owns the engine: it plans the difference between a desired
// state and the host, applies it in order (files, units, containers, and
// after edges), isolates failures, restarts what names a changed file,
// prunes what left the desired state, and guards against mass pruning.
//
// converge imports spec and state. It declares the interfaces it needs from
// the targets and never imports a target.
package converge

import (
	"context"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// Driver converges the resources of one kind.
//
// A driver converges in one call and with apply false changes nothing: a dry
// run and an apply share one code path. It only touches objects that it
// marked as Outpost's. It returns when ctx is done: the engine's per-resource
// timeout is that context's deadline. With Options.Workers above 1 the engine
// calls CheckApply and Restarter.Restart concurrently for different resources
// of one kind.
type Driver interface {
	// CheckApply compares r with what is on the host. With apply true it
	// converges the host to r. It returns what differed (ActionNone when
	// nothing did).
	CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error)
	// Remove deletes the owned object id, which left the desired state. An
	// object that is gone already, or is not marked as Outpost's, is left
	// alone and reported as ActionNone.
	Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error)
}

// Restarter is implemented by drivers whose objects restart when a file they
// name in restart_on changes.
type Restarter interface {
	Restart(ctx context.Context, r *spec.Resource) error
}

// HealthChecker is implemented by drivers whose objects have a health: a
// unit's active state, a container's healthcheck.
type HealthChecker interface {
	// Healthy reports whether r is healthy now, and why not.
	Healthy(ctx context.Context, r *spec.Resource) (ok bool, reason string, err error)
}

// HealthWaiter is implemented by drivers that can wait until an object they
// just created or replaced is healthy: the engine waits for what a resource
// comes after (after:) before converging it.
type HealthWaiter interface {
	// WaitHealthy returns when r is healthy, or an error that says why it
	// is not, when it will not be, or when ctx ends.
	WaitHealthy(ctx context.Context, r *spec.Resource) error
}

// Watcher is implemented by drivers that can see their objects change: it
// calls notify with a resource's ID whenever that object may have drifted,
// once for each resource at start, and returns when ctx is done. A spurious
// notification is better than a missed one.
type Watcher interface {
	Watch(ctx context.Context, rs []*spec.Resource, notify func(spec.ID)) error
}

// Preparer is implemented by drivers that do better with a whole pass in
// view, such as one reload of systemd for every changed unit: the engine
// calls Prepare once per pass, before the first CheckApply of the driver's
// kind, with every desired resource of that kind and the pass's apply. An
// error is logged and the pass goes on: each CheckApply still reports its
// own resource's problem. A driver must stay correct when Prepare is not
// called.
type Preparer interface {
	Prepare(ctx context.Context, rs []*spec.Resource, apply bool) error
}
