package docker

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// BenchmarkNoopConverge measures a converge of 20 managed containers that
// need nothing: one CheckApply each, as a periodic full pass does.
func BenchmarkNoopConverge(b *testing.B) {
	d := newDriverT(b, Options{})
	ctx := testCtx(b)
	var rs []*spec.Resource
	for i := 0; i < 20; i++ {
		r := web(uniqueName(b, "bench"))
		apply(b, d, r)
		rs = append(rs, r)
	}
	for b.Loop() {
		for _, r := range rs {
			ch, err := d.CheckApply(ctx, r, true)
			if err != nil || ch.Action != spec.ActionNone {
				b.Fatalf("CheckApply(%s) = %v, %v; want none", r.ID, ch, err)
			}
		}
	}
}

// BenchmarkDriftRepair measures the time from `docker kill` of a managed
// container to the container running again, repaired through Watch and
// CheckApply as the daemon does. It reports the median and the worst.
func BenchmarkDriftRepair(b *testing.B) {
	d := newDriverT(b, Options{})
	cli := rawClient(b)
	ctx := testCtx(b)
	name := uniqueName(b, "bench")
	r := web(name)
	apply(b, d, r)

	// The repair loop: Watch's notifications drive CheckApply.
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	notes := make(chan spec.ID, 16)
	var (
		mu     sync.Mutex
		killed time.Time
		detect []time.Duration
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.Watch(wctx, []*spec.Resource{r}, func(id spec.ID) {
			mu.Lock()
			if !killed.IsZero() {
				detect = append(detect, time.Since(killed))
				killed = time.Time{}
			}
			mu.Unlock()
			select {
			case notes <- id:
			default:
			}
		})
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-wctx.Done():
				return
			case <-notes:
				d.CheckApply(wctx, r, true)
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	var lat []time.Duration
	for b.Loop() {
		before := inspect(b, cli, name).State.StartedAt
		start := time.Now()
		mu.Lock()
		killed = start
		mu.Unlock()
		if err := cli.ContainerKill(ctx, name, "KILL"); err != nil {
			b.Fatal(err)
		}
		for {
			in, err := cli.ContainerInspect(ctx, name)
			if err == nil && in.State.Running && in.State.StartedAt != before {
				break
			}
			select {
			case <-ctx.Done():
				b.Fatal("not repaired")
			case <-time.After(10 * time.Millisecond):
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	b.ReportMetric(p50(lat), "p50-ms")
	b.ReportMetric(float64(slices.Max(lat).Milliseconds()), "max-ms")
	mu.Lock()
	if len(detect) > 0 {
		b.ReportMetric(p50(detect), "detect-p50-ms")
	}
	mu.Unlock()

	// For comparison: the engine alone starting the same killed container.
	var raw []time.Duration
	for range 5 {
		if err := cli.ContainerKill(ctx, name, "KILL"); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := cli.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(start))
	}
	b.ReportMetric(p50(raw), "engine-start-p50-ms")
}

func p50(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Milliseconds())
}

// BenchmarkUpdateGap measures the longest time during an update (web:1 to
// web:2 and back) in which the container's published port gives no answer.
func BenchmarkUpdateGap(b *testing.B) {
	d := newDriverT(b, Options{})
	name := uniqueName(b, "bench")
	port := freePort(b)
	r := web(name)
	Of(r).Ports = []Port{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 8080}}
	apply(b, d, r)
	// Pull both images first: the gap is the recreate's, not the pull's.
	Of(r).Tag = "2"
	apply(b, d, r)

	var worst time.Duration
	for i := 0; b.Loop(); i++ {
		Of(r).Tag = strconv.Itoa(1 + i%2)
		gap := measureGap(b, port, func() { apply(b, d, r) })
		worst = max(worst, gap)
	}
	b.ReportMetric(float64(worst.Milliseconds()), "max-gap-ms")
}

// measureGap polls the port every 5ms while f runs and returns the longest
// time between two answers.
func measureGap(b *testing.B, port uint16, f func()) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	url := "http://127.0.0.1:" + strconv.Itoa(int(port)) + "/index.html"
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	done := make(chan time.Duration)
	go func() {
		last := time.Now()
		var longest time.Duration
		for {
			resp, err := c.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					longest = max(longest, time.Since(last))
					last = time.Now()
				}
			}
			select {
			case <-ctx.Done():
				done <- longest
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	f()
	// Until the new container answers.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the container does not answer after the update: %v", err)
		}
	}
	cancel()
	return <-done
}
