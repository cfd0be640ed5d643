package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/status"
)

// Defaults of the daemon's timers.
const (
	DefaultSocket       = "/run/outpost/outpost.sock"
	DefaultFullInterval = 10 * time.Minute
	// driftDebounce gathers the burst of events that one edit makes (an
	// editor's write, chmod and rename) into one repair.
	driftDebounce = 20 * time.Millisecond
)

// Results recorded for a revision, in status and in notes.
const (
	ResultApplied    = "applied"
	ResultFailed     = "failed"
	ResultRolledBack = "rolled-back"
	ResultInvalid    = "invalid"
	ResultUnverified = "unverified"
)

// DaemonOptions configure Run beyond the agent's configuration.
type DaemonOptions struct {
	Logger *slog.Logger
	// Socket is the control socket's path; empty means DefaultSocket.
	Socket string
	// FullInterval is the period of the backstop full converge; 0 means
	// DefaultFullInterval.
	FullInterval time.Duration
	// Reload delivers a newly read configuration (SIGHUP); the daemon
	// swaps it in between two passes. A configuration that failed to load
	// never reaches this channel: the caller keeps the old one.
	Reload <-chan *Config
	// Notify receives the daemon's lifecycle for the service manager
	// (sd_notify); nil ignores it.
	Notify Notifier

	// newSource, newImages and newPusher build the clients that hold
	// credentials: the source's, the registries' and the notes remote's.
	// Run builds each at start, and every reload builds them all again,
	// so that no client keeps a credential that was rotated. nil means
	// the real ones; tests set them.
	newSource func(*Config, *slog.Logger) (revSource, error)
	newImages func(*Config, *slog.Logger, *registry.Store) (*images, error)
	newPusher func(*status.Notes, status.PushOptions) (notesPusher, error)
}

// Notifier tells the service manager about the daemon's lifecycle.
type Notifier interface {
	Ready(status string)
	Status(status string)
	Watchdog()
}

// daemon is the state of one `outpost run`. Everything that converges runs
// in the loop goroutine, so no two converges of one resource ever overlap;
// the control server only sends requests to the loop and reads status.
type daemon struct {
	log   *slog.Logger
	opts  DaemonOptions
	cfg   *Config
	store *state.Store
	src   revSource
	m     *metrics

	requests chan request
	drift    chan spec.ID

	// Owned by the loop goroutine.
	st        *state.State
	desired   *spec.State
	rev       string
	eng       *converge.Engine
	stopWatch func()
	// pollFailures counts the transient poll failures in a row.
	pollFailures int
	// pollFailing is the class of the last poll's failure; "" after a
	// poll that succeeded.
	pollFailing string
	// notes writes and pushes status notes; nil without Git.
	notes *reporter
	// driftSinceNote counts the drift repairs since the last note.
	driftSinceNote int
	// drivers are built once, as their kinds are first needed, and kept.
	drivers map[spec.Kind]converge.Driver
	// images pins the tags of containers that follow their registry.
	images *images
	// pending are the resources a watcher reported, repaired when
	// debounce fires.
	pending  map[spec.ID]bool
	debounce *time.Timer
	// imagesT starts the registry polls; a poll runs in a goroutine of
	// its own (imagesBusy) and hands its outcome to imagesDone.
	imagesT    *time.Timer
	imagesBusy bool
	imagesDone chan imagesPolled
	imagesWG   sync.WaitGroup

	// heartbeat is when the loop last woke (unix nanoseconds).
	heartbeat atomic.Int64

	mu     sync.Mutex // guards status
	status Status
}

// Run is `outpost run`: it keeps this host converged to cfg's source until
// ctx is done, then finishes the resource in hand, saves its state and
// returns nil.
func Run(ctx context.Context, cfg *Config, opts DaemonOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.FullInterval <= 0 {
		opts.FullInterval = DefaultFullInterval
	}
	if opts.Notify == nil {
		opts.Notify = nopNotifier{}
	}
	if opts.newSource == nil {
		opts.newSource = newRevSource
	}
	if opts.newImages == nil {
		opts.newImages = newImages
	}
	if opts.newPusher == nil {
		opts.newPusher = newNotesPusher
	}
	lock, err := state.Lock(cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	d := &daemon{
		log:      opts.Logger.With("host", cfg.Host.Name),
		opts:     opts,
		cfg:      cfg,
		store:    state.New(cfg.StateDir),
		requests: make(chan request),
		drift:    make(chan spec.ID, 256),
		m:        newMetrics(),
	}
	d.status.Host = cfg.Host.Name
	d.status.Resources = []ResourceStatus{}

	// The socket listens before the first converge, so that `outpost
	// status` answers during a slow start.
	ln, err := listenControl(opts.Socket)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: d.controlHandler(ctx), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("control socket", "err", err)
		}
	}()
	defer srv.Close()

	if cfg.Metrics.Listen != "" {
		mln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		msrv := &http.Server{Handler: d.m.handler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("metrics", "err", err)
			}
		}()
		defer msrv.Close()
	}

	if d.src, err = opts.newSource(cfg, d.log); err != nil {
		return err
	}
	if d.st, err = d.store.Load(); err != nil {
		return err
	}
	if d.images, err = opts.newImages(cfg, d.log, nil); err != nil {
		return err
	}
	// Status notes are a report, not a duty: without them the host still
	// converges.
	if d.notes, err = newReporter(cfg, d.log, opts.newPusher); err != nil {
		d.log.Warn("status notes disabled", "err", err)
	}
	d.notes.start(ctx)
	// A reload replaces d.notes: close the one in use at the end.
	defer func() { d.notes.close() }()
	d.setStatus(func(s *Status) { s.Suspended = d.st.Suspended })
	// Watchers stop before the drivers they watch through are closed.
	defer func() { closeDrivers(d.drivers) }()
	defer d.stopWatchers()

	// First converge from local state: the last good commit needs no
	// network, so a host that boots offline enforces it at once.
	d.convergeLocal(ctx)
	opts.Notify.Ready(d.statusLine())
	d.beat()
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watchdog(wctx)
	}()

	err = d.loop(ctx)
	if ctx.Err() != nil {
		// A cancelled context is how the daemon is asked to stop.
		d.log.Info("stopping")
		return nil
	}
	return err
}

// loop is the daemon's one goroutine of work.
func (d *daemon) loop(ctx context.Context) error {
	// Poll at once after the local converge: a restarted agent (an
	// upgrade, a crash, an operator) picks up a commit pushed meanwhile
	// without waiting. From the next poll on, polls fall on the host's
	// slot (splay.go).
	pollT := time.NewTimer(0)
	defer pollT.Stop()
	fullT := time.NewTimer(d.opts.FullInterval)
	defer fullT.Stop()
	d.imagesT = time.NewTimer(d.images.poller.Next())
	defer d.imagesT.Stop()
	d.imagesDone = make(chan imagesPolled, 1)
	// A registry poll in flight sees ctx done and returns soon.
	defer d.imagesWG.Wait()
	watchdog := time.NewTicker(10 * time.Second)
	defer watchdog.Stop()

	d.pending = map[spec.ID]bool{}
	d.debounce = time.NewTimer(time.Hour)
	d.debounce.Stop()
	defer d.debounce.Stop()

	for {
		d.beat()
		select {
		case <-ctx.Done():
			return ctx.Err()

		case <-watchdog.C:
			d.refreshDrivers(ctx)

		case <-pollT.C:
			start := time.Now()
			pollT.Reset(d.nextPoll(start, d.poll(ctx, false)))

		case <-d.imagesT.C:
			d.startImagesPoll(ctx)

		case r := <-d.imagesDone:
			d.applyImages(ctx, r)

		case <-fullT.C:
			d.full(ctx)
			fullT.Reset(d.opts.FullInterval)

		case id := <-d.drift:
			d.queueDrift(id)

		case <-d.debounce.C:
			d.repairPending(ctx)

		case cfg := <-d.opts.Reload:
			d.reload(ctx, cfg)
			pollT.Reset(0)

		case req := <-d.requests:
			req.reply <- d.handle(ctx, req)
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

// pollInterval is source.interval, or a minute.
func (d *daemon) pollInterval() time.Duration {
	if i := time.Duration(d.cfg.Source.Interval); i > 0 {
		return i
	}
	return time.Minute
}

// nextPoll is the wait before the next poll after one that started at
// start: until the host's next slot, or after a transient failure (the
// network, a server error) a shorter backoff that grows up to the
// interval, so that a host is back soon after its server without
// hammering it.
func (d *daemon) nextPoll(start time.Time, err error) time.Duration {
	interval := d.pollInterval()
	if err == nil || !transient(err) {
		d.pollFailures = 0
		return pollWait(d.cfg.Host.Name, interval, start, time.Now())
	}
	b := pull.Backoff{Base: time.Second, Cap: interval, Seed: d.cfg.Host.Name}
	delay := b.Delay(d.pollFailures)
	d.pollFailures++
	return delay
}

// convergeLocal converges the last good revision from local state.
func (d *daemon) convergeLocal(ctx context.Context) {
	rev := d.st.LastGood
	if rev == "" {
		d.log.Info("no good revision yet; waiting for the source")
		return
	}
	snap, err := d.src.Snapshot(ctx, rev)
	if err != nil {
		d.log.Warn("last good revision not readable locally", "revision", rev, "err", err)
		return
	}
	desired, err := d.render(ctx, snap, false)
	if err != nil {
		d.log.Warn("last good revision no longer renders", "revision", rev, "err", err)
		return
	}
	d.use(ctx, rev, desired)
	res, err := d.converge(ctx, desired, true)
	d.finish(ctx, rev, desired, res, err, false)
}

// poll asks the source for its newest revision and applies it when it is new
// and not known to fail (unless retry).
func (d *daemon) poll(ctx context.Context, retry bool) error {
	rev, err := d.fetch(ctx)
	// A tip refused for its size was reached: the source is not offline,
	// and the commit is invalid like one that does not validate.
	tooLarge := refusedCommit(err)
	now := time.Now()
	d.setStatus(func(s *Status) {
		s.LastPoll = now
		s.Offline = err != nil && tooLarge == ""
		s.LastPollError = ""
		if err != nil {
			s.LastPollError = err.Error()
		}
	})
	if tooLarge != "" {
		if _, bad := d.st.Failed[tooLarge]; !bad {
			d.log.Error("revision invalid: too large to fetch; nothing changed", "revision", tooLarge, "err", err)
			d.refuse(ctx, tooLarge, ResultInvalid, err)
		}
		return nil
	}
	if err != nil {
		if ctx.Err() == nil {
			d.logPollFailure(err)
		}
		return err
	}
	if d.pollFailing != "" {
		d.log.Info("poll succeeded again")
		d.pollFailing = ""
	}
	d.m.lastPoll.SetToCurrentTime()
	if rev == d.rev && !retry {
		return nil
	}
	if f, bad := d.st.Failed[rev]; bad && !retry {
		d.log.Debug("skipping a failed revision", "revision", rev, "result", f.Result)
		return nil
	}
	if d.st.Suspended {
		d.log.Info("new revision waits: changes are suspended", "revision", rev)
		return nil
	}
	return d.applyRevision(ctx, rev)
}

// logPollFailure warns when polls start failing, or fail for another
// reason than the last one; a failure like the last is logged at debug, so
// that a host whose token was revoked says so once, not at every poll.
func (d *daemon) logPollFailure(err error) {
	class := pollFailureClass(err)
	switch {
	case class == d.pollFailing:
		d.log.Debug("poll still failing; keeping the last good revision", "err", err)
	case errors.Is(err, pull.ErrAuth):
		d.log.Warn("poll failed: the server refused the credentials; keeping the last good revision", "err", err, "hint", authHint)
	default:
		d.log.Warn("poll failed; keeping the last good revision", "err", err)
	}
	d.pollFailing = class
}

// pollFailureClass names the kind of a poll's failure.
func pollFailureClass(err error) string {
	for _, e := range []error{pull.ErrAuth, pull.ErrHostKey, pull.ErrTLS, pull.ErrRepoNotFound, pull.ErrBranchNotFound,
		pull.ErrConfig, pull.ErrUnverified, pull.ErrUnreachable, pull.ErrTimeout, pull.ErrCorrupt} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "other"
}

// refusedCommit returns the commit that err refuses for passing a bound of
// the source (pull.ErrTooLarge), or "".
func refusedCommit(err error) string {
	var pe *pull.Error
	if errors.Is(err, pull.ErrTooLarge) && errors.As(err, &pe) {
		return pe.Commit
	}
	return ""
}

// applyRevision validates, verifies and renders rev before anything changes,
// applies it, waits for what changed to become healthy, and rolls back to
// the last good revision when it does not. It returns an error only when the
// revision could not be read here, which the next poll tries again.
func (d *daemon) applyRevision(ctx context.Context, rev string) error {
	log := d.log.With("revision", rev)
	if err := d.src.Verify(ctx, rev); err != nil {
		log.Error("revision not verified; nothing changed", "err", err)
		d.refuse(ctx, rev, ResultUnverified, err)
		return nil
	}
	snap, err := d.src.Snapshot(ctx, rev)
	if err != nil && errors.Is(err, pull.ErrTooLarge) {
		log.Error("revision invalid: too large to read; nothing changed", "err", err)
		d.refuse(ctx, rev, ResultInvalid, err)
		return nil
	}
	if err != nil {
		log.Error("revision not readable; nothing changed", "err", err)
		return err
	}
	desired, err := d.render(ctx, snap, true)
	if err != nil {
		// A damaged local copy reads as missing files, which validation
		// reports like any invalid manifest: it must not mark a good
		// revision failed. The source fetches it again on the next poll.
		if rerr := damaged(snap); rerr != nil {
			log.Error("revision not readable: the local copy is damaged; nothing changed", "err", rerr)
			return rerr
		}
		log.Error("revision invalid; nothing changed", "err", err)
		d.refuse(ctx, rev, ResultInvalid, err)
		return nil
	}
	log.Info("applying a new revision")
	d.use(ctx, rev, desired)
	res, err := d.converge(ctx, desired, true)
	d.finish(ctx, rev, desired, res, err, true)
	return nil
}

// damaged reads every file of snap and returns the first error that says
// the local copy of the source is damaged (pull.ErrCorrupt), or nil.
func damaged(snap *Snapshot) error {
	var found error
	fs.WalkDir(snap.FS, ".", func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			_, err = fs.ReadFile(snap.FS, p)
		}
		if err != nil && errors.Is(err, pull.ErrCorrupt) {
			found = err
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// finish records the outcome of a pass over rev; for a new revision it gates
// on health and rolls back on failure.
func (d *daemon) finish(ctx context.Context, rev string, desired *spec.State, res *converge.Result, err error, gate bool) {
	if ctx.Err() != nil {
		return
	}
	reason := ""
	switch {
	case err != nil:
		reason = err.Error()
	case len(res.Failed()) > 0:
		reason = failedReason(res)
	case gate:
		reason = d.waitHealthy(ctx, desired, res)
	}
	if ctx.Err() != nil {
		return
	}
	if reason == "" {
		d.st.LastGood = rev
		delete(d.st.Failed, rev)
		d.save()
		d.setResult(rev, ResultApplied, "")
		d.m.appliedCommit(rev)
		d.report(ctx, rev, ResultApplied, res, "")
		return
	}
	if !gate {
		// The last good revision itself did not converge: keep it and
		// report; the next pass tries again.
		d.setResult(rev, ResultFailed, reason)
		d.report(ctx, rev, ResultFailed, res, reason)
		return
	}
	d.log.Error("revision failed", "revision", rev, "reason", reason)
	d.images.markBad(desired, failedIDs(res))
	good := d.st.LastGood
	if good == "" || good == rev {
		d.markFailed(rev, ResultFailed, reason)
		d.setResult(rev, ResultFailed, reason)
		d.report(ctx, rev, ResultFailed, res, reason)
		return
	}
	if d.rollback(ctx, good) {
		d.markFailed(rev, ResultRolledBack, reason)
		d.setResult(good, ResultRolledBack, reason)
		d.report(ctx, rev, ResultRolledBack, res, reason)
		return
	}
	d.markFailed(rev, ResultFailed, reason)
	d.setResult(rev, ResultFailed, reason)
	d.report(ctx, rev, ResultFailed, res, reason)
}

// rollback converges the last good revision again.
func (d *daemon) rollback(ctx context.Context, good string) bool {
	log := d.log.With("revision", good)
	snap, err := d.src.Snapshot(ctx, good)
	if err != nil {
		log.Error("cannot roll back: last good revision not readable", "err", err)
		return false
	}
	desired, err := d.render(ctx, snap, false)
	if err != nil {
		log.Error("cannot roll back: last good revision no longer renders", "err", err)
		return false
	}
	log.Warn("rolling back to the last good revision")
	d.use(ctx, good, desired)
	res, err := d.converge(ctx, desired, true)
	if err != nil || len(res.Failed()) > 0 {
		log.Error("rollback did not converge every resource", "err", err, "failed", len(res.Failed()))
	}
	return true
}

// refuse records a revision that was never applied.
func (d *daemon) refuse(ctx context.Context, rev, result string, err error) {
	d.markFailed(rev, result, err.Error())
	d.setStatus(func(s *Status) { s.LastError = err.Error() })
	d.report(ctx, rev, result, nil, err.Error())
}

func (d *daemon) markFailed(rev, result, reason string) {
	if d.st.Failed == nil {
		d.st.Failed = map[string]state.Failure{}
	}
	d.st.Failed[rev] = state.Failure{Result: result, Reason: reason, At: time.Now().UTC()}
	d.save()
	d.m.failures.Inc()
}

// waitHealthy waits until every resource that the pass changed is healthy, up
// to the health timeout, and returns why not ("" when healthy).
func (d *daemon) waitHealthy(ctx context.Context, desired *spec.State, res *converge.Result) string {
	var check []*spec.Resource
	for _, it := range res.Items {
		if it.Prune || !it.Changed() {
			continue
		}
		if r := desired.Lookup(it.ID); r != nil {
			if _, ok := d.eng.Driver(r.ID.Kind).(converge.HealthChecker); ok {
				check = append(check, r)
			}
		}
	}
	if len(check) == 0 {
		return ""
	}
	timeout := time.Duration(d.cfg.HealthTimeout)
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		var why string
		failed := false
		for _, r := range check {
			hc, checks := d.eng.Driver(r.ID.Kind).(converge.HealthChecker)
			if !checks {
				why = fmt.Sprintf("%s is not healthy: its %s driver is unavailable", r.ID, r.ID.Kind)
				break
			}
			healthy, reason, err := hc.Healthy(hctx, r)
			if err != nil {
				reason = err.Error()
				failed = true
			}
			if !healthy {
				why = fmt.Sprintf("%s is not healthy: %s", r.ID, reason)
				break
			}
		}
		if why == "" {
			d.setStatus(func(s *Status) { s.HealthyAt = time.Now() })
			return ""
		}
		select {
		case <-hctx.Done():
			return fmt.Sprintf("%s after %v", why, timeout)
		case <-tick.C:
		}
		// A check that could not be asked may have lost its connection
		// (the system bus restarted): the driver is built again, not
		// asked over a closed connection until the wait ends.
		if failed {
			d.refreshDrivers(ctx)
		}
	}
}

// fetch asks the source for its newest revision. A fetch can wait on a dead
// network for as long as its timeout (minutes), so it runs in a goroutine of
// its own and, meanwhile, the loop goes on repairing the drift that watchers
// report, and polling the registries and deploying the images they resolve:
// a host whose server is unreachable still enforces what it has. The source
// is only used by that goroutine until it returns; fetch always waits for
// it.
func (d *daemon) fetch(ctx context.Context) (string, error) {
	type result struct {
		rev string
		err error
	}
	done := make(chan result, 1)
	go func() {
		rev, err := d.src.Poll(ctx)
		done <- result{rev, err}
	}()
	for {
		select {
		case r := <-done:
			return r.rev, r.err
		case id := <-d.drift:
			d.queueDrift(id)
		case <-d.debounceC():
			d.repairPending(ctx)
		case <-d.imagesC():
			d.startImagesPoll(ctx)
		case r := <-d.imagesDone:
			d.applyImages(ctx, r)
		}
	}
}

// imagesC is the registry poll timer's channel; nil (never ready) before
// the loop made the timer.
func (d *daemon) imagesC() <-chan time.Time {
	if d.imagesT == nil {
		return nil
	}
	return d.imagesT.C
}

// queueDrift notes a resource that a watcher reported, and starts the
// debounce that gathers one edit's burst of events into one repair.
func (d *daemon) queueDrift(id spec.ID) {
	if d.pending == nil {
		d.pending = map[spec.ID]bool{}
	}
	if len(d.pending) == 0 && d.debounce != nil {
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

// debounceC is the debounce timer's channel; nil (never ready) before the
// loop made the timer.
func (d *daemon) debounceC() <-chan time.Time {
	if d.debounce == nil {
		return nil
	}
	return d.debounce.C
}

// resourceTimeout bounds the converge of one resource: long enough for a
// container's image pull (up to 10 minutes) and its health wait.
const resourceTimeout = 15 * time.Minute

// full is the backstop pass: the revision in force, converged whole.
func (d *daemon) full(ctx context.Context) {
	if d.desired == nil || d.st.Suspended {
		return
	}
	d.refreshDrivers(ctx)
	res, err := d.converge(ctx, d.desired, true)
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
	for id := range ids {
		r := d.desired.Lookup(id)
		if r == nil || r.Drift == spec.DriftIgnore {
			continue
		}
		apply := !d.st.Suspended && r.Drift != spec.DriftWarn
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
	src, err := d.opts.newSource(cfg, d.log)
	if err != nil {
		d.log.Error("new configuration refused; keeping the old one", "err", err)
		return
	}
	im, err := d.opts.newImages(cfg, d.log, d.images.store)
	if err != nil {
		d.log.Error("new configuration refused; keeping the old one", "err", err)
		return
	}
	notes, err := newReporter(cfg, d.log, d.opts.newPusher)
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

// render loads a snapshot and renders it for this host, with the resolved
// tags of the containers that follow their registry. Only a new revision
// (resolve true) asks a registry for what it has never resolved; the last
// good one is rendered from local state alone.
func (d *daemon) render(ctx context.Context, snap *Snapshot, resolve bool) (*spec.State, error) {
	desired, err := desiredState(snap, d.cfg)
	if err != nil {
		return nil, err
	}
	d.images.pin(ctx, desired, resolve)
	return desired, nil
}

// use makes desired the state in force: drivers for its kinds, and watchers
// over its resources.
func (d *daemon) use(ctx context.Context, rev string, desired *spec.State) {
	d.desired = desired
	d.rev = rev
	d.rebuild(ctx)
	rs := make([]ResourceStatus, 0, len(desired.Resources))
	for _, r := range desired.Resources {
		rs = append(rs, ResourceStatus{Kind: string(r.ID.Kind), Name: r.ID.Name, State: "pending"})
	}
	d.setStatus(func(s *Status) { s.Resources = rs })
}

// refreshDrivers rebuilds the drivers that lost their connection (the system
// bus restarted) or could not be built before (the engine was down), so that
// drift is repaired again without waiting for a new revision.
func (d *daemon) refreshDrivers(ctx context.Context) {
	if d.desired == nil {
		return
	}
	for _, drv := range d.drivers {
		if stale(drv) {
			d.rebuild(ctx)
			return
		}
	}
}

// rebuild builds the drivers that the state in force needs (keeping those
// that work), the engine over them, and the watchers. Watchers stop before
// the drivers they watch through are replaced.
func (d *daemon) rebuild(ctx context.Context) {
	d.stopWatchers()
	d.drivers = buildDrivers(ctx, d.cfg, d.log, d.desired, d.st, d.drivers)
	d.eng = newEngine(d.drivers, d.log, recordOwned(d.store, d.st, d.log))
	d.startWatchers(ctx, d.drivers, d.desired)
}

// converge runs one pass and saves the inventory it leaves.
func (d *daemon) converge(ctx context.Context, desired *spec.State, apply bool) (*converge.Result, error) {
	// A revision was checked when it was rendered, but the host may have
	// changed since: a bind source replaced by a link to a socket's
	// directory would be bound as it is now when a container is made
	// again.
	if err := newContainerPolicy(d.cfg).check(desired); err != nil {
		return nil, fmt.Errorf("the host no longer allows this revision's containers: %w", err)
	}
	res, err := d.eng.Converge(ctx, desired, d.st.Inventory, apply)
	d.m.converges.Inc()
	if res != nil && apply {
		d.st.Inventory = res.Inventory
		d.st.Commit = d.rev
		d.save()
		d.recordItems(res)
	}
	d.setStatus(func(s *Status) { s.LastConverge = time.Now() })
	return res, err
}

func (d *daemon) recordItems(res *converge.Result) {
	byID := map[string]converge.Item{}
	for _, it := range res.Items {
		byID[it.ID.String()] = it
		if it.Changed() && it.Err == nil {
			d.m.changes.Inc()
		}
	}
	d.setStatus(func(s *Status) {
		for i := range s.Resources {
			rs := &s.Resources[i]
			it, ok := byID[string(rs.Kind)+":"+rs.Name]
			if !ok {
				continue
			}
			rs.Error = ""
			rs.State = "converged"
			rs.Drifted = false
			if it.Err != nil {
				rs.State = "failed"
				rs.Error = it.Err.Error()
			}
		}
	})
}

func (d *daemon) save() {
	if err := d.store.Save(d.st); err != nil {
		d.log.Error("save state", "err", err)
	}
}

func failedReason(res *converge.Result) string {
	f := res.Failed()
	if len(f) == 1 {
		return fmt.Sprintf("%s: %v", f[0].ID, f[0].Err)
	}
	return fmt.Sprintf("%d resources failed; first %s: %v", len(f), f[0].ID, f[0].Err)
}

type nopNotifier struct{}

func (nopNotifier) Ready(string)  {}
func (nopNotifier) Status(string) {}
func (nopNotifier) Watchdog()     {}

// imagesPolled is the outcome of one registry poll.
type imagesPolled struct {
	ups []registry.Update
	err error
}

// startImagesPoll arms the next registry poll and, unless one is in flight,
// checks the registries of the containers that follow one. A registry
// request may wait on the network for minutes (a timeout and retries for
// each), so the poll runs in a goroutine of its own and hands its outcome
// to the loop, which repairs drift and polls the source meanwhile.
func (d *daemon) startImagesPoll(ctx context.Context) {
	d.imagesT.Reset(d.images.poller.Next())
	if d.imagesBusy || d.desired == nil || d.st.Suspended {
		return
	}
	var cs []*spec.Container
	for _, c := range following(d.desired) {
		cc := *c // the loop may pin its own copy meanwhile
		cs = append(cs, &cc)
	}
	if len(cs) == 0 {
		return
	}
	d.imagesBusy = true
	d.imagesWG.Add(1)
	poller := d.images.poller // a reload may replace d.images meanwhile
	go func() {
		defer d.imagesWG.Done()
		ups, err := poller.Poll(ctx, cs)
		d.imagesDone <- imagesPolled{ups, err}
	}()
}

// applyImages converges the revision in force with the tags that a
// registry poll resolved. A tag whose container fails (the Docker target
// has put the old container back) is marked bad, and the previous tag
// pinned again.
func (d *daemon) applyImages(ctx context.Context, r imagesPolled) {
	d.imagesBusy = false
	if r.err != nil && ctx.Err() == nil {
		d.log.Debug("registry poll", "err", r.err)
	}
	if len(r.ups) == 0 || ctx.Err() != nil || d.desired == nil || d.st.Suspended {
		return
	}
	desired := d.repin(ctx, d.desired)
	d.use(ctx, d.rev, desired)
	res, err := d.converge(ctx, desired, true)
	if err != nil {
		d.log.Error("image update refused", "err", err)
		return
	}
	if !d.images.markBad(desired, failedIDs(res)) {
		d.report(ctx, d.rev, ResultApplied, res, "")
		return
	}
	d.log.Warn("new image failed on this host; marked bad, back to the previous one")
	desired = d.repin(ctx, desired)
	d.use(ctx, d.rev, desired)
	if res, err = d.converge(ctx, desired, true); err != nil {
		d.log.Error("image update refused", "err", err)
		return
	}
	d.report(ctx, d.rev, ResultApplied, res, "")
}

// repin returns a copy of st with its following containers pinned afresh
// from the images store: what rendering the same revision again would
// give, without reading the source, which a fetch may be holding.
func (d *daemon) repin(ctx context.Context, st *spec.State) *spec.State {
	out := *st
	out.Resources = make([]*spec.Resource, len(st.Resources))
	for i, r := range st.Resources {
		if c := r.Container; c != nil && c.Update != nil {
			rc, cc := *r, *c
			cc.Tag, cc.Digest = "", ""
			rc.Container = &cc
			r = &rc
		}
		out.Resources[i] = r
	}
	d.images.pin(ctx, &out, false)
	return &out
}
