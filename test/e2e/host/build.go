package host

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ModuleRoot returns the directory of Outpost's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// BuildBinary builds the main package pkg (an import path or a path relative
// to the module root, e.g. "./cmd/agent") as a static binary named name in
// a new temporary directory that it returns; bind that directory in as
// Options.BinDir to find it at /opt/outpost/NAME inside a host.
func BuildBinary(t testing.TB, pkg, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := buildInto(context.Background(), dir, name, "build", pkg); err != nil {
		t.Fatal(err)
	}
	return dir
}

// BuildOutpost builds Outpost's agent as /opt/outpost/outpost for a host and
// returns the directory to use as Options.BinDir.
func BuildOutpost(t testing.TB) string {
	t.Helper()
	return BuildBinary(t, "./cmd/agent", "outpost")
}

// BuildTestBinary compiles pkg's tests (go test -c) as name into a new
// temporary directory that it returns.
func BuildTestBinary(t testing.TB, pkg, name string, race bool) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"test", "-c"}
	if race {
		args = append(args, "-race")
	}
	if err := buildInto(context.Background(), dir, name, append(args, pkg)...); err != nil {
		t.Fatal(err)
	}
	return dir
}

func buildInto(ctx context.Context, dir, name string, args ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	pkg := args[len(args)-1]
	args = append(args[:len(args)-1:len(args)-1], "-o", filepath.Join(dir, name), pkg)
	env := os.Environ()
	if args[0] == "build" {
		args = ReleaseBuild(args[1:]...)
		env = append(env, ReleaseEnv...)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// ReleaseEnv and ReleaseBuild are the compiler settings of the released
// binaries (goreleaser.yaml: CGO_ENABLED=0, -trimpath). Every binary the
// tests build uses them, the packages' before hook too: the compiled
// packages are cached by these settings, so one set means one compile of
// the dependencies per run, where each other set cost a minute and a half
// of a cold run on two cores. (The race-enabled test binaries are a set of
// their own.)
var ReleaseEnv = []string{"CGO_ENABLED=0"}

// ReleaseBuild returns the arguments of `go build` with the release's
// flags, then args.
func ReleaseBuild(args ...string) []string {
	return append([]string{"build", "-trimpath"}, args...)
}
