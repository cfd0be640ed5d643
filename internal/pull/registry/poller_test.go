package registry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
	testreg "github.com/outpost-gitops/outpost/test/e2e/registry"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestPollerNext(t *testing.T) {
	newP := func(host string) *Poller {
		return NewPoller(nil, nil, PollerOptions{HostName: host, Interval: 5 * time.Minute, Jitter: 0.2, Platform: hostPlatform})
	}
	seq := func(p *Poller) []time.Duration {
		var ds []time.Duration
		for range 20 {
			ds = append(ds, p.Next())
		}
		return ds
	}
	a, a2, b := seq(newP("edge-042")), seq(newP("edge-042")), seq(newP("edge-043"))
	for _, d := range a {
		if d < 4*time.Minute || d > 6*time.Minute {
			t.Errorf("Next() = %v, want within 5m ± 20%%", d)
		}
	}
	if diff := cmp.Diff(a, a2); diff != "" {
		t.Errorf("Next() differs between two pollers of one host (-first +second):\n%s", diff)
	}
	if cmp.Equal(a, b) {
		t.Errorf("Next() of edge-042 and edge-043 = %v, want different sequences", a)
	}
	if d := newP("x").first(); d < 0 || d > time.Minute {
		t.Errorf("first() = %v, want within [0, 1m]", d)
	}
	none := NewPoller(nil, nil, PollerOptions{Interval: time.Minute, Jitter: -1, Platform: hostPlatform})
	if d := none.Next(); d != time.Minute {
		t.Errorf("Next() without jitter = %v, want 1m", d)
	}
}

// TestPollerRun runs the poll loop against a real registry until it reports
// the container's first resolution, then stops it.
func TestPollerRun(t *testing.T) {
	reg := sharedRegistry
	d := reg.Push(t, "run", testreg.Image(t, testreg.Config{Cmd: []string{"true"}}), "1.0.0")
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := NewPoller(newTestResolver(t, Options{Bad: store}), store,
		PollerOptions{HostName: "edge-042", Interval: 10 * time.Millisecond, MinInterval: -1, Platform: hostPlatform, Logger: discard()})
	cs := []*docker.Container{
		following("web", reg.Repo("run"), docker.UpdatePolicy{Policy: "semver"}),
		{Name: "pinned", Image: reg.Repo("run"), Tag: "1.0.0"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []Update, 1)
	done := make(chan error)
	go func() {
		done <- p.Run(ctx, func() []*docker.Container { return cs }, func(u []Update) {
			select {
			case got <- u:
			default:
			}
		})
	}()
	ups := <-got
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v, want %v", err, context.Canceled)
	}
	want := []Update{{Container: "web", To: "1.0.0@" + d}}
	if diff := cmp.Diff(want, ups); diff != "" {
		t.Errorf("Run's first updates (-want +got):\n%s", diff)
	}
	if _, ok := store.Entry("pinned"); ok {
		t.Error("a pinned container has an entry in the store, want none")
	}
}

// TestPollerLogsTransitions checks that a registry that keeps failing is
// logged once when it starts and once when it recovers, not at every poll.
func TestPollerLogsTransitions(t *testing.T) {
	reg := sharedRegistry
	reg.Push(t, "logs", testreg.Image(t, testreg.Config{Cmd: []string{"true"}}), "1.0.0")
	f := reg.Front(t, testreg.FrontOptions{})
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p := NewPoller(newTestResolver(t, Options{Bad: store, Retry: Retry{Max: -1}}), store,
		PollerOptions{MinInterval: -1, Platform: hostPlatform, Logger: log})
	cs := []*docker.Container{following("logs", f.Host()+"/logs", docker.UpdatePolicy{Policy: "semver"})}
	ctx := context.Background()

	var errs int
	for _, fail := range []bool{false, true, true, true, false, false} {
		f.Reset()
		if fail {
			f.FailNext(1000, http.StatusInternalServerError, 0)
		}
		if _, err := p.Poll(ctx, cs); err != nil {
			errs++
		}
	}
	if errs != 3 {
		t.Errorf("failed polls = %d, want 3", errs)
	}
	out := buf.String()
	for msg, want := range map[string]int{"registry check failing": 1, "registry check recovered": 1, "new image resolved": 1} {
		if got := strings.Count(out, msg); got != want {
			t.Errorf("log has %q %d times, want %d:\n%s", msg, got, want, out)
		}
	}
}
