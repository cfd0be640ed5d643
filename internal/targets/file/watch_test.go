package file_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

// watch runs d.Watch until the test ends and returns its notifications.
func watch(t *testing.T, d *file.Driver, rs []*spec.Resource) <-chan spec.ID {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan spec.ID, 1024)
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		werr = d.Watch(ctx, rs, func(id spec.ID) { ch <- id })
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if werr != nil {
			t.Errorf("Watch() = %v, want nil after cancel", werr)
		}
	})
	return ch
}

// await waits for a notification of id, skipping others. The bound only
// keeps a broken watcher from hanging the suite.
func await(t *testing.T, ch <-chan spec.ID, id spec.ID, what string) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case got := <-ch:
			if got == id {
				return
			}
		case <-deadline.C:
			t.Fatalf("Watch() did not report %s after %s", id, what)
		}
	}
}

// drain takes every notification already queued.
func drain(ch <-chan spec.ID) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestWatchAtStart(t *testing.T) {
	root := t.TempDir()
	rs := []*spec.Resource{fileRes("/etc/a", "x"), fileRes("/etc/b", "y"), fileRes("/missing/dir/c", "z")}
	ch := watch(t, file.New(file.Options{Root: root}), rs)
	got := map[spec.ID]bool{}
	for len(got) < len(rs) {
		got[<-ch] = true
	}
	for _, r := range rs {
		if !got[r.ID] {
			t.Errorf("Watch() did not report %s at start", r.ID)
		}
	}
}

func TestWatchHandEdits(t *testing.T) {
	tests := []struct {
		name string
		// path of the resource; edit changes it by hand under root.
		path string
		edit func(t *testing.T, p string)
	}{
		{"content", "/etc/a", func(t *testing.T, p string) { write(t, p, "edited", 0o644) }},
		{"mode", "/etc/a", func(t *testing.T, p string) {
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"owner", "/etc/a", func(t *testing.T, p string) { chown(t, p, nobody, nobody) }},
		{"removed", "/etc/a", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced by rename", "/etc/a", func(t *testing.T, p string) {
			write(t, p+".new", "other", 0o644)
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"created in a missing directory", "/opt/new/dir/a", func(t *testing.T, p string) {
			write(t, p, "by hand", 0o644)
		}},
		{"parent directory removed", "/srv/app/a", func(t *testing.T, p string) {
			if err := os.RemoveAll(filepath.Dir(p)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			d := file.New(file.Options{Root: root})
			r := fileRes(tt.path, "x")
			if tt.name != "created in a missing directory" {
				if _, err := d.CheckApply(context.Background(), r, true); err != nil {
					t.Fatal(err)
				}
			}
			other := fileRes("/etc/other", "o")
			ch := watch(t, d, []*spec.Resource{r, other})
			// One report each at start: the watches are in place after
			// both.
			seen := map[spec.ID]bool{}
			for len(seen) < 2 {
				seen[<-ch] = true
			}
			drain(ch)
			tt.edit(t, d.Path(tt.path))
			await(t, ch, r.ID, tt.name)
		})
	}
}

func TestWatchDirectoryAppearsLater(t *testing.T) {
	root := t.TempDir()
	d := file.New(file.Options{Root: root})
	r := fileRes("/var/lib/app/a.conf", "x")
	ch := watch(t, d, []*spec.Resource{r})
	await(t, ch, r.ID, "start")
	// The directories appear one by one; then the file is edited by hand
	// twice. The second edit is only seen if the new directory is watched.
	if err := os.MkdirAll(root+"/var/lib/app", 0o755); err != nil {
		t.Fatal(err)
	}
	await(t, ch, r.ID, "its directory was created")
	write(t, root+"/var/lib/app/a.conf", "1", 0o644)
	await(t, ch, r.ID, "it was created")
	drain(ch)
	write(t, root+"/var/lib/app/a.conf", "2", 0o644)
	await(t, ch, r.ID, "it was edited")
}
