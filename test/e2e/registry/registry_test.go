package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestPushAndRead(t *testing.T) {
	reg := Start(t)
	img := Image(t, Config{
		Entrypoint:   []string{"/bin/busybox", "httpd", "-f", "-p", "8080"},
		Env:          []string{"A=1"},
		Labels:       map[string]string{"l": "v"},
		Health:       &Health{Test: []string{"CMD", "true"}, Interval: time.Second, Retries: 2},
		ExposedPorts: []string{"8080/tcp"},
	})
	dgst := reg.Push(t, "web", img, "1.0.0", "1.1.0")

	for _, tag := range []string{"1.0.0", "1.1.0"} {
		ref, err := name.ParseReference(reg.Ref("web", tag), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(ref)
		if err != nil {
			t.Fatalf("remote.Image(%s) = %v", ref, err)
		}
		d, _ := got.Digest()
		if d.String() != dgst {
			t.Errorf("digest of %s = %s, want %s", tag, d, dgst)
		}
		cf, err := got.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"PATH=/bin", "A=1"}, cf.Config.Env); diff != "" {
			t.Errorf("env (-want +got):\n%s", diff)
		}
		if cf.Config.Healthcheck == nil || cf.Config.Healthcheck.Retries != 2 {
			t.Errorf("healthcheck = %+v, want retries 2", cf.Config.Healthcheck)
		}
		if cf.Architecture != runtime.GOARCH {
			t.Errorf("architecture = %s, want %s", cf.Architecture, runtime.GOARCH)
		}
	}
}

func TestIndexWithoutHostPlatform(t *testing.T) {
	reg := Start(t)
	other := Platform{OS: "linux", Architecture: "riscv64"}
	if runtime.GOARCH == "riscv64" {
		other.Architecture = "s390x"
	}
	reg.PushIndex(t, "multi", Index(t, Config{Cmd: []string{"true"}}, other, Platform{OS: "linux", Architecture: "arm", Variant: "v7"}), "1.0.0")
	ref, _ := name.ParseReference(reg.Ref("multi", "1.0.0"), name.Insecure)
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("remote.Index = %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []v1.Platform
	for _, d := range m.Manifests {
		got = append(got, *d.Platform)
	}
	want := []v1.Platform{{OS: "linux", Architecture: other.Architecture}, {OS: "linux", Architecture: "arm", Variant: "v7"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
	_, err = remote.Image(ref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err == nil {
		t.Errorf("remote.Image for the host's platform = nil error, want one: the index lacks it")
	}
}

func TestFront(t *testing.T) {
	reg := Start(t)
	reg.Push(t, "app", Image(t, Config{Cmd: []string{"true"}}), "1")
	f := reg.Front(t, FrontOptions{})

	f.FailNext(1, http.StatusTooManyRequests, 3*time.Second)
	resp, err := http.Get("http://" + f.Host() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("GET /v2/ = %d Retry-After %q, want 429 Retry-After 3", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, err = http.Get("http://" + f.Host() + "/v2/app/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET tags/list = %d %s, want 200", resp.StatusCode, body)
	}
	if got := f.Requests(); got != 2 {
		t.Errorf("Requests() = %d, want 2", got)
	}
	if got := f.RequestsTo("/v2/app/tags/list"); got != 1 {
		t.Errorf("RequestsTo(tags/list) = %d, want 1", got)
	}
	f.Reset()
	if got := f.Requests(); got != 0 {
		t.Errorf("Requests() after Reset = %d, want 0", got)
	}
}

func TestFrontBasicAuth(t *testing.T) {
	reg := Start(t)
	reg.Push(t, "app", Image(t, Config{Cmd: []string{"true"}}), "1")
	f := reg.Front(t, FrontOptions{Username: "u", Password: "p"})
	ref, _ := name.ParseReference(f.Ref("app", "1"), name.Insecure)

	_, err := remote.Head(ref)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("Head without credentials = %v, want a 401 transport error", err)
	}
	if _, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "u", Password: "p"})); err != nil {
		t.Errorf("Head with credentials = %v, want nil", err)
	}
}

// TestEnginePullsAndRuns proves that the Docker engine pulls from the
// loopback registry without TLS and that the busybox image runs.
func TestEnginePullsAndRuns(t *testing.T) {
	reg := Start(t)
	reg.Push(t, "hello", Image(t, Config{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hello-outpost"}}), "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	defer cli.Close()
	ref := reg.Ref("hello", "1")
	rc, err := cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("ImagePull(%s) = %v", ref, err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	t.Cleanup(func() { cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}) })

	created, err := cli.ContainerCreate(ctx, &container.Config{Image: ref, Labels: map[string]string{"io.outpost.test": t.Name()}}, nil, nil, nil, "")
	if err != nil {
		t.Fatalf("ContainerCreate = %v", err)
	}
	t.Cleanup(func() {
		cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("ContainerStart = %v", err)
	}
	waitC, errC := cli.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case res := <-waitC:
		if res.StatusCode != 0 {
			t.Errorf("exit status = %d, want 0", res.StatusCode)
		}
	case err := <-errC:
		t.Fatalf("ContainerWait = %v", err)
	}
	logs, err := cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(logs)
	logs.Close()
	if !bytes.Contains(out, []byte("hello-outpost")) {
		t.Errorf("logs = %q, want hello-outpost", out)
	}
}
