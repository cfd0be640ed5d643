package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	outpost "github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// localAgent is `outpost run` on this machine, with every file under a
// --root directory: the benchmarks measure the agent, not a test host.
type localAgent struct {
	cmd    *exec.Cmd
	done   chan struct{}
	logs   *syncBuffer
	root   string
	socket string
}

func startLocal(b *testing.B, url string, interval time.Duration) *localAgent {
	b.Helper()
	return startLocalConfig(b, func(state string) string {
		return strings.Replace(agentConfig(url, "bench-1", interval, 30*time.Second), stateDir, state, 1)
	})
}

// startLocalConfig starts `outpost run` on this machine with the
// configuration that config returns for a state directory, and stops it
// when the test ends.
func startLocalConfig(b testing.TB, config func(state string) string) *localAgent {
	b.Helper()
	dir := b.TempDir()
	a := &localAgent{
		done:   make(chan struct{}),
		logs:   &syncBuffer{},
		root:   filepath.Join(dir, "root"),
		socket: filepath.Join(dir, "run", "outpost.sock"),
	}
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte(config(filepath.Join(dir, "state"))), 0o600); err != nil {
		b.Fatal(err)
	}
	a.cmd = exec.Command(filepath.Join(binDir, "outpost"), "run", "--config", cfg, "--root", a.root, "--socket", a.socket, "-v")
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	b.Cleanup(func() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
		if b.Failed() {
			b.Logf("agent's log:\n%s", a.logs.String())
		}
	})
	return a
}

// waitCommit waits until the agent has applied commit.
func (a *localAgent) waitCommit(b testing.TB, commit string) {
	b.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s, err := outpost.Control(context.Background(), a.socket, "status")
		if err == nil && s.Commit == commit && s.Result == outpost.ResultApplied {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("commit %s not applied after 3 minutes: %+v, %v", commit, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// manyFiles is a repository of n file resources, each in its own manifest.
func manyFiles(n int, version string) gitserver.Files {
	files := gitserver.Files{}
	for i := range n {
		files[fmt.Sprintf("files/f%03d.yaml", i)] = fileManifest(fmt.Sprintf("/etc/bench/f%03d.conf", i), fmt.Sprintf("file %d, %s\n", i, version))
	}
	return files
}

// cpuTicks returns the user and system time of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th fields of the whole line.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// rssKB returns the resident set size of pid in KiB.
func rssKB(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// clockTicks is the kernel's USER_HZ, 100 on Linux.
const clockTicks = 100

// BenchmarkDaemonIdle measures an agent that keeps 100 files converged with
// a one-minute poll and nothing to do: its resident memory and the share of
// one core it uses over OUTPOST_BENCH_IDLE (default 3m).
//
//	go test ./test/e2e/daemon -run '^$' -bench DaemonIdle -benchtime 1x
func BenchmarkDaemonIdle(b *testing.B) {
	span := 3 * time.Minute
	if s := os.Getenv("OUTPOST_BENCH_IDLE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		span = d
	}
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	commit := repo.Commit(manyFiles(100, "v1"), "100 files")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	for b.Loop() {
		a := startLocal(b, srv.URL("env"), time.Minute)
		a.waitCommit(b, commit)
		pid := a.cmd.Process.Pid
		time.Sleep(5 * time.Second) // let the first converge's garbage go
		load0 := loadavg()
		t0, c0 := time.Now(), cpuTicks(b, pid)
		var maxRSS int64
		for time.Since(t0) < span {
			maxRSS = max(maxRSS, rssKB(b, pid))
			time.Sleep(time.Second)
		}
		cpu := float64(cpuTicks(b, pid)-c0) / clockTicks / time.Since(t0).Seconds() * 100
		b.ReportMetric(float64(maxRSS)/1024, "max-rss-MB")
		b.ReportMetric(float64(rssKB(b, pid))/1024, "end-rss-MB")
		b.ReportMetric(cpu, "cpu-%")
		b.Logf("idle %v with 100 files: max RSS %.1f MB, CPU %.3f%% of a core; load average %s at the start, %s at the end",
			span, float64(maxRSS)/1024, cpu, load0, loadavg())
	}
}

// BenchmarkPushToConverged pushes 20 commits, each at a random moment of a
// 2 s poll, and measures from the end of the push to the file changed on
// disk.
//
//	go test ./test/e2e/daemon -run '^$' -bench PushToConverged -benchtime 1x
func BenchmarkPushToConverged(b *testing.B) {
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	commit := repo.Commit(manyFiles(10, "v0"), "v0")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	for b.Loop() {
		a := startLocal(b, srv.URL("env"), 2*time.Second)
		a.waitCommit(b, commit)
		load0 := loadavg()
		var lat []time.Duration
		target := filepath.Join(a.root, "etc/bench/f000.conf")
		for i := 1; i <= 20; i++ {
			time.Sleep(time.Duration(i*397%2000) * time.Millisecond) // spread over the poll
			want := fmt.Sprintf("file 0, v%d\n", i)
			repo.Commit(manyFiles(10, fmt.Sprintf("v%d", i)), fmt.Sprintf("v%d", i))
			t0 := time.Now()
			for {
				if got, _ := os.ReadFile(target); string(got) == want {
					break
				}
				if time.Since(t0) > time.Minute {
					b.Fatalf("push %d not converged after a minute", i)
				}
				time.Sleep(5 * time.Millisecond)
			}
			lat = append(lat, time.Since(t0))
		}
		reportLatencies(b, "push-to-converged", lat, load0)
	}
}

// BenchmarkFileDriftRepair edits a managed file by hand 50 times and
// measures until the agent has put it back.
//
//	go test ./test/e2e/daemon -run '^$' -bench FileDriftRepair -benchtime 1x
func BenchmarkFileDriftRepair(b *testing.B) {
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	commit := repo.Commit(manyFiles(100, "v1"), "100 files")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	for b.Loop() {
		a := startLocal(b, srv.URL("env"), time.Minute)
		a.waitCommit(b, commit)
		load0 := loadavg()
		var lat []time.Duration
		for i := range 50 {
			target := filepath.Join(a.root, fmt.Sprintf("etc/bench/f%03d.conf", i))
			want := fmt.Sprintf("file %d, v1\n", i)
			t0 := time.Now()
			if err := os.WriteFile(target, []byte("edited by hand\n"), 0o644); err != nil {
				b.Fatal(err)
			}
			for {
				if got, _ := os.ReadFile(target); string(got) == want {
					break
				}
				if time.Since(t0) > time.Minute {
					b.Fatalf("edit %d not repaired after a minute", i)
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(50 * time.Millisecond)
		}
		reportLatencies(b, "drift-repair", lat, load0)
	}
}

func reportLatencies(b *testing.B, what string, lat []time.Duration, load0 string) {
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1)+0.5)] }
	b.ReportMetric(float64(p(0.5).Milliseconds()), what+"-p50-ms")
	b.ReportMetric(float64(p(0.95).Milliseconds()), what+"-p95-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), what+"-max-ms")
	b.Logf("%s over %d: p50 %v, p95 %v, min %v, max %v; load average %s at the start, %s at the end",
		what, len(lat), p(0.5), p(0.95), lat[0], lat[len(lat)-1], load0, loadavg())
}
