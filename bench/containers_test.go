package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// BenchmarkApplyContainers times `outpost apply` of 1, 10, 20 and 50 containers
// on the real Docker engine, from an image in a local registry: the first
// converge (pull, create, start), a no-op converge, and the prune of all of
// them. bench/scale.sh runs it with -benchtime 1x.
func BenchmarkApplyContainers(b *testing.B) {
	outpost := filepath.Join(build(b), "outpost")
	reg := registry.Start(b)
	// A shell that exits on SIGTERM, so that a stop is not the engine's
	// timeout: PID 1 ignores signals it does not handle.
	img := registry.Image(b, registry.Config{Entrypoint: []string{"/bin/sh", "-c",
		"trap 'exit 0' TERM; while :; do /bin/busybox sleep 1; done"}})
	reg.Push(b, "bench", img, "1.0.0")
	for _, n := range []int{1, 10, 20, 50} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			prefix := fmt.Sprintf("outpost-bench-%d-%d", os.Getpid(), n)
			b.Cleanup(func() { removeContainers(prefix) })
			dir := b.TempDir()
			full := filepath.Join(dir, "full")
			empty := filepath.Join(dir, "empty")
			writeContainers(b, full, reg.Repo("bench"), prefix, n)
			writeFile(b, filepath.Join(empty, "fleet.yaml"), "targets:\n  - path: .\n    selector: {names: [nobody]}\nallow_mass_prune: true\n")
			var first, noop, prune run
			for range b.N {
				state := filepath.Join(dir, "state")
				first = apply(b, outpost, full, state)
				noop = apply(b, outpost, full, state)
				prune = apply(b, outpost, empty, state)
			}
			b.ReportMetric(first.wall.Seconds(), "first-s")
			b.ReportMetric(first.cpu.Seconds(), "first-cpu-s")
			b.ReportMetric(first.maxRSSMB, "first-MB")
			b.ReportMetric(noop.wall.Seconds(), "noop-s")
			b.ReportMetric(noop.cpu.Seconds(), "noop-cpu-s")
			b.ReportMetric(noop.maxRSSMB, "noop-MB")
			b.ReportMetric(prune.wall.Seconds(), "prune-s")
		})
	}
}

type run struct {
	wall, cpu time.Duration
	maxRSSMB  float64
}

// apply runs outpost apply on a directory source and measures it. GNU time
// starts it, because a child of this process would report this process's
// resident size as its own peak when that is larger (exec keeps the
// high-water mark).
func apply(b *testing.B, bin, src, state string) run {
	b.Helper()
	tv := filepath.Join(b.TempDir(), "time")
	cmd := exec.Command("/usr/bin/time", "-f", "%U %S %M", "-o", tv,
		bin, "apply", "--config", "/dev/null", "--source", src, "--state-dir", state, "--host", "bench",
		"--allow-empty") // the prune run renders nothing, on purpose
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("outpost apply --source %s: %v\n%s", src, err, out)
	}
	raw, err := os.ReadFile(tv)
	if err != nil {
		b.Fatal(err)
	}
	var user, sys, kb float64
	if _, err := fmt.Sscan(string(raw), &user, &sys, &kb); err != nil {
		b.Fatalf("GNU time wrote %q: %v", raw, err)
	}
	return run{
		wall:     wall,
		cpu:      time.Duration((user + sys) * float64(time.Second)),
		maxRSSMB: kb / 1024,
	}
}

func writeContainers(b *testing.B, dir, image, prefix string, n int) {
	var m strings.Builder
	for i := range n {
		fmt.Fprintf(&m, "kind: container\nname: %s-%d\nimage: %s\ntag: \"1.0.0\"\nrestart: unless-stopped\n---\n", prefix, i, image)
	}
	writeFile(b, filepath.Join(dir, "containers.yaml"), m.String())
}

func writeFile(b *testing.B, path, content string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}

// removeContainers removes what a failed run left behind.
func removeContainers(prefix string) {
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "name="+prefix).Output()
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		return
	}
	exec.Command("docker", append([]string{"rm", "-f"}, strings.Fields(string(out))...)...).Run()
}
