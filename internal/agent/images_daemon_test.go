package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// imageDriver is a container driver that records the image each container
// was given.
type imageDriver struct {
	mu      sync.Mutex
	applied map[string]string
}

func (d *imageDriver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ref := docker.Of(r).Image + "@" + docker.Of(r).Digest
	if d.applied[r.ID.Name] == ref {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	if apply {
		d.applied[r.ID.Name] = ref
	}
	return spec.Change{Action: spec.ActionUpdate, Fields: []string{"image"}}, nil
}

func (d *imageDriver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	return spec.Change{Action: spec.ActionNone}, nil
}

// TestDaemonWorksWhileARegistryStalls follows a registry that accepts
// requests and never answers, as over a link that lost its packets: each
// request waits for its timeout and its retries, minutes in all. Meanwhile
// the agent repairs drift and applies a new revision.
func TestDaemonWorksWhileARegistryStalls(t *testing.T) {
	t.Parallel()
	stalled := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case stalled <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close

	containers := &imageDriver{applied: map[string]string{}}
	drivers := withDriver(docker.Kind, func(context.Context, converge.Env) (converge.Driver, error) { return containers, nil })

	root := t.TempDir()
	stateDir := filepath.Join(t.TempDir(), "state")
	image := strings.TrimPrefix(srv.URL, "http://") + "/web"
	revision := func(content string) fstest.MapFS {
		fsys := fileManifest("/etc/app.conf", content)
		fsys["web.yaml"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("kind: container\nname: web\nimage: %s\nupdate: {policy: semver}\n", image))}
		return fsys
	}
	cfg := &Config{Root: root, StateDir: stateDir, HealthTimeout: Duration(5 * time.Second),
		Images: ImagesConfig{Interval: Duration(50 * time.Millisecond)}}

	// The container's tag was resolved before, so the first revision pins
	// it from the state without asking the registry.
	desired, err := desiredState(&Snapshot{FS: revision("one\n"), Revision: "r1"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := registry.OpenStore(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	if _, err := store.Record(following(desired)[0], registry.Resolution{Tag: "1.0.0", Digest: digest}, nil); err != nil {
		t.Fatal(err)
	}

	src := &historySource{}
	src.push("r1", revision("one\n"))
	socket := startDaemonWith(t, src, cfg, DaemonOptions{drivers: drivers})
	waitFor(t, "the first revision", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.Result == ResultApplied && s.Commit == "r1"
	})
	select {
	case <-stalled:
	case <-time.After(20 * time.Second):
		t.Fatal("the registry poll did not start")
	}

	target := filepath.Join(root, "etc/app.conf")
	if err := os.WriteFile(target, []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drift repair while the registry stalls", func() bool {
		b, _ := os.ReadFile(target)
		return string(b) == "one\n"
	})

	src.push("r2", revision("two\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Control(ctx, socket, "reconcile")
	if err != nil {
		t.Fatalf("reconcile while the registry stalls: %v", err)
	}
	if s.Commit != "r2" || s.Result != ResultApplied {
		t.Errorf("after reconcile: %s %s, want r2 applied", s.Commit, s.Result)
	}
	if b, _ := os.ReadFile(target); string(b) != "two\n" {
		t.Errorf("content = %q, want r2's", b)
	}
	containers.mu.Lock()
	got := containers.applied["web"]
	containers.mu.Unlock()
	if want := image + "@" + digest; got != want {
		t.Errorf("container runs %q, want %q, the tag resolved before", got, want)
	}
}
