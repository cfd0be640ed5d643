package forge

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// Version is the Gitea release the tests run, as a version of the Go
// module code.gitea.io/gitea on the module proxy.
const Version = "v1.27.3"

// CacheDir is where the built forge is kept: $OUTPOST_TEST_CACHE, or
// /var/cache/outpost-test, outside the checkout.
func CacheDir() string { return host.CacheDir() }

// dir holds one version's binary (gitea) and the files it reads at run
// time (static: options, templates, public).
func dir() string { return filepath.Join(CacheDir(), "gitea-"+Version) }

// Ensure returns the directory of the cached build of Version, building it
// first when it is missing: the module is downloaded from the Go module
// proxy and built inside its own directory (its go.mod has replace
// directives, so `go install pkg@version` cannot build it), with SQLite,
// in a temporary directory renamed into place when complete, under a lock
// shared by every test process. The first build took 2m56s on two shared
// cores, and 4m49s with an empty Go build cache on the same cores under a
// load of 5 to 7; a test that finds the build cached starts Gitea in under
// two seconds.
func Ensure(ctx context.Context) (string, error) {
	d := dir()
	if _, err := os.Stat(filepath.Join(d, "gitea")); err == nil {
		return d, nil
	}
	unlock, err := host.LockCache("-gitea")
	if err != nil {
		return "", fmt.Errorf("forge cache: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(d, "gitea")); err == nil {
		return d, nil // built by another process while we waited
	}

	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, gobin, "mod", "download", "-json", "code.gitea.io/gitea@"+Version).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download code.gitea.io/gitea@%s: %w", Version, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download code.gitea.io/gitea@%s: no directory (%v %s)", Version, err, mod.Error)
	}
	tmp, err := os.MkdirTemp(CacheDir(), ".build-gitea-")
	if err != nil {
		return "", fmt.Errorf("forge cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	build := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-tags", "sqlite sqlite_unlock_notify",
		"-o", filepath.Join(tmp, "gitea"), ".")
	build.Dir = mod.Dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build gitea %s: %w\n%s", Version, err, tail(out, 4096))
	}
	// The module cache may be cleaned: keep the run-time files beside the
	// binary.
	static := filepath.Join(tmp, "static")
	if err := os.MkdirAll(static, 0o755); err != nil {
		return "", err
	}
	for _, sub := range []string{"options", "templates", "public"} {
		if out, err := exec.CommandContext(ctx, "cp", "-r", filepath.Join(mod.Dir, sub), static).CombinedOutput(); err != nil {
			return "", fmt.Errorf("copy gitea's %s: %w: %s", sub, err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", static).CombinedOutput(); err != nil {
		return "", fmt.Errorf("chmod gitea's files: %w: %s", err, out)
	}
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, d); err != nil {
		return "", fmt.Errorf("forge cache: %w", err)
	}
	return d, nil
}

// goTool finds the go command: on PATH, else the one that built the test.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("building the forge needs the go command: not on PATH nor at %s", p)
	}
	return p, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
