package converge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
)

// Defaults of Options.
const (
	DefaultTimeout       = 5 * time.Minute
	DefaultMaxPruneShare = 0.5
)

// Errors that Converge returns or that an Item carries. Test for them with
// errors.Is.
var (
	// ErrMassPrune refuses a whole pass that would prune too much; see
	// MassPruneError.
	ErrMassPrune = errors.New("mass prune refused")
	// ErrNoDriver is a resource's error when its kind has no driver on
	// this host.
	ErrNoDriver = errors.New("no driver")
	// ErrDependency is a skipped resource's error: a resource that it comes
	// after failed or was skipped.
	ErrDependency = errors.New("dependency failed")
	// ErrPanic is a resource's error when its driver panicked.
	ErrPanic = errors.New("driver panicked")
	// ErrTimeout is a resource's error when its driver ran past the
	// per-resource timeout.
	ErrTimeout = errors.New("timed out")
	// ErrCycle is a resource's error when its after edges form a cycle,
	// which validation normally rejects before.
	ErrCycle = errors.New("dependency cycle")
)

// MassPruneError is the error of a pass refused because it would remove every
// owned object, or more than the allowed share of them.
type MassPruneError struct {
	Remove, Owned int
	MaxShare      float64
}

func (e *MassPruneError) Error() string {
	share := fmt.Sprintf("more than %.0f%%", e.MaxShare*100)
	if e.Remove == e.Owned {
		share = "all of them"
	}
	return fmt.Sprintf("%v: the desired state would remove %d of the %d objects that Outpost owns on this host (%s); nothing was changed; set allow_mass_prune: true in fleet.yaml if this is intended",
		ErrMassPrune, e.Remove, e.Owned, share)
}

// Is makes errors.Is(err, ErrMassPrune) true.
func (e *MassPruneError) Is(target error) bool { return target == ErrMassPrune }

// Options tune the engine. The zero value is usable.
type Options struct {
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// Timeout bounds each driver call for one resource; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxPruneShare is the share of owned objects that one pass may prune
	// without allow_mass_prune; 0 means DefaultMaxPruneShare.
	MaxPruneShare float64
	// Now returns the time recorded in the inventory; nil means time.Now.
	Now func() time.Time
	// Workers is how many resources of one kind that do not depend on
	// each other converge at the same time; 0 or 1 converges one at a
	// time. With more, a driver's CheckApply and Restart are called
	// concurrently for different resources.
	Workers int
	// Owned, when set, is called during a pass that applies, after each
	// batch that added objects to the inventory (objects the pass created),
	// with the inventory so far, so that the caller records them before
	// the pass goes on: a pass cut short later (a crash, a kill) does not
	// leave what it created unknown and never pruned. The inventory is the
	// pass's own: Owned must not keep it or change it, and copies what it
	// needs (a pass of many quick creations calls it for each).
	Owned func(state.Inventory)
}

// Engine converges a host to a desired state through the drivers of each
// kind. It holds no state between passes and may be used by one pass at a
// time or by several in turn.
type Engine struct {
	drivers map[spec.Kind]Driver
	opts    Options
	log     *slog.Logger
}

// New returns an engine that converges each kind through its driver. A kind
// without a driver fails its resources and leaves the others alone.
func New(drivers map[spec.Kind]Driver, opts Options) *Engine {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxPruneShare <= 0 {
		opts.MaxPruneShare = DefaultMaxPruneShare
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := make(map[spec.Kind]Driver, len(drivers))
	for k, v := range drivers {
		d[k] = v
	}
	return &Engine{drivers: d, opts: opts, log: log}
}

// Item is what one pass did, or would do, to one resource.
type Item struct {
	ID     spec.ID
	Change spec.Change
	// Err is why the resource did not converge; nil when it did.
	Err error
	// Skipped is true when the resource was not tried because a resource
	// that it comes after failed; Err says which.
	Skipped bool
	// Restarted is true when a file that the resource names in restart_on
	// changed and the resource was restarted, or in a dry run would be.
	Restarted bool
	// Prune is true when the resource left the desired state and Change
	// is its removal.
	Prune bool
}

// Changed reports whether the item changed something, or in a dry run would.
func (it Item) Changed() bool { return it.Change.Changed() || it.Restarted }

// Result is the outcome of one pass.
type Result struct {
	// Items lists every desired resource in the order it was converged,
	// then every pruned one.
	Items []Item
	// Inventory is what Outpost owns after the pass, with the hashes of
	// what was applied. After a dry run it is what it would own; save it
	// only after an apply.
	Inventory state.Inventory
}

// Failed returns the items that did not converge, skipped ones included.
func (r *Result) Failed() []Item {
	var out []Item
	for _, it := range r.Items {
		if it.Err != nil {
			out = append(out, it)
		}
	}
	return out
}

// Changed reports whether the pass changed something, or in a dry run would.
func (r *Result) Changed() bool {
	for _, it := range r.Items {
		if it.Changed() {
			return true
		}
	}
	return false
}

// Converge compares the host with desired and, when apply is true, converges
// it: resources in kind order and after edges, restarts of what names a
// changed file in restart_on, then removal of the owned objects of inv that
// left desired, in reverse kind order. With apply false it changes nothing
// and reports what it would do, through the same code.
//
// One resource's failure is reported in its Item and does not stop the
// others, except those that come after it. The error is only for a pass
// refused as a whole (ErrMassPrune, before anything changes) or a cancelled
// ctx; then the Result holds what was done until then.
func (e *Engine) Converge(ctx context.Context, desired *spec.State, inv state.Inventory, apply bool) (*Result, error) {
	if desired == nil {
		return nil, errors.New("converge: no desired state")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	byID := make(map[spec.ID]*spec.Resource, len(desired.Resources))
	for _, r := range desired.Resources {
		byID[r.ID] = r
	}
	prune, keep := e.prunable(byID, inv)
	if err := e.guard(len(inv), len(prune), desired.AllowMassPrune); err != nil {
		return nil, err
	}

	res := &Result{Inventory: inv.Clone(), Items: make([]Item, 0, len(desired.Resources)+len(prune))}
	order, cyclic := sortResources(desired.Resources)
	// outcome of each resource so far, for after edges and restart_on:
	// failed holds why a resource cannot be come after.
	failed := make(map[spec.ID]error, len(order))
	changed := make(map[spec.ID]bool)
	now := e.opts.Now().UTC()

	for _, r := range cyclic {
		err := fmt.Errorf("%s: %w through after", r.ID, ErrCycle)
		failed[r.ID] = err
		res.Items = append(res.Items, Item{ID: r.ID, Err: err})
	}
	// One backing array for every batch's outcomes.
	allItems, allDone := make([]Item, len(order)), make([]bool, len(order))
	next := 0
	prepared := map[spec.Kind]bool{}
	for _, batch := range e.batches(order) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		for _, r := range batch {
			if k := r.ID.Kind; !prepared[k] {
				prepared[k] = true
				e.prepare(ctx, k, desired.Resources, apply)
			}
		}
		items, done := allItems[next:next+len(batch)], allDone[next:next+len(batch)]
		next += len(batch)
		owned := len(res.Inventory)
		if apply {
			e.awaitHealth(ctx, batch, byID, failed, changed)
		}
		e.runBatch(ctx, batch, items, done, failed, changed, apply)
		cancelled := ctx.Err()
		for i, r := range batch {
			it := items[i]
			if !done[i] {
				continue
			}
			if cancelled != nil && it.Err != nil {
				// The error may be the cancellation's, not the
				// resource's failure: not reported, but what it
				// may have created is owned.
				e.record(res.Inventory, r, it, now)
				continue
			}
			res.Items = append(res.Items, it)
			if it.Err != nil {
				failed[r.ID] = errNotConverged
			} else if it.Change.Changed() {
				changed[r.ID] = true
			}
			e.record(res.Inventory, r, it, now)
		}
		if apply && e.opts.Owned != nil && len(res.Inventory) > owned {
			e.opts.Owned(res.Inventory)
		}
		if cancelled != nil {
			return res, cancelled
		}
	}

	for _, id := range keep {
		delete(res.Inventory, id.String())
		if apply {
			e.log.Info("left on the host and forgotten (prune: false)", "resource", id.String())
		}
	}
	for _, id := range prune {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		it := e.remove(ctx, id, apply)
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Items = append(res.Items, it)
		if it.Err == nil {
			delete(res.Inventory, id.String())
		}
	}
	return res, nil
}

// prepare gives a driver that implements Preparer every desired resource of
// its kind before the first of them converges. Its failure is only logged:
// each CheckApply still reports its own resource's problem.
func (e *Engine) prepare(ctx context.Context, k spec.Kind, all []*spec.Resource, apply bool) {
	p, ok := e.drivers[k].(Preparer)
	if !ok {
		return
	}
	var rs []*spec.Resource
	for _, r := range all {
		if r.ID.Kind == k {
			rs = append(rs, r)
		}
	}
	err := e.call(ctx, spec.ID{Kind: k}, func(ctx context.Context) error { return p.Prepare(ctx, rs, apply) })
	if err != nil && ctx.Err() == nil {
		e.log.Warn("preparing the pass failed; converging each resource alone", "kind", string(k), "err", err)
	}
}

// batches splits the apply order into runs of resources of one kind that do
// not depend on each other, which may converge at the same time. Batches run
// one after the other, so every after edge and restart_on reference points
// into an earlier batch. With one worker, each resource is its own batch.
func (e *Engine) batches(order []*spec.Resource) [][]*spec.Resource {
	var out [][]*spec.Resource
	in := map[spec.ID]bool{}
	start := 0
	for i, r := range order {
		split := i > start && (e.opts.Workers <= 1 || r.ID.Kind != order[start].ID.Kind)
		for _, d := range r.After {
			split = split || in[d]
		}
		for _, d := range r.RestartOn {
			split = split || in[d]
		}
		if split {
			out = append(out, order[start:i])
			start = i
			clear(in)
		}
		in[r.ID] = true
	}
	if start < len(order) {
		out = append(out, order[start:])
	}
	return out
}

// runBatch converges the resources of one batch with up to Workers at a
// time, and waits for them. It fills items, and done with which were tried:
// none is started once ctx is done.
func (e *Engine) runBatch(ctx context.Context, batch []*spec.Resource, items []Item, done []bool, failed map[spec.ID]error, changed map[spec.ID]bool, apply bool) {
	n := min(e.opts.Workers, len(batch))
	if n <= 1 {
		for i, r := range batch {
			if ctx.Err() != nil {
				return
			}
			items[i], done[i] = e.converge(ctx, r, failed, changed, apply), true
		}
		return
	}
	// failed and changed are only read here; they change between batches.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(batch) || ctx.Err() != nil {
					return
				}
				items[i], done[i] = e.converge(ctx, batch[i], failed, changed, apply), true
			}
		}()
	}
	wg.Wait()
}

// errNotConverged is why a resource that failed cannot be come after.
var errNotConverged = errors.New("did not converge")

// awaitHealth waits, before a batch runs, for the health of what its
// resources come after and that this pass created or replaced, when the
// driver can wait for it (HealthWaiter): a database that a worker comes
// after is healthy before the worker starts, on its first create too. A
// resource that is not healthy in time is recorded in failed with why, so
// that what comes after it is skipped; it stays as it converged.
func (e *Engine) awaitHealth(ctx context.Context, batch []*spec.Resource, byID map[spec.ID]*spec.Resource, failed map[spec.ID]error, changed map[spec.ID]bool) {
	waited := map[spec.ID]bool{}
	for _, r := range batch {
		for _, dep := range r.After {
			w, ok := e.drivers[dep.Kind].(HealthWaiter)
			if !ok || !changed[dep] || waited[dep] || failed[dep] != nil || byID[dep] == nil {
				continue
			}
			waited[dep] = true
			err := e.call(ctx, dep, func(ctx context.Context) error { return w.WaitHealthy(ctx, byID[dep]) })
			if err != nil {
				failed[dep] = fmt.Errorf("is not healthy: %w", err)
				e.log.Warn("not healthy; what comes after it waits for the next pass", "resource", dep.String(), "err", err)
				continue
			}
			e.log.Debug("healthy", "resource", dep.String())
		}
	}
}

// prunable splits the owned objects that left the desired state into those
// to remove, in reverse kind order, and those to forget (prune: false).
func (e *Engine) prunable(desired map[spec.ID]*spec.Resource, inv state.Inventory) (remove, keep []spec.ID) {
	gone := state.Inventory{}
	for k, ent := range inv {
		if _, ok := desired[ent.ID()]; !ok {
			gone[k] = ent
		}
	}
	ids := gone.IDs()
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		if ent, _ := gone.Get(id); ent.NoPrune {
			keep = append(keep, id)
			continue
		}
		remove = append(remove, id)
	}
	return remove, keep
}

func (e *Engine) guard(owned, remove int, allow bool) error {
	if allow || owned == 0 || remove == 0 {
		return nil
	}
	if remove == owned || float64(remove) > e.opts.MaxPruneShare*float64(owned) {
		return &MassPruneError{Remove: remove, Owned: owned, MaxShare: e.opts.MaxPruneShare}
	}
	return nil
}

// converge runs one desired resource: its driver's CheckApply, then a restart
// when a file that it names in restart_on changed.
func (e *Engine) converge(ctx context.Context, r *spec.Resource, failed map[spec.ID]error, changed map[spec.ID]bool, apply bool) Item {
	it := Item{ID: r.ID}
	for _, dep := range r.After {
		if why := failed[dep]; why != nil {
			it.Skipped = true
			it.Err = fmt.Errorf("%w: %s %w", ErrDependency, dep, why)
			e.log.Debug("skipped", "resource", r.ID.String(), "after", dep.String())
			return it
		}
	}
	if r.Err != nil {
		// Rendered without its content (a secret this host cannot
		// decrypt): it fails alone, and the host keeps what it has.
		it.Err = r.Err
		e.log.Debug("did not converge", "resource", r.ID.String(), "err", it.Err)
		return it
	}
	drv, ok := e.drivers[r.ID.Kind]
	if !ok || drv == nil {
		it.Err = fmt.Errorf("%w for kind %s on this host", ErrNoDriver, r.ID.Kind)
		return it
	}
	it.Err = e.call(ctx, r.ID, func(ctx context.Context) (err error) {
		it.Change, err = drv.CheckApply(ctx, r, apply)
		return err
	})
	if it.Err != nil {
		e.log.Debug("did not converge", "resource", r.ID.String(), "err", it.Err)
		return it
	}
	if it.Change.Changed() {
		if apply {
			e.log.Info("converged", "resource", r.ID.String(), "change", it.Change.String())
		} else {
			e.log.Debug("would change", "resource", r.ID.String(), "change", it.Change.String())
		}
	}

	// A resource that was created or updated has restarted already.
	if it.Change.Changed() {
		return it
	}
	var trigger spec.ID
	for _, f := range r.RestartOn {
		if changed[f] {
			trigger = f
			break
		}
	}
	if trigger == (spec.ID{}) {
		return it
	}
	rs, ok := drv.(Restarter)
	if !ok {
		it.Err = fmt.Errorf("restart on a change of %s: the driver of kind %s cannot restart", trigger, r.ID.Kind)
		return it
	}
	if !apply {
		it.Restarted = true
		e.log.Debug("would restart", "resource", r.ID.String(), "changed", trigger.String())
		return it
	}
	it.Err = e.call(ctx, r.ID, func(ctx context.Context) error { return rs.Restart(ctx, r) })
	if it.Err != nil {
		it.Err = fmt.Errorf("restart on a change of %s: %w", trigger, it.Err)
		return it
	}
	it.Restarted = true
	e.log.Info("restarted", "resource", r.ID.String(), "changed", trigger.String())
	return it
}

func (e *Engine) remove(ctx context.Context, id spec.ID, apply bool) Item {
	it := Item{ID: id, Prune: true}
	drv, ok := e.drivers[id.Kind]
	if !ok || drv == nil {
		it.Err = fmt.Errorf("prune: %w for kind %s on this host", ErrNoDriver, id.Kind)
		return it
	}
	it.Err = e.call(ctx, id, func(ctx context.Context) (err error) {
		it.Change, err = drv.Remove(ctx, id, apply)
		return err
	})
	switch {
	case it.Err != nil:
		it.Err = fmt.Errorf("prune: %w", it.Err)
	case apply && it.Change.Changed():
		e.log.Info("pruned", "resource", id.String())
	}
	return it
}

// call runs one driver call with the per-resource timeout and turns a panic
// into an error.
func (e *Engine) call(ctx context.Context, id spec.ID, f func(context.Context) error) (err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, e.opts.Timeout, ErrTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			e.log.Debug("driver panicked", "resource", id.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrPanic, p)
		}
	}()
	err = f(ctx)
	if err != nil && errors.Is(context.Cause(ctx), ErrTimeout) {
		err = fmt.Errorf("%w after %v: %w", ErrTimeout, e.opts.Timeout, err)
	}
	return err
}

// record updates the inventory with the outcome of one desired resource.
func (e *Engine) record(inv state.Inventory, r *spec.Resource, it Item, now time.Time) {
	key := r.ID.String()
	old, owned := inv[key]
	if it.Err != nil {
		// A failed create may have left an object behind: own it, with no
		// hash, so that it is pruned when it leaves the desired state.
		// Drivers only remove objects that carry Outpost's mark.
		if !owned && !it.Skipped && r.Err == nil && !errors.Is(it.Err, ErrNoDriver) {
			inv[key] = state.Entry{Kind: r.ID.Kind, Name: r.ID.Name, AppliedAt: now, NoPrune: !r.Prune}
		}
		return
	}
	h := r.Hash()
	ent := state.Entry{Kind: r.ID.Kind, Name: r.ID.Name, Hash: h, AppliedAt: old.AppliedAt, NoPrune: !r.Prune}
	if !owned || old.Hash != h || it.Change.Changed() {
		ent.AppliedAt = now
	}
	if !owned || ent != old {
		inv[key] = ent
	}
}
