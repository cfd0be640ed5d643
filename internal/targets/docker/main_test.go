package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// The driver satisfies the engine's contracts.
var (
	_ converge.Driver        = (*Driver)(nil)
	_ converge.Restarter     = (*Driver)(nil)
	_ converge.HealthChecker = (*Driver)(nil)
	_ converge.Watcher       = (*Driver)(nil)
)

// testLabel marks everything a test makes by hand, beside Outpost's labels.
const testLabel = "io.outpost.test"

var (
	reg *registry.Registry

	imagesOnce sync.Once
	imagesOK   bool
	digests    = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-docker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r, stop, err := registry.Launch(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker tests need a registry:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	reg = r
	code := m.Run()
	stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The test images, all busybox.
var httpd = []string{"/bin/busybox", "httpd", "-f", "-h", "/www"}

// pushImages pushes the test images once per package run: web:1 and web:2
// serve "v1" and "v2" on 8080, exit:1 exits at once, sick:1 fails its
// healthcheck, and every tag of them adds an env and a label of its own
// and stops on SIGKILL.
func pushImages(t testing.TB) {
	t.Helper()
	imagesOnce.Do(func() {
		base := registry.Config{
			Entrypoint:   httpd,
			Cmd:          []string{"-p", "8080"},
			Env:          []string{"IMAGE_ENV=1"},
			Labels:       map[string]string{"image.label": "1"},
			ExposedPorts: []string{"8080/tcp"},
			// busybox httpd as PID 1 ignores SIGTERM.
			StopSignal: "SIGKILL",
		}
		for _, v := range []string{"1", "2"} {
			c := base
			c.Files = map[string]string{"www/index.html": "v" + v}
			digests["web:"+v] = reg.Push(t, "web", registry.Image(t, c), v)
		}
		c := base
		c.Entrypoint, c.Cmd = []string{"/bin/sh", "-c", "exit 3"}, nil
		digests["exit:1"] = reg.Push(t, "exit", registry.Image(t, c), "1")
		c = base
		c.Files = map[string]string{"www/index.html": "sick"}
		c.Health = &registry.Health{Test: []string{"CMD", "false"}, Interval: 200 * time.Millisecond, Retries: 1}
		digests["sick:1"] = reg.Push(t, "sick", registry.Image(t, c), "1")
		imagesOK = !t.Failed()
	})
	if !imagesOK {
		t.Fatal("the test images could not be pushed")
	}
}

// rawClient returns an Engine API client for what a test does by hand.
func rawClient(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newDriverT returns a driver with short waits, and removes in t.Cleanup
// the images that the test's containers ran.
func newDriverT(t testing.TB, opts Options) *Driver {
	t.Helper()
	pushImages(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Settle == 0 {
		opts.Settle = 500 * time.Millisecond
	}
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 30 * time.Second
	}
	d, err := New(testCtx(t), opts)
	if err != nil {
		t.Fatalf("New = %v; the Docker engine must run", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// uniqueName returns a container, network or volume name for this test
// alone, and removes whatever carries it (containers owned or not,
// networks, volumes) in t.Cleanup.
func uniqueName(t testing.TB, kind string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "outpost-test-" + kind + "-" + hex.EncodeToString(b)
	cli := rawClient(t)
	t.Cleanup(func() { removeAll(cli, name) })
	return name
}

func removeAll(cli *client.Client, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for _, f := range []filters.Args{
		filters.NewArgs(filters.Arg("label", LabelResource+"="+name)),
		filters.NewArgs(filters.Arg("name", name)),
		// Containers still using the network or volume of that name
		// (cleanups run in reverse order) belong to the test too.
		filters.NewArgs(filters.Arg("network", name)),
		filters.NewArgs(filters.Arg("volume", name)),
	} {
		list, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		for _, c := range list {
			if !seen[c.ID] {
				seen[c.ID] = true
				cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			}
		}
	}
	nets, _ := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	for _, n := range nets {
		if strings.HasPrefix(n.Name, name) {
			cli.NetworkRemove(ctx, n.ID)
		}
	}
	cli.VolumeRemove(ctx, name, true)
}

// web returns a container resource named name running web:1.
func web(name string) *spec.Resource {
	return &spec.Resource{
		ID:    spec.ID{Kind: Kind, Name: name},
		Prune: true,
		Object: &Container{
			Name:  name,
			Image: reg.Repo("web"),
			Tag:   "1",
		},
	}
}

func inspect(t testing.TB, cli *client.Client, name string) container.InspectResponse {
	t.Helper()
	in, err := cli.ContainerInspect(testCtx(t), name)
	if err != nil {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return in
}

// apply converges r and fails the test unless it succeeds.
func apply(t testing.TB, d *Driver, r *spec.Resource) spec.Change {
	t.Helper()
	ch, err := d.CheckApply(testCtx(t), r, true)
	if err != nil {
		t.Fatalf("CheckApply(%s, apply) = %v, %v; want no error", r.ID, ch, err)
	}
	return ch
}

// noop checks that r is converged: a dry run finds nothing.
func noop(t testing.TB, d *Driver, r *spec.Resource) {
	t.Helper()
	ch, err := d.CheckApply(testCtx(t), r, false)
	if err != nil || ch.Action != spec.ActionNone {
		t.Fatalf("CheckApply(%s, dry run) = %v, %v; want none", r.ID, ch, err)
	}
}

// pullRaw pulls ref with the raw client, for containers a test makes by
// hand.
func pullRaw(t testing.TB, cli *client.Client, ref string) {
	t.Helper()
	rc, err := cli.ImagePull(testCtx(t), ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
}

func removeImage(cli *client.Client, ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true})
}
