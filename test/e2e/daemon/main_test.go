// Package daemon tests `outpost run` end to end: the real binary inside a
// test host booted with systemd, converging files, units through that
// host's systemd and containers on the real Docker engine, from a real Git
// server, with drift made by hand, failed health checks, a network that goes
// away and agents killed at random moments. Its benchmarks measure the
// daemon's idle cost, the delay from a push to a converged host and the
// latency of a file drift repair.
//
// The package holds only tests. It shares one registry and one build of the
// agent between its tests; each test boots its own host and Git server.
package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/outpost-gitops/outpost/test/e2e/host"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

var (
	// binDir holds the agent's binary as "outpost": bound into each host
	// at /opt/outpost.
	binDir string
	// reg is the registry that every test pushes its images to.
	reg *registry.Registry
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "outpost-e2e-daemon-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binDir = filepath.Join(tmp, "bin")
	if err := buildAgent(binDir); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: build outpost: %v\n", err)
		return 1
	}
	r, stop, err := registry.Launch(filepath.Join(tmp, "registry"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: registry: %v\n", err)
		return 1
	}
	defer stop()
	reg = r
	return m.Run()
}

// buildAgent builds ./cmd/agent as a static binary named outpost in dir,
// with the release's compiler settings (host.ReleaseBuild), so that every
// build of the run shares the compiled packages.
func buildAgent(dir string) error {
	root, err := host.ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("go", host.ReleaseBuild("-o", filepath.Join(dir, "outpost"), "./cmd/agent")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), host.ReleaseEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}
