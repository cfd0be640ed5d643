package systemd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// BenchmarkNoopConverge50 measures a pass over 50 converged, running and
// enabled units: Prepare, then CheckApply of each, with apply true.
//
//	go test -run '^$' -bench NoopConverge50 -benchtime 50x ./internal/targets/systemd/
func BenchmarkNoopConverge50(b *testing.B) {
	d := newDriver(b)
	var rs []*spec.Resource
	for range 50 {
		rs = append(rs, unitResource(&Unit{Name: unitName(b, ".service"), Content: []byte(sleeper),
			Enabled: boolp(true), State: UnitRunning,
			Dropins: map[string][]byte{"10-env.conf": []byte("[Service]\nEnvironment=A=1\n")}}))
	}
	pass := func() int {
		ctx := ctxT(b)
		if err := d.Prepare(ctx, rs, true); err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, r := range rs {
			ch, err := d.CheckApply(ctx, r, true)
			if err != nil {
				b.Fatal(err)
			}
			if ch.Changed() {
				n++
			}
		}
		return n
	}
	if n := pass(); n != len(rs) {
		b.Fatalf("first pass changed %d units, want %d", n, len(rs))
	}
	reloads := d.Reloads()
	self0, sys0 := cpuTimes(b)
	b.ResetTimer()
	for b.Loop() {
		if n := pass(); n != 0 {
			b.Fatalf("no-op pass changed %d units", n)
		}
	}
	b.StopTimer()
	// CPU time spent by the driver, systemd and the bus together: unlike
	// the wall time, it hardly depends on what else the machine runs.
	self1, sys1 := cpuTimes(b)
	b.ReportMetric(float64((self1-self0).Microseconds())/1000/float64(b.N), "driver-cpu-ms/op")
	b.ReportMetric(float64((sys1-sys0).Microseconds())/1000/float64(b.N), "systemd-cpu-ms/op")
	if got := d.Reloads() - reloads; got != 0 {
		b.Fatalf("no-op passes reloaded systemd %d times", got)
	}
}

// BenchmarkDriftRepair measures the time from `systemctl stop` of a managed
// service to the service being active again, repaired through Watch and
// CheckApply as the daemon does. It reports the median and the 95th
// percentile.
//
//	go test -run '^$' -bench DriftRepair -benchtime 30x ./internal/targets/systemd/
func BenchmarkDriftRepair(b *testing.B) {
	d := newDriver(b)
	// Without StartLimitIntervalSec=0, systemd refuses the sixth start
	// within 10 s (start-limit-hit), and the benchmark would measure that.
	content := strings.Replace(sleeper, "[Unit]\n", "[Unit]\nStartLimitIntervalSec=0\n", 1)
	r := unitResource(&Unit{Name: unitName(b, ".service"), Content: []byte(content),
		Enabled: boolp(true), State: UnitRunning})
	if _, err := d.CheckApply(ctxT(b), r, true); err != nil {
		b.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	notified := make(chan spec.ID, 1)
	repaired := make(chan time.Time, 16)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- d.Watch(ctx, []*spec.Resource{r}, func(id spec.ID) {
			select {
			case notified <- id: // coalesce: one pending repair is enough
			default:
			}
		})
	}()
	repairDone := make(chan struct{})
	go func() {
		defer close(repairDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-notified:
				ch, err := d.CheckApply(ctx, r, true)
				if err == nil && ch.Changed() {
					repaired <- time.Now()
				}
			}
		}
	}()
	defer func() {
		cancel()
		<-repairDone
		if err := <-watchDone; err != nil {
			b.Error(err)
		}
	}()

	var lat []time.Duration
	for b.Loop() {
		// Let the last repair's own events settle, then drop what is left.
		waitActive(b, Of(r).Name)
		for len(repaired) > 0 {
			<-repaired
		}
		start := time.Now()
		// systemctl may report the stop job replaced by the repair's start.
		exec.Command("systemctl", "stop", Of(r).Name).Run()
		select {
		case at := <-repaired:
			lat = append(lat, at.Sub(start))
		case <-time.After(30 * time.Second):
			b.Fatal("no repair within 30 s of systemctl stop")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
	}
}

// cpuTime is the CPU time used so far by this process, systemd (PID 1 in
// the test host) and the bus daemon.
func cpuTime(b *testing.B) time.Duration {
	self, sys := cpuTimes(b)
	return self + sys
}

// cpuTimes is cpuTime split: this process, and systemd with the bus.
func cpuTimes(b *testing.B) (self, sys time.Duration) {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	pids := []string{"1"}
	if out, err := exec.Command("pidof", "dbus-daemon").Output(); err == nil {
		pids = append(pids, strings.Fields(string(out))...)
	}
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command's closing parenthesis; utime and stime
		// are the 14th and 15th fields of the line, in clock ticks (100 Hz).
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		sys += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return self, sys
}

func waitActive(b *testing.B, name string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.Command("systemctl", "is-active", name).Output()
		if string(out) == "active\n" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal(fmt.Sprintf("%s is not active again: %s", name, out))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
