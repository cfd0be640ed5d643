package pull

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"
)

// Backoff spaces retries: exponentially from Base up to Cap, with a jitter
// derived from Seed (the host's name), so that a fleet that lost its server
// at once does not come back at once, and one host's delays are the same
// from run to run.
type Backoff struct {
	Base, Cap time.Duration
	Seed      string
}

// DefaultBackoff is used where a Backoff has no Base: 2s doubling to 5m.
var DefaultBackoff = Backoff{Base: 2 * time.Second, Cap: 5 * time.Minute}

// Delay returns the wait before retry number attempt (0 for the first
// retry): a value in [d/2, d] where d = min(Cap, Base·2^attempt).
func (b Backoff) Delay(attempt int) time.Duration {
	base, limit := b.Base, b.Cap
	if base <= 0 {
		base = DefaultBackoff.Base
	}
	if limit <= 0 {
		limit = DefaultBackoff.Cap
	}
	if limit < base {
		limit = base
	}
	d := base
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", b.Seed, attempt)
	frac := float64(h.Sum64()>>11) / float64(1<<53) // in [0, 1)
	return d/2 + time.Duration(frac*float64(d/2))
}

// Wait sleeps for Delay(attempt) or until ctx is done, whichever is first,
// and returns ctx's error in the second case.
func (b Backoff) Wait(ctx context.Context, attempt int) error {
	t := time.NewTimer(b.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Retry calls op until it succeeds, fails with an error that is not
// transient, or has been called attempts times (at least once), waiting
// b.Delay between calls. It returns op's last error.
func Retry(ctx context.Context, b Backoff, attempts int, op func(context.Context) error) error {
	var err error
	for i := 0; ; i++ {
		err = op(ctx)
		if err == nil || !IsTransient(err) || i+1 >= attempts {
			return err
		}
		if werr := b.Wait(ctx, i); werr != nil {
			return errors.Join(err, werr)
		}
	}
}
