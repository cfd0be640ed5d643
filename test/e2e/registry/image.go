package registry

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Busybox is the static busybox binary the images are made of (Debian's
// busybox-static).
const Busybox = "/bin/busybox"

// Applets are the busybox applets that every image links in /bin next to
// /bin/sh, so that commands such as ["sleep", "1000"] or a healthcheck of
// ["CMD", "wget", ...] work.
var Applets = []string{
	"sh", "cat", "echo", "env", "false", "true", "sleep", "httpd", "wget",
	"nc", "ls", "kill", "id", "test", "touch", "mkdir", "rm", "ps", "pwd",
}

// Health is an image's healthcheck, as in a Dockerfile's HEALTHCHECK.
type Health struct {
	Test        []string // e.g. {"CMD", "true"} or {"CMD-SHELL", "exit 1"}
	Interval    time.Duration
	Timeout     time.Duration
	StartPeriod time.Duration
	Retries     int
}

// Config is what an image's configuration says.
type Config struct {
	Entrypoint   []string
	Cmd          []string
	Env          []string // KEY=VALUE
	Labels       map[string]string
	Health       *Health
	ExposedPorts []string // "8080/tcp"
	User         string
	WorkingDir   string
	StopSignal   string
	// Files adds regular files to the layer: path (without a leading
	// slash) to content, mode 0644.
	Files map[string]string
}

// Platform names an image's platform.
type Platform struct {
	OS           string
	Architecture string
	Variant      string
}

// HostPlatform is linux on the architecture of the running Go binary, the
// platform that /bin/busybox runs on.
func HostPlatform() Platform { return Platform{OS: "linux", Architecture: runtime.GOARCH} }

var (
	busyboxOnce sync.Once
	busyboxData []byte
	busyboxErr  error
)

func readBusybox(t testing.TB) []byte {
	t.Helper()
	busyboxOnce.Do(func() { busyboxData, busyboxErr = os.ReadFile(Busybox) })
	if busyboxErr != nil {
		t.Fatalf("registry: %s is required but missing (Debian package busybox-static; test/run installs it): %v", Busybox, busyboxErr)
	}
	return busyboxData
}

// Image builds a one-layer image for the host's platform: bin/busybox, the
// Applets as symlinks to it, and c's files, with c's configuration.
func Image(t testing.TB, c Config) v1.Image {
	t.Helper()
	return imageFor(t, c, HostPlatform())
}

func imageFor(t testing.TB, c Config, p Platform) v1.Image {
	t.Helper()
	layerTar := buildLayer(t, c.Files)
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		t.Fatalf("registry: layer: %v", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatalf("registry: append layer: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("registry: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := v1.Config{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        append([]string{"PATH=/bin"}, c.Env...),
		Labels:     c.Labels,
		User:       c.User,
		WorkingDir: c.WorkingDir,
		StopSignal: c.StopSignal,
	}
	if len(c.ExposedPorts) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range c.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if h := c.Health; h != nil {
		cfg.Healthcheck = &v1.HealthConfig{
			Test: h.Test, Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
	}
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("registry: set config: %v", err)
	}
	return img
}

// Index builds a multi-platform index of c for each platform. The entries
// all hold the host's busybox, so only the host's platform runs; an index
// without it tests platform filtering.
func Index(t testing.TB, c Config, platforms ...Platform) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		img := imageFor(t, c, p)
		adds = append(adds, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{
				OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
			}},
		})
	}
	return mutate.AppendManifests(empty.Index, adds...)
}

func buildLayer(t testing.TB, files map[string]string) []byte {
	t.Helper()
	bb := readBusybox(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(h *tar.Header, body []byte) {
		h.ModTime = mod
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("registry: tar: %v", err)
		}
		if body != nil {
			if _, err := tw.Write(body); err != nil {
				t.Fatalf("registry: tar: %v", err)
			}
		}
	}
	write(&tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755}, nil)
	write(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}, nil)
	write(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))}, bb)
	for _, a := range Applets {
		write(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		body := []byte(files[n])
		write(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(body))}, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("registry: tar: %v", err)
	}
	return buf.Bytes()
}
