package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartRunsSystemd(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "hello"), []byte("#!/bin/sh\necho hello from $(hostname)\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := Start(t, Options{BinDir: bin, Machine: "outpost-host-test"})

	if got := strings.TrimSpace(h.Run(t, "/opt/outpost/hello")); got != "hello from outpost-host-test" {
		t.Errorf("hello = %q, want %q", got, "hello from outpost-host-test")
	}
	if got := strings.TrimSpace(h.Run(t, "cat", "/proc/1/comm")); got != "systemd" {
		t.Errorf("PID 1 = %q, want systemd", got)
	}
	state, _ := h.Exec(context.Background(), "systemctl", "is-system-running")
	if s := strings.TrimSpace(string(state)); s != "running" && s != "degraded" {
		t.Errorf("is-system-running = %q, want running or degraded", s)
	}

	// A unit written and started inside runs under the host's systemd.
	h.WriteFile(t, "/etc/systemd/system/probe.service",
		[]byte("[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"), 0o644)
	h.Run(t, "systemctl", "daemon-reload")
	h.Run(t, "systemctl", "start", "probe.service")
	if got := strings.TrimSpace(h.Run(t, "systemctl", "is-active", "probe.service")); got != "active" {
		t.Errorf("probe.service is %q, want active", got)
	}
	if got := string(h.ReadFile(t, "/etc/systemd/system/probe.service")); !strings.Contains(got, "ExecStart=/bin/true") {
		t.Errorf("ReadFile(probe.service) = %q, want the written unit", got)
	}
}

func TestVolatileHostsStartClean(t *testing.T) {
	const marker = "/etc/outpost-volatile-marker"
	a := Start(t, Options{})
	a.WriteFile(t, marker, []byte("x"), 0o644)
	if err := a.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if _, err := os.Stat(filepath.Join(RootfsPath(), marker)); !os.IsNotExist(err) {
		t.Errorf("stat cached %s: %v, want it not to exist", marker, err)
	}
	b := Start(t, Options{})
	if _, err := b.Exec(context.Background(), "test", "-e", marker); err == nil {
		t.Errorf("%s exists in a new host, want a clean one", marker)
	}
}

func TestBuildBinaryRunsInHost(t *testing.T) {
	dir := BuildBinary(t, "./test/e2e/host/testdata/hello", "hello")
	h := Start(t, Options{BinDir: dir, Machine: "outpost-build-test"})
	if got := strings.TrimSpace(h.Run(t, "/opt/outpost/hello")); got != "hello from outpost-build-test" {
		t.Errorf("hello = %q, want %q", got, "hello from outpost-build-test")
	}
}

func TestMirrorParsing(t *testing.T) {
	dir := t.TempDir()
	deb822 := filepath.Join(dir, "debian.sources")
	os.WriteFile(deb822, []byte("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"+
		"Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"), 0o644)
	oneLine := filepath.Join(dir, "sources.list")
	os.WriteFile(oneLine, []byte("# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://other.example/debian bookworm main\n"), 0o644)
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"deb822", deb822Mirror(deb822), "http://mirror.example/debian"},
		{"one-line", oneLineMirror(oneLine), "http://other.example/debian"},
		{"missing", deb822Mirror(filepath.Join(dir, "none")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("mirror = %q, want %q", tt.got, tt.want)
			}
		})
	}
}

// BenchmarkStart measures a host's boot and shutdown with the root
// filesystem cached.
func BenchmarkStart(b *testing.B) {
	if _, err := EnsureRootfs(context.Background()); err != nil {
		b.Fatal(err)
	}
	var boot time.Duration
	for b.Loop() {
		start := time.Now()
		h, err := Boot(context.Background(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		boot += time.Since(start)
		if err := h.Stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(boot.Milliseconds())/float64(b.N), "boot-ms/op")
}

func TestMissingToolNamesPackage(t *testing.T) {
	_, err := tool("outpost-no-such-tool", "outpost-no-such-package")
	if !errors.Is(err, ErrMissingTool) {
		t.Fatalf("tool(missing) = %v, want ErrMissingTool", err)
	}
	if !strings.Contains(err.Error(), "apt-get install outpost-no-such-package") {
		t.Errorf("tool(missing) = %q, want it to name the package to install", err)
	}
}

func TestNetworkNamespace(t *testing.T) {
	if _, err := tool("ip", "iproute2"); err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	rand.Read(b[:])
	ns := "outpost-test-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	h := Start(t, Options{NetworkNamespacePath: "/run/netns/" + ns, NoDocker: true})
	// A fresh namespace holds only its loopback device.
	links := h.Run(t, "ip", "-o", "link", "show")
	if n := len(strings.Split(strings.TrimSpace(links), "\n")); n != 1 || !strings.Contains(links, " lo:") {
		t.Errorf("links in the host = %q, want only lo", links)
	}
}

func TestPackagesRootfsPath(t *testing.T) {
	ab := PackagesRootfsPath([]string{"time", "ansible-core"})
	tests := []struct {
		name     string
		packages []string
		same     bool
	}{
		{"same set in another order", []string{"ansible-core", "time"}, true},
		{"duplicates", []string{"time", "ansible-core", "time"}, true},
		{"another set", []string{"time"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PackagesRootfsPath(tt.packages); (got == ab) != tt.same {
				t.Errorf("PackagesRootfsPath(%q) = %s, PackagesRootfsPath([time ansible-core]) = %s, want same = %v",
					tt.packages, got, ab, tt.same)
			}
		})
	}
	if dir := filepath.Dir(ab); dir != CacheDir() {
		t.Errorf("PackagesRootfsPath is in %s, want the cache directory %s", dir, CacheDir())
	}
	if !strings.HasPrefix(ab, RootfsPath()+"-") {
		t.Errorf("PackagesRootfsPath = %s, want it named after the base tree %s", ab, RootfsPath())
	}
}

// A host outlives the thread that started it: the Go runtime ends a thread
// whose goroutine exits locked to it (as one that joined a network
// namespace does), and the kernel sends a child its parent-death signal
// when the thread that forked it ends.
func TestHostOutlivesItsStartingThread(t *testing.T) {
	var h *Host
	// start boots the host from a goroutine that exits locked to its
	// thread, so that the thread ends. The runtime never ends the main
	// thread: a goroutine that finds itself there holds it and starts the
	// host from another thread.
	var start func()
	start = func() {
		started := make(chan struct{})
		go func() {
			defer close(started)
			runtime.LockOSThread()
			if syscall.Gettid() == os.Getpid() {
				start()
				runtime.UnlockOSThread()
				return
			}
			h = Start(t, Options{NoDocker: true})
		}()
		<-started
	}
	start()
	if h == nil {
		t.FailNow() // Start said why
	}
	// nspawn powers the host off within moments of a SIGTERM.
	time.Sleep(3 * time.Second)
	select {
	case <-h.done:
		t.Fatalf("the host stopped: %v\nconsole:\n%s", h.waitErr, h.Console())
	default:
	}
	state, _ := h.Exec(context.Background(), "systemctl", "is-system-running")
	if s := strings.TrimSpace(string(state)); s != "running" && s != "degraded" {
		t.Errorf("is-system-running = %q, want running or degraded", s)
	}
}
