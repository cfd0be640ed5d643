package vm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
	"github.com/outpost-gitops/outpost/test/e2e/install"
)

func TestMain(m *testing.M) {
	RelayMain()
	os.Exit(m.Run())
}

// debVersion is the version the examples' release URL names.
const debVersion = "0.1.0"

var (
	debOnce sync.Once
	debDir  string
	debErr  error

	imageOnce sync.Once
	image     Image
	imageErr  error
)

// builtDeb builds the .deb once per run, as a release would (see
// install.Release), into a directory laid out like a release's downloads.
func builtDeb(t *testing.T) string {
	t.Helper()
	debOnce.Do(func() {
		debDir, debErr = buildDeb(context.Background())
	})
	if debErr != nil {
		t.Fatalf("build the .deb: %v", debErr)
	}
	return debDir
}

func buildDeb(ctx context.Context) (string, error) {
	root, err := host.ModuleRoot()
	if err != nil {
		return "", err
	}
	rel, err := install.ReadRelease(filepath.Join(root, "goreleaser.yaml"))
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "outpost-vm-deb-")
	if err != nil {
		return "", err
	}
	// The completions and man pages that the package ships.
	if err := rel.RunHooks(ctx, root); err != nil {
		return "", err
	}
	nfpm, err := install.InstallNFPM(ctx, dir)
	if err != nil {
		return "", err
	}
	bins, err := rel.BuildBinaries(ctx, root, dir, debVersion, runtime.GOARCH)
	if err != nil {
		return "", err
	}
	cfg, err := rel.NFPMConfig(debVersion, runtime.GOARCH, bins...)
	if err != nil {
		return "", err
	}
	dist := filepath.Join(dir, "dist")
	if err := os.Mkdir(dist, 0o755); err != nil {
		return "", err
	}
	name, _ := rel.NFPMs[0]["package_name"].(string)
	target := filepath.Join(dist, install.FileName(name, debVersion, runtime.GOARCH, "deb"))
	return dist, install.Package(ctx, nfpm, root, cfg, "deb", target)
}

// builtImage builds the image once per run and logs how long that took.
func builtImage(t *testing.T) Image {
	t.Helper()
	imageOnce.Do(func() {
		start := time.Now()
		image, imageErr = EnsureImage(context.Background())
		t.Logf("image ready in %v (%s)", time.Since(start).Round(time.Millisecond), image.Disk)
	})
	if imageErr != nil {
		t.Fatalf("build the VM image: %v", imageErr)
	}
	return image
}

// serveDir serves dir over HTTP on loopback until the test ends.
func serveDir(t *testing.T, dir string) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// guestPort picks a free loopback port number for a guest-side forward;
// the guest's 10.0.2.2 ports are qemu's and never listened on by the host,
// so any number does, but a free one keeps logs unambiguous.
func guestPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fill replaces each placeholder of a packaging file with its value and
// fails t when one is missing, so the file and the test cannot drift apart.
func fill(t *testing.T, file string, values [][2]string) []byte {
	t.Helper()
	root, err := host.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "packaging/cloud-init", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, v := range values {
		if !strings.Contains(s, v[0]) {
			t.Fatalf("packaging/cloud-init/%s no longer holds the placeholder %q", file, v[0])
		}
		s = strings.ReplaceAll(s, v[0], v[1])
	}
	return []byte(s)
}

// indent indents every line of s but the first by n spaces, for a value
// that goes into a YAML block scalar.
func indent(s string, n int) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+strings.Repeat(" ", n))
}

// boot boots a VM for t and stops it when t ends, logging the console when
// t failed.
func boot(t *testing.T, o Options) *VM {
	t.Helper()
	o.Image = builtImage(t)
	o.Dir = t.TempDir()
	v, err := Boot(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Close()
		if t.Failed() {
			t.Logf("console:\n%s", tailString(v.ConsoleText(), 12000))
		}
	})
	// Under emulation on two loaded cores a boot to the shell took up to
	// a minute, and a reboot nearly four.
	const bootWait = 6 * time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), bootWait)
	defer cancel()
	if err := v.WaitShell(ctx); err != nil {
		t.Fatalf("VM did not boot to its shell within %v: %v", bootWait, err)
	}
	return v
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// guestWait is how long one command in the guest may take. Installing
// the package and starting the agent in a guest took over two
// minutes under emulation with two VM suites on two cores.
const guestWait = 5 * time.Minute

// guest runs script in v and fails t when it cannot run or exits non-zero.
func guest(t *testing.T, v *VM, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guestWait)
	defer cancel()
	out, code, err := v.Run(ctx, script)
	if err != nil {
		t.Fatalf("in the guest, waiting up to %v for the answer to: %s: %v", guestWait, script, err)
	}
	if code != 0 {
		t.Fatalf("in the guest: %s: exit status %d\n%s", script, code, out)
	}
	return out
}

// waitFor polls check until it returns true, failing t with what after d.
func waitFor(t *testing.T, d time.Duration, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// noteRef returns the note ref the agent pushed for hostName to the bare
// repository, or "" while there is none.
func noteRef(t *testing.T, bare, hostName string) string {
	t.Helper()
	ref := "refs/notes/outpost/" + hostName
	out, err := exec.Command("git", "--git-dir", bare, "for-each-ref", "--format=%(objectname)", ref).Output()
	if err != nil {
		t.Fatalf("git for-each-ref %s: %v", ref, err)
	}
	return strings.TrimSpace(string(out))
}

func mustf(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
