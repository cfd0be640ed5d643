package agent

import (
	"fmt"
	"testing"
	"time"
)

// TestSplaySpreadsAFleet places 1,000 hosts in a one-minute interval: every
// tenth of it holds about a tenth of them, and a host's place does not
// change from call to call.
func TestSplaySpreadsAFleet(t *testing.T) {
	t.Parallel()
	const hosts, buckets = 1000, 10
	interval := time.Minute
	var count [buckets]int
	for i := range hosts {
		name := fmt.Sprintf("edge-%03d", i)
		s := splay(name, interval)
		if s < 0 || s >= interval {
			t.Fatalf("splay(%s) = %v, want in [0, %v)", name, s, interval)
		}
		if again := splay(name, interval); again != s {
			t.Fatalf("splay(%s) = %v, then %v, want the same", name, s, again)
		}
		count[s*buckets/interval]++
	}
	for i, c := range count {
		// 100 expected; binomial standard deviation about 9.5.
		if c < 60 || c > 140 {
			t.Errorf("tenth %d of the interval holds %d of %d hosts, want about %d; all: %v", i, c, hosts, hosts/buckets, count)
		}
	}
}

// TestPollWait checks the wait after a poll: back on the host's slot, an
// interval after a poll that started on it, and never sooner than half an
// interval after a poll that started off it.
func TestPollWait(t *testing.T) {
	t.Parallel()
	const host = "edge-042"
	interval := time.Minute
	slot := nextSlot(host, interval, time.Unix(1_800_000_000, 0))
	if got := nextSlot(host, interval, slot); !got.Equal(slot) {
		t.Fatalf("nextSlot(its own slot) = %v, want %v", got, slot)
	}
	if got := nextSlot(host, interval, slot.Add(time.Nanosecond)); !got.Equal(slot.Add(interval)) {
		t.Fatalf("nextSlot(just after a slot) = %v, want %v", got, slot.Add(interval))
	}
	if off := slot.UnixNano() % int64(interval); time.Duration(off) != splay(host, interval) {
		t.Fatalf("slot %v is %v into its interval, want the splay %v", slot, time.Duration(off), splay(host, interval))
	}
	tests := []struct {
		name       string
		start, now time.Time
		want       time.Duration
	}{
		{"on its slot, a quick poll", slot, slot.Add(200 * time.Millisecond), interval - 200*time.Millisecond},
		{"timer a little late", slot.Add(5 * time.Millisecond), slot.Add(time.Second), interval - time.Second},
		{"just before its next slot (the first poll of a new host)", slot.Add(-time.Second), slot.Add(-time.Second / 2), interval + time.Second/2},
		{"half an interval before its slot", slot.Add(-interval / 2), slot.Add(-interval / 2), interval / 2},
		{"a poll that outlasted the interval", slot, slot.Add(3*interval + time.Second), interval - time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pollWait(host, interval, tt.start, tt.now); got != tt.want {
				t.Errorf("pollWait(start %v, now %v) = %v, want %v", tt.start.Sub(slot), tt.now.Sub(slot), got, tt.want)
			}
		})
	}
}

// TestSplayDocumented checks the example of docs/daemon.md.
func TestSplayDocumented(t *testing.T) {
	t.Parallel()
	if got := splay("edge-042", time.Minute).Round(100 * time.Millisecond); got != 46900*time.Millisecond {
		t.Errorf("splay(edge-042, 1m) = %v, want 46.9s as docs/daemon.md says", got)
	}
}
