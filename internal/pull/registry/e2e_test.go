package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	testreg "github.com/outpost-gitops/outpost/test/e2e/registry"
)

// e2eLabel marks the containers of the end-to-end test. It is a label of
// the spec, so it stays out of the io.outpost. namespace that the Docker
// target keeps for itself.
const e2eLabel = "outpost-test.registry"

// TestFollowOnDocker follows a repository on the real Docker engine: the
// container runs 1.0.0, runs 1.1.0 one poll after 1.1.0 is pushed, and when
// 1.2.0 fails its healthcheck it is back on 1.1.0 with 1.2.0 marked bad and
// passed over at the next poll. The wiring between the poller, the store
// and the driver is the daemon's; the test does it by hand.
func TestFollowOnDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	reg := sharedRegistry
	suffix := randomSuffix(t)
	repo := "follow-" + suffix
	name := "outpost-regtest-" + suffix

	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	t.Cleanup(func() { cleanupDocker(t, cli, suffix, "/"+repo) })

	drv, err := docker.New(ctx, docker.Options{Settle: time.Second, HealthTimeout: time.Minute})
	if err != nil {
		t.Fatalf("docker.New: %v", err)
	}

	healthy := testreg.Image(t, testreg.Config{Cmd: []string{"sleep", "1000"}})
	d10 := reg.Push(t, repo, healthy, "1.0.0")

	// The engine pulls through the front too, so that the registry can
	// fail for the agent and the engine alike.
	f := reg.Front(t, testreg.FrontOptions{})
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := newTestResolver(t, Options{Bad: store})
	p := NewPoller(r, store, PollerOptions{HostName: "edge-042", Platform: hostPlatform, MinInterval: -1})

	stop := time.Second
	desired := func() *spec.Resource {
		return &spec.Resource{
			ID: spec.ID{Kind: docker.Kind, Name: name},
			Object: &docker.Container{
				Name:        name,
				Image:       f.Host() + "/" + repo,
				Update:      &docker.UpdatePolicy{Policy: "semver", Range: "^1"},
				Labels:      map[string]string{e2eLabel: suffix},
				Health:      &docker.Health{Cmd: []string{"sh", "-c", `test "$SICK" != 1`}, Interval: 300 * time.Millisecond, Timeout: 2 * time.Second, Retries: 1},
				StopTimeout: &stop,
			},
		}
	}
	// turn is one turn of the daemon: poll, pin what the store resolved,
	// converge, and mark a tag bad when its container failed. A failed
	// poll does not stop the turn: the container runs what it ran.
	turn := func(t *testing.T) (ups []Update, pollErr, applyErr error) {
		t.Helper()
		res := desired()
		ups, pollErr = p.Poll(ctx, []*docker.Container{docker.Of(res)})
		if !store.Pin(docker.Of(res)) {
			t.Fatal("Pin = false after a successful poll")
		}
		_, applyErr = drv.CheckApply(ctx, res, true)
		if errors.Is(applyErr, docker.ErrUnhealthy) {
			if err := store.MarkBad(name, docker.Of(res).Tag, docker.Of(res).Digest, applyErr.Error()); err != nil {
				t.Fatal(err)
			}
		}
		return ups, pollErr, applyErr
	}
	deploy := func(t *testing.T) ([]Update, error) {
		t.Helper()
		ups, pollErr, applyErr := turn(t)
		if pollErr != nil {
			t.Fatalf("Poll = %v", pollErr)
		}
		return ups, applyErr
	}
	// runs checks the container's image and returns its ID.
	runs := func(t *testing.T, wantDigest string) string {
		t.Helper()
		in, err := cli.ContainerInspect(ctx, name)
		if err != nil {
			t.Fatalf("inspect %s: %v", name, err)
		}
		if !in.State.Running || !strings.HasSuffix(in.Config.Image, "@"+wantDigest) {
			t.Errorf("container %s runs %s (running %v), want @%s", name, in.Config.Image, in.State.Running, wantDigest)
		}
		return in.ID
	}

	if _, err := deploy(t); err != nil {
		t.Fatalf("deploy 1.0.0: %v", err)
	}
	runs(t, d10)

	d11 := reg.Push(t, repo, variant(t, healthy, "V=1.1"), "1.1.0")
	ups, err := deploy(t)
	if err != nil {
		t.Fatalf("deploy 1.1.0: %v", err)
	}
	want := []Update{{Container: name, From: "1.0.0@" + d10, To: "1.1.0@" + d11}}
	if diff := cmp.Diff(want, ups); diff != "" {
		t.Errorf("poll after pushing 1.1.0 (-want +got):\n%s", diff)
	}
	runs(t, d11)

	// 1.2.0 says SICK=1: its healthcheck fails.
	d12 := reg.Push(t, repo, variant(t, healthy, "SICK=1"), "1.2.0")
	if _, err := deploy(t); !errors.Is(err, docker.ErrUnhealthy) {
		t.Fatalf("deploy 1.2.0 = %v, want %v", err, docker.ErrUnhealthy)
	}
	runs(t, d11)
	if !store.IsBad(name, "1.2.0", d12) {
		t.Errorf("IsBad(1.2.0@%s) = false after the failed deployment", d12)
	}

	// The next poll passes over 1.2.0 and leaves the container alone.
	ups, err = deploy(t)
	if err != nil || len(ups) != 0 {
		t.Errorf("deploy after 1.2.0 failed = %v, %v; want no update and no error", ups, err)
	}
	runs(t, d11)
	e, _ := store.Entry(name)
	wantSkip := []Skip{{Tag: "1.2.0", Digest: d12, Reason: "marked bad on this host"}}
	if diff := cmp.Diff(wantSkip, e.Check.Skipped); diff != "" {
		t.Errorf("last check's skipped tags (-want +got):\n%s", diff)
	}

	// The registry fails while a newer tag waits there: the container is
	// not touched, and the first turn after recovery deploys the tag.
	id := runs(t, d11)
	d13 := reg.Push(t, repo, variant(t, healthy, "V=1.3"), "1.3.0")
	for _, fault := range []int{http.StatusInternalServerError, http.StatusTooManyRequests} {
		f.FailNext(1000, fault, 0)
		ups, pollErr, applyErr := turn(t)
		if pollErr == nil || len(ups) != 0 || applyErr != nil {
			t.Errorf("turn with the registry answering %d = %v, poll %v, apply %v; want a poll error only", fault, ups, pollErr, applyErr)
		}
		if got := runs(t, d11); got != id {
			t.Errorf("container %s replaced (%.12s -> %.12s) while the registry answered %d", name, id, got, fault)
		}
	}
	f.Reset()
	if _, err := deploy(t); err != nil {
		t.Fatalf("deploy after recovery: %v", err)
	}
	runs(t, d13)
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// cleanupDocker removes the test's containers and the images it pulled.
func cleanupDocker(t testing.TB, cli *client.Client, suffix, repo string) {
	ctx := context.Background()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", e2eLabel+"="+suffix))})
	if err != nil {
		t.Errorf("cleanup: list containers: %v", err)
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.Errorf("cleanup: remove container %s: %v", c.ID, err)
		}
	}
	imgs, err := cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		t.Errorf("cleanup: list images: %v", err)
		return
	}
	for _, img := range imgs {
		for _, d := range img.RepoDigests {
			if strings.Contains(d, repo+"@") {
				cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
				break
			}
		}
	}
}

// BenchmarkPushToRunning measures the time from a tag's push to the new
// container running, with the poll loop at a 5 s interval on the real
// Docker engine. Each iteration pushes a newer tag; run it with a small
// -benchtime such as 3x.
func BenchmarkPushToRunning(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := sharedRegistry
	suffix := randomSuffix(b)
	repo := "bench-follow-" + suffix
	name := "outpost-regbench-" + suffix
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatalf("docker client: %v", err)
	}
	b.Cleanup(func() { cli.Close() })
	b.Cleanup(func() { cleanupDocker(b, cli, suffix, reg.Repo(repo)) })
	drv, err := docker.New(ctx, docker.Options{Settle: time.Second, HealthTimeout: time.Minute})
	if err != nil {
		b.Fatalf("docker.New: %v", err)
	}
	base := testreg.Image(b, testreg.Config{Cmd: []string{"sleep", "1000"}})
	reg.Push(b, repo, base, "1.0.0")

	store, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewResolver(Options{Keychain: noKeychain(), Bad: store})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPoller(r, store, PollerOptions{HostName: "edge-042", Platform: hostPlatform, Interval: 5 * time.Second, MinInterval: -1})
	stop := time.Second
	res := &spec.Resource{
		ID: spec.ID{Kind: docker.Kind, Name: name},
		Object: &docker.Container{
			Name: name, Image: reg.Repo(repo),
			Update:      &docker.UpdatePolicy{Policy: "semver"},
			Labels:      map[string]string{e2eLabel: suffix},
			Health:      &docker.Health{Cmd: []string{"true"}, Interval: 300 * time.Millisecond, Timeout: 2 * time.Second, Retries: 1},
			StopTimeout: &stop,
		},
	}
	type deployed struct {
		digest            string
		resolved, running time.Time
	}
	running := make(chan deployed, 16)
	done := make(chan error, 1)
	go func() {
		done <- p.Run(ctx, func() []*docker.Container { return []*docker.Container{docker.Of(res)} }, func([]Update) {
			resolved := time.Now()
			if !store.Pin(docker.Of(res)) {
				return
			}
			if _, err := drv.CheckApply(ctx, res, true); err != nil {
				b.Errorf("CheckApply: %v", err)
				return
			}
			running <- deployed{docker.Of(res).Digest, resolved, time.Now()}
		})
	}()
	<-running // 1.0.0

	var toResolved, toRunning time.Duration
	i := 0
	for b.Loop() {
		i++
		d := reg.Push(b, repo, variant(b, base, "N="+strconv.Itoa(i)), "1.0."+strconv.Itoa(i))
		pushed := time.Now()
		for got := range running {
			if got.digest == d {
				toResolved += got.resolved.Sub(pushed)
				toRunning += got.running.Sub(pushed)
				break
			}
		}
	}
	cancel()
	<-done
	b.ReportMetric(toResolved.Seconds()/float64(i), "s/push-to-resolved")
	b.ReportMetric(toRunning.Seconds()/float64(i), "s/push-to-running")
}
