package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/redact"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/status"
)

// Results recorded for a revision, in status and in notes.
const (
	ResultApplied    = "applied"
	ResultFailed     = "failed"
	ResultRolledBack = "rolled-back"
	ResultInvalid    = "invalid"
	ResultUnverified = "unverified"
)

// runner runs passes: one for apply and diff, one per new revision, image
// update and rollback for the daemon. It holds what a pass reads (the
// configuration, the source, the registry store) and what passes leave
// behind (the state, the drivers, the revision in force and its status).
// Only one goroutine uses a runner at a time: the command's, or the
// daemon's loop; status alone is also read by the control server.
type runner struct {
	cfg    *Config
	log    *slog.Logger
	store  *state.Store
	st     *state.State
	src    revSource
	images *images   // built when a pass first follows a registry
	notes  *reporter // nil without Git
	m      *metrics
	seams  seams

	// notify hears the outcome line of each pass (the daemon's
	// sd_notify STATUS=).
	notify func(line string)
	// watch and unwatch start and stop the daemon's watchers over the
	// drivers in use; nil for a single pass.
	watch   func(ctx context.Context)
	unwatch func()

	desired *spec.State
	rev     string
	drivers map[spec.Kind]converge.Driver
	eng     *converge.Engine
	// recording, set for a pass that applies, keeps what a pass creates
	// in the state as it goes, through owned.
	recording bool
	owned     *ownedRecorder
	// saved is what the state document holds: a save that would write
	// the same is skipped.
	saved state.State
	// driftSinceNote counts the drift repairs since the last note.
	driftSinceNote int
	// noCommit holds the OCI revisions whose missing commit was warned
	// about: their notes are skipped with one warning each.
	noCommit map[string]bool
	// track keeps the status of each resource in force, which the
	// daemon serves on its socket; a single pass has no one to tell.
	track bool
	// pollDue makes a pass ask a registry whose check is due before it
	// pins: a single pass's way; the daemon's registry timer asks beside
	// its loop, so that a registry that stalls holds up no revision.
	pollDue bool
	// saveErr is the first save that failed: a single pass fails with
	// it; the daemon logs it and saves again at its next change.
	saveErr error

	// policy is the rollout and windows of the revision in force, as the
	// last gate read them.
	policy *gatePolicy
	// lastNote is the last note composed, without its hold: a host that
	// holds back a commit writes it again with the hold.
	lastNote status.Note
	// holdNoteAt is when a note with a hold was last written.
	holdNoteAt time.Time

	mu     sync.Mutex // guards status
	status Status
}

// seams are the constructors of what a pass talks to; the zero value means
// the real ones, and tests set them.
type seams struct {
	// drivers builds the driver of each kind (converge.Drivers).
	drivers   map[spec.Kind]converge.NewDriverFunc
	newSource func(*Config, *slog.Logger) (revSource, error)
	newImages func(*Config, *slog.Logger, *registry.Store) (*images, error)
	newPusher func(*status.Notes, status.PushOptions) (notesPusher, error)
}

func (s seams) withDefaults() seams {
	if s.drivers == nil {
		s.drivers = converge.Drivers()
	}
	if s.newSource == nil {
		s.newSource = newRevSource
	}
	if s.newImages == nil {
		s.newImages = newImages
	}
	if s.newPusher == nil {
		s.newPusher = newNotesPusher
	}
	return s
}

// newRunner loads the state of cfg's state directory; the caller holds its
// lock when the runner is to apply.
func newRunner(cfg *Config, log *slog.Logger, s seams) (*runner, error) {
	p := &runner{cfg: cfg, log: log, store: state.New(cfg.StateDir), m: newMetrics(), seams: s.withDefaults(), notify: func(string) {}}
	st, err := p.store.Load()
	if err != nil {
		return nil, err
	}
	p.st = st
	p.saved = cloneState(st)
	p.status.Host = cfg.Host.Name
	p.status.Held = st.Held
	p.status.Resources = []ResourceStatus{}
	return p, nil
}

// passOptions say what kind of pass runs.
type passOptions struct {
	// apply changes the host and records the outcome; false is a diff,
	// which does neither.
	apply bool
	// wait gates a new revision on the health of what it changed.
	wait bool
	// fallback converges the last good revision when the tip cannot be
	// used (the source is away, or the tip is refused): a single pass's
	// way. The daemon keeps the revision in force instead.
	fallback bool
	// local converges the tip as it is kept here, without asking a
	// registry or verifying it again: the daemon's start on its last good
	// revision, which must not wait on a network.
	local bool
}

// polled is the outcome of one poll of the source, and for a new tip the
// gate's decision about it (nil: not asked).
type polled struct {
	rev  string
	err  error
	gate *gated
}

// pass runs one pass over the tip that a poll returned, as a straight line
// of stages: source (verify, or fall back), render, resolve images,
// converge, wait for health, record. Every stage that refuses the revision
// records it the same way (record); a diff records nothing. The error is
// for a pass that could not run (no revision at all, a cancelled context,
// an unreadable local copy), which the report does not describe.
func (p *runner) pass(ctx context.Context, tip polled, o passOptions) (*Report, error) {
	rep := &Report{Command: "diff", Host: p.cfg.Host.Name, Errors: []Problem{}, Changes: []Change{}}
	if o.apply {
		rep.Command = "apply"
	}
	rev, isTip, err := p.source(ctx, tip, o, rep)
	if err != nil || rev == "" {
		return rep, err
	}
	rep.Revision = rev
	log := p.log.With(p.revArgs(rev)...)
	snap, err := p.src.Snapshot(ctx, rev)
	if err != nil && errors.Is(err, pull.ErrTooLarge) {
		if p.refuse(ctx, rev, ResultInvalid, err, o) {
			p.logRefusal(o, "revision invalid: too large to read; nothing changed", "revision", rev, "err", err)
		}
		rep.Result, rep.Reason = ResultInvalid, redact.URLs(err.Error())
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	if snap.Commit != "" && snap.Commit != rev {
		rep.Commit = snap.Commit
	}
	desired, err := p.render(ctx, snap, isTip && !o.local)
	if err != nil {
		// A damaged local copy reads as missing files, which validation
		// reports like any invalid manifest: it must not mark a good
		// revision failed. The source fetches it again on the next poll.
		if rerr := damaged(snap); rerr != nil {
			log.Error("revision not readable: the local copy is damaged; nothing changed", "err", rerr)
			return rep, rerr
		}
		ps, ok := problems(err, snap.Display)
		if !ok {
			return rep, err
		}
		rep.Errors = ps
		if p.refuse(ctx, rev, ResultInvalid, err, o) {
			p.logRefusal(o, "revision invalid; nothing changed", "revision", rev, "err", err)
		}
		rep.Result, rep.Reason = ResultInvalid, redact.URLs(err.Error())
		return rep, nil
	}
	rep.Valid = true
	if !o.apply {
		return rep, p.diff(ctx, rev, desired, rep)
	}
	if isTip && rev != p.st.LastGood {
		log.Info("applying a new revision")
	}
	p.use(ctx, rev, desired, true)
	res, err := p.converge(ctx, desired)
	if res != nil {
		fillChanges(rep, res, desired)
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	rep.Result, rep.Reason = p.finish(ctx, rev, desired, res, err, isTip && o.wait)
	if err != nil {
		return rep, err
	}
	return rep, nil
}

// diff converges desired without applying: what would change.
func (p *runner) diff(ctx context.Context, rev string, desired *spec.State, rep *Report) error {
	p.use(ctx, rev, desired, false)
	res, err := p.eng.Converge(ctx, desired, p.st.Inventory, false)
	if err != nil {
		return err
	}
	fillChanges(rep, res, desired)
	return nil
}

// source is the first stage: it picks the revision that the pass
// converges, and whether it is the tip. A tip refused for its size or its
// signature is recorded; then a single pass falls back to the last good
// revision, and the daemon keeps what it has ("").
func (p *runner) source(ctx context.Context, tip polled, o passOptions, rep *Report) (string, bool, error) {
	if o.local {
		return tip.rev, false, nil
	}
	if c := refusedCommit(tip.err); c != "" && p.refuse(ctx, c, ResultInvalid, tip.err, o) {
		p.logRefusal(o, "revision invalid: too large to fetch; nothing changed", "revision", c, "err", tip.err)
	}
	var verifyErr error
	if tip.err == nil {
		verifyErr = p.src.Verify(ctx, tip.rev)
		if verifyErr != nil && ctx.Err() == nil && p.refuse(ctx, tip.rev, ResultUnverified, verifyErr, o) {
			p.logRefusal(o, "revision not verified; nothing changed", append(p.revArgs(tip.rev), "err", verifyErr)...)
		}
	}
	if ctx.Err() != nil {
		return "", false, ctx.Err()
	}
	if tip.err == nil && verifyErr == nil {
		return p.gated(ctx, tip, o, rep)
	}
	if !o.fallback {
		return "", false, nil
	}
	choice, err := pull.Choose(tip.rev, tip.err, verifyErr, p.st.LastGood)
	if err != nil {
		return "", false, err
	}
	p.log.Info("converging the last good revision", append(p.revArgs(choice.Commit), "offline", choice.Offline, "reason", choice.Fallback)...)
	rep.Offline = choice.Offline
	rep.Fallback = redact.URLs(choice.Fallback.Error())
	rep.Tip = choice.Tip
	return choice.Commit, false, nil
}

// gated applies the gate's decision about a verified tip: a tip held back
// is recorded as held (state, status, note); then a single pass converges
// the last good revision, and the daemon keeps what it has ("").
func (p *runner) gated(ctx context.Context, tip polled, o passOptions, rep *Report) (string, bool, error) {
	if tip.gate == nil || !o.apply {
		return tip.rev, true, nil
	}
	p.policy = tip.gate.policy
	h := tip.gate.hold
	if h == nil {
		if p.st.Held != nil {
			p.st.Held = nil
			p.setStatus(func(s *Status) { s.Held = nil })
		}
		return tip.rev, true, nil
	}
	if old := p.st.Held; old == nil || old.Commit != h.Commit || old.State != h.State {
		p.log.Info("new revision held back", append(p.revArgs(h.Commit), "wave", h.Wave, "state", h.State, "reason", h.Reason)...)
	}
	p.st.Held = h
	p.save()
	p.setStatus(func(s *Status) { s.Held = h })
	rep.Held = describeHold(h)
	if !o.fallback {
		p.reportHold(ctx)
		return "", false, nil
	}
	return p.st.LastGood, false, nil
}

// logRefusal logs why a revision is refused: an error for the daemon, which
// has no other way to say it; a single pass prints it in its report.
func (p *runner) logRefusal(o passOptions, msg string, args ...any) {
	if o.fallback {
		p.log.Debug(msg, args...)
		return
	}
	p.log.Error(msg, args...)
}

// damaged reads every file of snap and returns the first error that says
// the local copy of the source is damaged (pull.ErrCorrupt), or nil. A file
// over the size limit is not read: it is refused whatever it holds, and
// reading a 2 GB file to learn that would cost more than the pass.
func damaged(snap *Snapshot) error {
	var found error
	fs.WalkDir(snap.FS, ".", func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			if fi, ierr := de.Info(); ierr == nil && fi.Size() > spec.DefaultMaxFileSize {
				return nil
			}
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

// render loads a snapshot and renders it for this host, with the resolved
// tags of the containers that follow their registry. A new revision (tip)
// asks a registry for what it never resolved, and in a single pass
// (pollDue) what is due; the last good one is rendered from local state
// alone.
func (p *runner) render(ctx context.Context, snap *Snapshot, tip bool) (*spec.State, error) {
	desired, err := desiredState(snap, p.cfg)
	if err != nil {
		return nil, err
	}
	if !withUpdate(desired) {
		return desired, nil
	}
	if p.images == nil {
		if p.images, err = p.seams.newImages(p.cfg, p.log, nil); err != nil {
			return nil, err
		}
	}
	if len(following(desired)) == 0 {
		return desired, nil // update mode git: the tags are Git's
	}
	mode := pinOnly
	switch {
	case tip && p.pollDue:
		mode = resolveDue
	case tip:
		mode = resolveNew
	}
	p.images.pin(ctx, desired, mode)
	return desired, nil
}

// use makes desired the state in force: drivers for its kinds, and (for
// the daemon) watchers over its resources. apply says whether the pass
// records what it creates as it goes.
func (p *runner) use(ctx context.Context, rev string, desired *spec.State, apply bool) {
	p.desired = desired
	p.rev = rev
	p.recording = apply
	p.rebuild(ctx)
	if !p.track {
		return
	}
	rs := make([]ResourceStatus, 0, len(desired.Resources))
	for _, r := range desired.Resources {
		rs = append(rs, ResourceStatus{Kind: string(r.ID.Kind), Name: r.ID.Name, State: "pending"})
	}
	p.setStatus(func(s *Status) { s.Resources, s.windows = rs, desired.Windows })
}

// refreshDrivers rebuilds the drivers that lost their connection (the system
// bus restarted) or could not be built before (the engine was down), so that
// drift is repaired again without waiting for a new revision.
func (p *runner) refreshDrivers(ctx context.Context) {
	if p.desired == nil {
		return
	}
	for _, drv := range p.drivers {
		if stale(drv) {
			p.rebuild(ctx)
			return
		}
	}
}

// rebuild builds the drivers that the state in force needs (keeping those
// that work), the engine over them, and the watchers. Watchers stop before
// the drivers they watch through are replaced.
func (p *runner) rebuild(ctx context.Context) {
	if p.unwatch != nil {
		p.unwatch()
	}
	p.drivers = buildDrivers(ctx, p.cfg, p.log, p.desired, p.st, p.drivers, p.seams.drivers)
	var owned func(state.Inventory)
	p.owned = nil
	if p.recording {
		p.owned = recordOwned(p.store, p.st, p.log)
		owned = p.owned.record
	}
	p.eng = newEngine(p.drivers, p.log, owned)
	if p.watch != nil {
		p.watch(ctx)
	}
}

// converge applies desired and saves the inventory it leaves, even when
// the pass was cut short: what was created is owned and must stay
// prunable.
func (p *runner) converge(ctx context.Context, desired *spec.State) (*converge.Result, error) {
	// A revision was checked when it was rendered, but the host may have
	// changed since: a bind source replaced by a link to a socket's
	// directory would be bound as it is now when a container is made
	// again.
	if err := newContainerPolicy(p.cfg).check(desired); err != nil {
		return nil, fmt.Errorf("the host no longer allows this revision's containers: %w", err)
	}
	p.intend(desired)
	if err := writeSecretFiles(desired, p.st.Inventory, p.cfg.Secrets.runDir(), p.log); err != nil {
		return nil, err
	}
	res, err := p.eng.Converge(ctx, desired, p.st.Inventory, true)
	if p.owned != nil {
		p.owned.settle()
	}
	p.m.converges.Inc()
	if res != nil {
		p.st.Inventory = res.Inventory
		p.st.Commit = p.rev
		p.save()
		p.recordItems(res)
	}
	p.setStatus(func(s *Status) { s.LastConverge = time.Now() })
	return res, err
}

// intend records, before a pass applies desired, each of its objects that
// the state does not own yet, without a hash, as the engine records a
// create that failed: a pass killed while it creates one (a unit that takes
// minutes to start) leaves it owned, and a later pass prunes it when it
// leaves the desired state. Drivers remove such an object only when it
// carries Outpost's mark, so one that was never made, or is someone
// else's, is left alone. A kind without a driver here gets none: it could
// not be pruned.
func (p *runner) intend(desired *spec.State) {
	now := time.Now().UTC()
	added := false
	for _, r := range desired.Resources {
		if _, ok := p.st.Inventory.Get(r.ID); ok {
			continue
		}
		if d, ok := p.drivers[r.ID.Kind]; !ok || stale(d) {
			continue
		}
		if !added {
			// Copied before it changes: save compares with the
			// inventory that was saved, which shares this map.
			p.st.Inventory = p.st.Inventory.Clone()
			if p.st.Inventory == nil {
				p.st.Inventory = state.Inventory{}
			}
		}
		p.st.Inventory.Set(state.Entry{Kind: r.ID.Kind, Name: r.ID.Name, AppliedAt: now, NoPrune: !r.Prune})
		added = true
	}
	if added {
		p.save()
	}
}

func (p *runner) recordItems(res *converge.Result) {
	if !p.track {
		return
	}
	byID := map[string]converge.Item{}
	for _, it := range res.Items {
		byID[it.ID.String()] = it
		if it.Changed() && it.Err == nil {
			p.m.changes.Inc()
		}
	}
	p.setStatus(func(s *Status) {
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

// finish is the last stages of a pass that converged rev: with gate, the
// health wait, and a rollback to the last good revision when rev failed.
// It records the outcome and returns it.
func (p *runner) finish(ctx context.Context, rev string, desired *spec.State, res *converge.Result, err error, gate bool) (result, reason string) {
	switch {
	case err != nil:
		reason = err.Error()
	case len(res.Failed()) > 0:
		reason = failedReason(res)
	case gate:
		reason = p.waitHealthy(ctx, desired, res)
	}
	if ctx.Err() != nil {
		return "", ""
	}
	if p.images != nil {
		// A followed tag that failed here is not tried again; the next
		// pass pins the previous one.
		p.images.markBad(desired, failedIDs(res))
	}
	o := outcome{rev: rev, result: ResultApplied, reason: reason, res: res, inForce: rev}
	switch {
	case reason == "":
	case !gate || rev == p.st.LastGood:
		// The last good revision itself did not converge, or a pass
		// that does not wait: keep the last good and report; the next
		// pass tries again.
		o.result, o.keep = ResultFailed, true
	default:
		p.log.Error("revision failed", append(p.revArgs(rev), "reason", reason)...)
		o.result = ResultFailed
		if good := p.st.LastGood; good != "" && good != rev && p.rollback(ctx, good) {
			o.result, o.inForce = ResultRolledBack, good
		}
	}
	p.record(ctx, o)
	return o.result, redact.URLs(reason)
}

// outcome is what a pass records about a revision.
type outcome struct {
	rev, result, reason string
	res                 *converge.Result // nil when nothing converged
	// inForce is the revision in force after the pass: rev, the last good
	// one after a rollback, or "" when the pass changed nothing.
	inForce string
	// keep records a failure without marking rev failed: it stays the
	// revision to converge again.
	keep bool
}

// record writes the outcome of a pass, the same way for every stage and
// result: the state (last good, failed revisions), the status and metrics,
// and the note, which is then pushed.
func (p *runner) record(ctx context.Context, o outcome) {
	// The failed revisions are copied before they change: save compares
	// with what was saved, which shares the map.
	switch {
	case o.result == ResultApplied:
		p.st.LastGood = o.rev
		p.st.RolledBack = ""
		if _, ok := p.st.Failed[o.rev]; ok {
			p.st.Failed = maps.Clone(p.st.Failed)
			delete(p.st.Failed, o.rev)
		}
		p.m.appliedCommit(o.rev)
	case !o.keep:
		p.st.Failed = maps.Clone(p.st.Failed)
		if p.st.Failed == nil {
			p.st.Failed = map[string]state.Failure{}
		}
		p.st.Failed[o.rev] = state.Failure{Result: o.result, Reason: o.reason, At: time.Now().UTC()}
		p.m.failures.Inc()
		if o.result == ResultRolledBack {
			p.st.RolledBack = o.rev
		}
	}
	p.save()
	if o.inForce != "" {
		from := ""
		if o.result == ResultRolledBack {
			from = o.rev
		}
		p.setResult(o.inForce, from, o.result, o.reason)
	} else {
		p.setStatus(func(s *Status) {
			s.LastError = o.reason
			s.Failed = cloneFailed(p.st.Failed)
		})
	}
	p.report(ctx, o.rev, o.result, o.res, o.reason)
}

// refuse records a revision that was never applied, and reports whether it
// was news. A revision already recorded with the same result is left as it
// was: a one-shot pass run from a timer meets the same refused tip each
// time. A diff records nothing.
func (p *runner) refuse(ctx context.Context, rev, result string, err error, o passOptions) bool {
	if f, ok := p.st.Failed[rev]; ok && f.Result == result {
		return false
	}
	if o.apply && !o.local {
		p.record(ctx, outcome{rev: rev, result: result, reason: err.Error()})
	}
	return true
}

// rollback converges the last good revision again.
func (p *runner) rollback(ctx context.Context, good string) bool {
	log := p.log.With(p.revArgs(good)...)
	snap, err := p.src.Snapshot(ctx, good)
	if err != nil {
		log.Error("cannot roll back: last good revision not readable", "err", err)
		return false
	}
	desired, err := p.render(ctx, snap, false)
	if err != nil {
		log.Error("cannot roll back: last good revision no longer renders", "err", err)
		return false
	}
	log.Warn("rolling back to the last good revision")
	p.use(ctx, good, desired, true)
	res, err := p.converge(ctx, desired)
	if err != nil || len(res.Failed()) > 0 {
		log.Error("rollback did not converge every resource", "err", err, "failed", len(res.Failed()))
	}
	return true
}

// healthTick is how often a health wait asks again.
const healthTick = 500 * time.Millisecond

// waitHealthy waits until every resource that the pass changed is healthy, up
// to the health timeout, and returns why not ("" when healthy).
func (p *runner) waitHealthy(ctx context.Context, desired *spec.State, res *converge.Result) string {
	var check []*spec.Resource
	for _, it := range res.Items {
		if it.Prune || !it.Changed() {
			continue
		}
		if r := desired.Lookup(it.ID); r != nil {
			if _, ok := p.eng.Driver(r.ID.Kind).(converge.HealthChecker); ok {
				check = append(check, r)
			}
		}
	}
	// The revision is healthy from the end of its converge when nothing
	// it changed has a health check (it changed only files), else when
	// the last check passes; never at an earlier revision's time.
	p.setStatus(func(s *Status) { s.HealthyAt = time.Time{} })
	if len(check) == 0 {
		p.setStatus(func(s *Status) { s.HealthyAt = s.LastConverge })
		return ""
	}
	timeout := time.Duration(p.cfg.HealthTimeout)
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(healthTick)
	defer tick.Stop()
	for {
		why, failed := p.unhealthy(hctx, check)
		if why == "" {
			p.setStatus(func(s *Status) { s.HealthyAt = time.Now() })
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
			p.refreshDrivers(ctx)
		}
	}
}

// unhealthy asks each resource of check whether it is healthy and says why
// the first is not; failed is true when a driver could not be asked.
func (p *runner) unhealthy(ctx context.Context, check []*spec.Resource) (why string, failed bool) {
	for _, r := range check {
		hc, checks := p.eng.Driver(r.ID.Kind).(converge.HealthChecker)
		if !checks {
			return fmt.Sprintf("%s is not healthy: its %s driver is unavailable", r.ID, r.ID.Kind), false
		}
		healthy, reason, err := hc.Healthy(ctx, r)
		if err != nil {
			reason = err.Error()
			failed = true
		}
		if !healthy {
			return fmt.Sprintf("%s is not healthy: %s", r.ID, reason), failed
		}
	}
	return "", false
}

// save writes the state unless the document already holds it: an fsync
// per run of a host that is in sync is wasted wear on small devices'
// flash.
func (p *runner) save() {
	if sameState(&p.saved, p.st) {
		return
	}
	if err := p.store.Save(p.st); err != nil {
		p.log.Error("save state", "err", err)
		if p.saveErr == nil {
			p.saveErr = fmt.Errorf("save state: %w", err)
		}
		return
	}
	p.saved = cloneState(p.st)
}

// cloneState copies what save compares. The maps are shared: every change
// of the runner's state replaces a map rather than writing into it (the
// engine returns a new inventory; intend and record copy theirs first), so
// a pass with nothing to do copies no inventory.
func cloneState(st *state.State) state.State {
	return *st
}

// sameState reports whether a and b record the same state.
func sameState(a, b *state.State) bool {
	return a.Suspended == b.Suspended && sameRecord(a, b) && a.Held == b.Held &&
		maps.EqualFunc(a.Failed, b.Failed, func(x, y state.Failure) bool {
			return x.Result == y.Result && x.Reason == y.Reason && x.At.Equal(y.At)
		})
}

func failedReason(res *converge.Result) string {
	f := res.Failed()
	if len(f) == 1 {
		return fmt.Sprintf("%s: %v", f[0].ID, f[0].Err)
	}
	return fmt.Sprintf("%d resources failed; first %s: %v", len(f), f[0].ID, f[0].Err)
}

func (p *runner) setStatus(f func(*Status)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.status)
}

// setResult records that rev is in force after a pass with result; from is
// the revision rolled back from, when result is rolled-back.
func (p *runner) setResult(rev, from, result, reason string) {
	commit, digest := rev, ""
	good, goodDigest := p.st.LastGood, ""
	back, backDigest := from, ""
	if isOCIURL(p.cfg.Source.URL) {
		commit, digest = ociCommits(p.cfg.StateDir, rev)
		good, goodDigest = ociCommits(p.cfg.StateDir, good)
		if from != "" {
			back, backDigest = ociCommits(p.cfg.StateDir, from)
		}
	}
	p.setStatus(func(s *Status) {
		s.Commit, s.Digest = commit, digest
		s.LastGood, s.LastGoodDigest = good, goodDigest
		s.RolledBack, s.RolledBackDigest = back, backDigest
		s.Result = result
		s.LastError = reason
		s.Failed = cloneFailed(p.st.Failed)
	})
	p.notify(p.statusLine())
}

// snapshot returns a copy of the status that is safe to encode.
func (p *runner) snapshot() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.status
	s.Source = "daemon"
	if len(s.windows) > 0 {
		s.NextWindow, s.WindowOpen = windowState(s.windows, time.Now())
	}
	s.Resources = append([]ResourceStatus(nil), p.status.Resources...)
	return s
}

func (p *runner) statusLine() string {
	s := p.snapshot()
	if s.Commit == "" {
		return "waiting for a good revision"
	}
	line := fmt.Sprintf("%s %s", shortRev(s.Commit), s.Result)
	if s.RolledBack != "" {
		line = fmt.Sprintf("%s (rolled back from %s)", shortRev(s.Commit), shortRev(s.RolledBack))
	}
	if s.Suspended {
		line += " (suspended)"
	}
	return line
}

// close releases the drivers and stops the notes' pusher.
func (p *runner) close() {
	if p.unwatch != nil {
		p.unwatch()
	}
	closeDrivers(p.drivers)
	p.notes.close()
}
