package pull

import (
	"context"
	"errors"
	"fmt"
)

// Choice is the commit to converge and why.
type Choice struct {
	// Commit is the commit to converge: the tip, or the last good one.
	Commit string
	// Tip is the branch tip that the poll saw, "" when it saw none.
	Tip string
	// Offline is true when the server could not be reached (a transient
	// failure) and Commit is the last good commit.
	Offline bool
	// Fallback is why Commit is not the tip: the poll's or the
	// verification's error. nil when Commit is the tip.
	Fallback error
}

// Choose decides which commit to converge from a poll's outcome: the tip
// when it was fetched and verified, else the last good commit. Offline is
// set when the poll failed transiently (the server is away). Without a tip
// and without a last good commit, it returns an error that matches
// ErrNoGoodCommit and the cause: the caller exits 2.
//
// A tip that failed verification is never chosen.
func Choose(tip string, pollErr, verifyErr error, lastGood string) (Choice, error) {
	c := Choice{Tip: tip}
	switch {
	case pollErr == nil && tip != "" && verifyErr == nil:
		c.Commit = tip
		return c, nil
	case pollErr != nil:
		c.Fallback = pollErr
		c.Offline = IsTransient(pollErr)
		c.Tip = ""
	case verifyErr != nil:
		c.Fallback = verifyErr
	default:
		c.Fallback = fmt.Errorf("%w: the poll returned no commit", ErrBranchNotFound)
	}
	if lastGood == "" {
		return c, fmt.Errorf("%w: %w", ErrNoGoodCommit, c.Fallback)
	}
	c.Commit = lastGood
	return c, nil
}

// Resolve polls (retrying transient failures with b, up to attempts calls),
// verifies the tip, and chooses the commit to converge with Choose.
func (r *Repo) Resolve(ctx context.Context, lastGood string, b Backoff, attempts int) (Choice, error) {
	var res Result
	pollErr := Retry(ctx, b, attempts, func(ctx context.Context) error {
		var err error
		res, err = r.Poll(ctx)
		if err != nil {
			r.log.Debug("poll failed", "err", err, "transient", IsTransient(err))
		}
		return err
	})
	if errors.Is(pollErr, context.Canceled) {
		return Choice{}, pollErr
	}
	var verifyErr error
	if pollErr == nil {
		verifyErr = r.Verify(res.Commit)
	}
	c, err := Choose(res.Commit, pollErr, verifyErr, lastGood)
	if err != nil {
		return c, err
	}
	switch {
	case c.Offline:
		r.log.Warn("source unreachable; using the last good commit", "commit", c.Commit, "err", c.Fallback)
	case c.Fallback != nil:
		r.log.Warn("using the last good commit", "commit", c.Commit, "err", c.Fallback)
	}
	return c, nil
}
