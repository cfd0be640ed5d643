package converge

import (
	"context"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// Repair converges one desired resource alone, through the same guarded call
// as a pass (timeout, panic recovery, no driver): the daemon calls it when a
// driver's watcher reports that an object may have drifted. It prunes
// nothing and restarts nothing else.
func (e *Engine) Repair(ctx context.Context, r *spec.Resource, apply bool) Item {
	return e.converge(ctx, r, nil, nil, apply)
}

// Driver returns the driver of kind k, or nil.
func (e *Engine) Driver(k spec.Kind) Driver { return e.drivers[k] }
