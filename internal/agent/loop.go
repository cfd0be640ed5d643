package agent

import (
	"context"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// loop is the daemon's one goroutine of work: one select over every timer
// and channel. Slow work (a source poll, a registry poll) runs in a
// goroutine of its own and hands its outcome back on a channel, so that
// meanwhile the loop goes on repairing the drift that watchers report: a
// host whose server is unreachable still enforces what it has.
func (d *daemon) loop(ctx context.Context) error {
	// A poll or registry poll in flight sees ctx done and returns soon.
	defer d.work.Wait()
	watchdog := time.NewTicker(10 * time.Second)
	defer watchdog.Stop()
	for {
		d.beat()
		select {
		case <-ctx.Done():
			return ctx.Err()

		case <-watchdog.C:
			d.refreshDrivers(ctx)

		case <-d.pollT.C:
			d.startPoll(ctx, false)

		case r := <-d.polls:
			d.landPoll(ctx, r)

		case <-d.imagesT.C:
			d.startImagesPoll(ctx)

		case r := <-d.imagesDone:
			d.applyImages(ctx, r)

		case <-d.fullT.C:
			d.full(ctx)
			d.fullT.Reset(d.opts.FullInterval)

		case id := <-d.drift:
			d.queueDrift(id)

		case <-d.debounce.C:
			d.repairPending(ctx)

		case cfg := <-d.opts.Reload:
			d.reload(ctx, cfg)
			d.pollT.Reset(0)

		case req := <-d.requests:
			d.handle(ctx, req)
		}
	}
}

// makeTimers makes the loop's timers: a poll at once after the local
// converge (a restarted agent picks up a commit pushed meanwhile without
// waiting; from the next poll on, polls fall on the host's slot), the
// backstop full pass, the registry polls, and the drift debounce, which
// only a watcher's report arms.
func (d *daemon) makeTimers() (stop func()) {
	d.pollT = time.NewTimer(0)
	d.fullT = time.NewTimer(d.opts.FullInterval)
	d.imagesT = time.NewTimer(d.images.poller.Next())
	d.debounce = time.NewTimer(time.Hour)
	d.debounce.Stop()
	return func() {
		for _, t := range []*time.Timer{d.pollT, d.fullT, d.imagesT, d.debounce} {
			t.Stop()
		}
	}
}

// stallLimit is how long the loop may be busy with one piece of work before
// the watchdog stops vouching for it: longer than the slowest legitimate
// step (a resource's timeout), so only a hung loop gets the agent restarted.
const stallLimit = resourceTimeout + 5*time.Minute

func (d *daemon) beat() { d.heartbeat.Store(time.Now().UnixNano()) }

// watchdog pings the service manager's watchdog while the loop is alive. It
// runs beside the loop because one step of the loop (an image pull, a
// health wait) may take longer than the watchdog's period; it returns when
// ctx is done.
func (d *daemon) watchdog(ctx context.Context) {
	every := WatchdogInterval()
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, d.heartbeat.Load())) < stallLimit {
				d.opts.Notify.Watchdog()
			} else {
				d.log.Error("the loop has made no progress; letting the watchdog restart the agent", "for", stallLimit)
			}
		}
	}
}

// queueDrift notes a resource that a watcher reported, and starts the
// debounce that gathers one edit's burst of events into one repair.
func (d *daemon) queueDrift(id spec.ID) {
	if len(d.pending) == 0 {
		d.debounce.Reset(driftDebounce)
	}
	d.pending[id] = true
}

// repairPending repairs what the watchers reported since the last repair.
func (d *daemon) repairPending(ctx context.Context) {
	ids := d.pending
	d.pending = map[spec.ID]bool{}
	d.repair(ctx, ids)
}

// resourceTimeout bounds the converge of one resource: long enough for a
// container's image pull (up to 10 minutes) and its health wait.
const resourceTimeout = 15 * time.Minute

// full is the backstop pass: the revision in force, converged whole.
func (d *daemon) full(ctx context.Context) {
	if d.desired == nil || d.st.Suspended || !repairNow(d.desired, time.Now()) {
		return
	}
	d.refreshDrivers(ctx)
	res, err := d.converge(ctx, d.desired)
	if err != nil {
		d.log.Error("full pass refused", "err", err)
		return
	}
	if res.Changed() {
		d.log.Info("full pass repaired drift")
	}
}

// repair converges the resources that a watcher reported.
func (d *daemon) repair(ctx context.Context, ids map[spec.ID]bool) {
	if d.desired == nil {
		return
	}
	// Outside its maintenance windows, a host whose window says
	// drift_outside: warn reports drift and leaves it.
	repairs := repairNow(d.desired, time.Now())
	for id := range ids {
		r := d.desired.Lookup(id)
		if r == nil || r.Drift == spec.DriftIgnore {
			continue
		}
		apply := !d.st.Suspended && r.Drift != spec.DriftWarn && repairs
		if err := newContainerPolicy(d.cfg).check(&spec.State{Resources: []*spec.Resource{r}}); err != nil {
			d.log.Error("drift not repaired: the host no longer allows this container", "resource", id, "err", err)
			continue
		}
		it := d.eng.Repair(ctx, r, apply)
		if ctx.Err() != nil {
			return
		}
		d.noteRepair(r, it, apply)
	}
}

func (d *daemon) noteRepair(r *spec.Resource, it converge.Item, apply bool) {
	log := d.log.With("resource", r.ID)
	switch {
	case it.Err != nil:
		log.Warn("drift repair failed", "err", it.Err)
	case !it.Change.Changed():
		return
	case apply:
		log.Info("drift repaired", "change", it.Change.String())
		d.m.driftRepairs.Inc()
		d.driftSinceNote++
		d.setStatus(func(s *Status) { s.DriftRepaired++ })
	default:
		log.Warn("drift detected, left alone", "change", it.Change.String())
		d.setStatus(func(s *Status) { s.DriftDetected++ })
	}
	d.setStatus(func(s *Status) {
		for i := range s.Resources {
			if s.Resources[i].Kind == string(r.ID.Kind) && s.Resources[i].Name == r.ID.Name {
				if apply {
					s.Resources[i].Repairs++
				} else {
					s.Resources[i].Drifted = true
				}
			}
		}
	})
}

// reload swaps in a new configuration between two passes. It builds every
// client that holds credentials again (the source, the registry client and
// the notes pusher), all before it stops any old one, and keeps the old
// ones when one of the new fails to build: a rotated token, key or Docker
// login then counts for every client at once.
func (d *daemon) reload(ctx context.Context, cfg *Config) {
	if d.pollBusy {
		// The poll in flight holds the source: the new one is built
		// when it lands, each configuration in turn.
		d.reloadTo = append(d.reloadTo, cfg)
		return
	}
	src, err := d.seams.newSource(cfg, d.log)
	if err != nil {
		d.log.Error("new configuration refused; keeping the old one", "err", err)
		return
	}
	im, err := d.seams.newImages(cfg, d.log, d.images.store)
	if err != nil {
		d.log.Error("new configuration refused; keeping the old one", "err", err)
		return
	}
	notes, err := newReporter(cfg, d.log, d.seams.newPusher)
	switch {
	case err != nil && d.notes != nil:
		d.log.Error("new configuration refused; keeping the old one", "err", err)
		return
	case err != nil:
		d.log.Warn("status notes disabled", "err", err)
	}
	d.notes.close()
	d.cfg, d.src, d.images, d.notes = cfg, src, im, notes
	d.notes.start(ctx)
	d.pollFailing = "" // a failure with the new configuration is news
	d.log.Info("configuration reloaded")
}
