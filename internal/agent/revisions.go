package agent

import (
	"context"
	"errors"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
)

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

// convergeLocal converges the last good revision from local state: a pass
// that reads no network.
func (d *daemon) convergeLocal(ctx context.Context) {
	rev := d.st.LastGood
	if rev == "" {
		d.log.Info("no good revision yet; waiting for the source")
		return
	}
	if _, err := d.pass(ctx, polled{rev: rev}, passOptions{apply: true, local: true}); err != nil && ctx.Err() == nil {
		d.log.Warn("last good revision not converged from local state", "revision", rev, "err", err)
	}
}

// sourcePolled is the outcome of a poll of the source that started at
// start.
type sourcePolled struct {
	polled
	start time.Time
}

// startPoll asks the source for its newest revision in a goroutine of its
// own: a fetch can wait on a dead network for as long as its timeout
// (minutes). The outcome lands on d.polls. While it is in flight the source
// is the goroutine's: nothing else reads it, and a reload waits. retry
// applies the revision even when it is in force or failed.
func (d *daemon) startPoll(ctx context.Context, retry bool) {
	d.pollRetry = d.pollRetry || retry
	if d.pollBusy {
		return
	}
	d.pollBusy = true
	d.work.Add(1)
	src := d.src
	in := d.gateInput()
	go func() {
		defer d.work.Done()
		start := time.Now()
		rev, err := src.Poll(ctx)
		tip := polled{rev: rev, err: err}
		if err == nil {
			// The gate may read the fleet's notes: beside the loop, as
			// the poll.
			in.now = time.Now()
			g := gate(ctx, in, src, rev)
			tip.gate = &g
		}
		d.polls <- sourcePolled{tip, start}
	}()
}

// landPoll runs the pass over what a poll found, arms the next poll, and
// answers the control requests that waited for it.
func (d *daemon) landPoll(ctx context.Context, r sourcePolled) {
	retry := d.pollRetry
	d.pollBusy, d.pollRetry = false, false
	if cfgs := d.reloadTo; len(cfgs) > 0 {
		// A configuration that came during the poll counts from the
		// next poll on, which is now.
		d.reloadTo = nil
		for _, cfg := range cfgs {
			d.reload(ctx, cfg)
		}
		d.pollT.Reset(0)
	} else {
		d.pollT.Reset(d.nextPoll(r.start, d.afterPoll(ctx, r.polled, retry)))
	}
	waiting := d.waiting
	d.waiting = nil
	for _, req := range waiting {
		d.answer(ctx, req)
	}
}

// afterPoll records a poll's outcome and applies its revision when it is
// new and not known to fail (unless retry). The error is the poll's, or
// that of a revision that could not be read here, which the next poll
// tries again.
func (d *daemon) afterPoll(ctx context.Context, r polled, retry bool) error {
	rev, err := r.rev, r.err
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
	switch {
	case err != nil && tooLarge == "":
		if ctx.Err() == nil {
			d.logPollFailure(err)
		}
		return err
	case err == nil && d.pollFailing != "":
		d.log.Info("poll succeeded again")
		d.pollFailing = ""
	}
	if err == nil {
		d.m.lastPoll.SetToCurrentTime()
	}
	// A tip refused for its size goes on to the pass, which records it.
	if err == nil {
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
	}
	_, perr := d.pass(ctx, r, passOptions{apply: true, wait: true})
	if perr != nil && ctx.Err() == nil {
		d.log.Error("revision not readable; nothing changed", "revision", rev, "err", perr)
	}
	return perr
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
