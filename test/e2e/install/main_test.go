package install

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// The two versions built: the first is installed, the second upgrades it.
const (
	version1 = "0.1.0"
	version2 = "0.2.0"
)

// workDir holds what the tests of this package share: the packages, built
// once, and nfpm. TestMain removes it.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-install-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Built are the packages that the tests install and inspect.
type Built struct {
	// Root is the module root, where goreleaser.yaml and packaging/ are.
	Root string
	// Dist1 and Dist2 are directories laid out like GoReleaser's dist/,
	// one per version, each with the .deb and the .rpm for this machine's
	// architecture.
	Dist1, Dist2 string
	// Deb1, Deb2 and RPM1 are the packages' paths.
	Deb1, Deb2, RPM1 string
	// Config1 is nfpm's configuration of version1's packages.
	Config1 []byte
	// NFPMTime is how long nfpm took to build; PackageTime how long the
	// binaries and packages took after that.
	NFPMTime, PackageTime time.Duration
}

var (
	buildOnce sync.Once
	built     *Built
	buildErr  error
)

// packages builds version1 and version2 of the packages the first time a
// test asks for them, and fails t if that fails.
func packages(t *testing.T) *Built {
	t.Helper()
	buildOnce.Do(func() {
		built, buildErr = buildPackages(context.Background())
		if buildErr == nil {
			t.Logf("nfpm compiled in %v; binaries and packages built in %v",
				built.NFPMTime.Round(time.Millisecond), built.PackageTime.Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatalf("build the packages: %v", buildErr)
	}
	return built
}

func buildPackages(ctx context.Context) (*Built, error) {
	root, err := host.ModuleRoot()
	if err != nil {
		return nil, err
	}
	rel, err := ReadRelease(filepath.Join(root, "goreleaser.yaml"))
	if err != nil {
		return nil, err
	}
	tools := filepath.Join(workDir, "tools")
	if err := os.MkdirAll(tools, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	nfpm, err := InstallNFPM(ctx, tools)
	if err != nil {
		return nil, err
	}
	nfpmTime := time.Since(start)
	if err := rel.RunHooks(ctx, root); err != nil {
		return nil, err
	}
	name, _ := rel.NFPMs[0]["package_name"].(string)
	b := &Built{Root: root}
	for _, v := range []struct {
		version string
		dist    *string
		formats []string
	}{
		{version1, &b.Dist1, []string{"deb", "rpm"}},
		{version2, &b.Dist2, []string{"deb"}},
	} {
		dist := filepath.Join(workDir, "dist-"+v.version)
		bindir := filepath.Join(workDir, "bin-"+v.version)
		for _, d := range []string{dist, bindir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		*v.dist = dist
		bins, err := rel.BuildBinaries(ctx, root, bindir, v.version, runtime.GOARCH)
		if err != nil {
			return nil, err
		}
		cfg, err := rel.NFPMConfig(v.version, runtime.GOARCH, bins...)
		if err != nil {
			return nil, err
		}
		if v.version == version1 {
			b.Config1 = cfg
		}
		for _, format := range v.formats {
			target := filepath.Join(dist, FileName(name, v.version, runtime.GOARCH, format))
			if err := Package(ctx, nfpm, root, cfg, format, target); err != nil {
				return nil, err
			}
			switch {
			case v.version == version1 && format == "deb":
				b.Deb1 = target
			case v.version == version1:
				b.RPM1 = target
			default:
				b.Deb2 = target
			}
		}
	}
	b.NFPMTime = nfpmTime
	b.PackageTime = time.Since(start) - nfpmTime
	return b, nil
}

// need fails t unless the program is installed, naming its Debian package.
func need(t *testing.T, program, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		t.Fatalf("%s is required: install the Debian package %s (test/run does): %v", program, pkg, err)
	}
	return p
}

// run runs a program on this machine and fails t if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gitOutput runs git in dir and returns its standard output.
func gitOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "LC_ALL=C")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
