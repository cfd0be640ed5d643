package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// demoPrefix starts the README's demo command.
const demoPrefix = "go run ./cmd/agent apply "

// demoCommand returns the README's demo command line.
func demoCommand(t *testing.T, readme string) string {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, demoPrefix) {
			found = append(found, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("README.md has %d lines starting with %q, want 1", len(found), demoPrefix)
	}
	return found[0]
}

// TestReadmeDemo runs the README's demo command as written, with go run from
// the module's root, only with its sandbox moved into a temporary directory.
func TestReadmeDemo(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	line := demoCommand(t, filepath.Join(root, "README.md"))
	const sandbox = "/tmp/outpost-demo"
	if !strings.Contains(line, sandbox) {
		t.Fatalf("README demo %q does not use the sandbox %s", line, sandbox)
	}
	tmp := filepath.Join(t.TempDir(), "outpost-demo")
	args := strings.Fields(strings.ReplaceAll(line, sandbox, tmp))

	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	runDemo := func() string {
		t.Helper()
		cmd := exec.CommandContext(context.Background(), gobin, args[1:]...)
		cmd.Dir = root
		// The command as written; the release's compiler settings from
		// the environment, so that it shares the run's compiled packages.
		cmd.Env = append(os.Environ(), append(host.ReleaseEnv, "GOFLAGS=-trimpath")...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("README demo %q: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}

	out := runDemo()
	if !strings.Contains(out, "apply: 3 created on host demo") {
		t.Errorf("README demo printed:\n%s\nwant a summary of 3 files created on host demo", out)
	}
	motd, err := os.ReadFile(filepath.Join(tmp, "etc/motd"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Welcome to demo.\n  role: web\n"; !strings.HasPrefix(string(motd), want) {
		t.Errorf("README demo wrote /etc/motd = %q, want it to start with %q", motd, want)
	}
	if _, err := os.Stat(filepath.Join(tmp, "etc/web/site.conf")); err != nil {
		t.Errorf("README demo did not write the web role's file: %v", err)
	}

	// The README promises that a second run has nothing to do.
	if out := runDemo(); !strings.Contains(out, "apply: nothing to do") {
		t.Errorf("README demo run again printed:\n%s\nwant nothing to do", out)
	}
}
