package agent

import (
	"hash/fnv"
	"time"
)

// A fleet whose hosts boot together, after a power cut or a rollout of
// new machines, would otherwise poll its Git server together at every
// interval. Each host polls instead at a fixed place in the interval, its
// splay, derived from its name (the same FNV-1a hash of the name that
// seeds the image poller's jitter), and counted from the Unix epoch: hosts
// that boot at the same moment, or restart, poll together once, at start,
// and then each at its own place, so that a fleet's polls spread evenly
// over the interval.

// splay returns host's place in a period of interval, in [0, interval).
func splay(host string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(host))
	return time.Duration(h.Sum64() % uint64(interval))
}

// nextSlot returns the first instant at or after after at which host's
// polls fall: a multiple of interval since the epoch, plus its splay.
func nextSlot(host string, interval time.Duration, after time.Time) time.Time {
	if interval <= 0 {
		return after
	}
	off := splay(host, interval)
	since := after.UnixNano() - int64(off)
	rem := since % int64(interval)
	if rem < 0 {
		rem += int64(interval)
	}
	if rem == 0 {
		return after
	}
	return after.Add(interval - time.Duration(rem))
}

// pollWait is the wait, from now, before the poll that follows one that
// started at start and succeeded: until the host's next slot at least half
// an interval after start. A poll that starts on its slot is followed by
// one exactly an interval later; a poll off its slot (the first after a
// start, a retry after a failure) by one at the host's slot again.
func pollWait(host string, interval time.Duration, start, now time.Time) time.Duration {
	after := start.Add(interval / 2)
	if after.Before(now) {
		after = now
	}
	return nextSlot(host, interval, after).Sub(now)
}
