package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// Watch reports the file resources of rs that may have drifted: once each at
// start, then whenever something happens to a managed path, to a directory on
// the way to it, or the kernel's event queue overflows. It watches each
// managed file's parent directory (or its nearest existing ancestor, until
// the directory appears), so that a replaced file is seen as well as an
// edited one. Our own writes are reported too: a spurious report costs a
// check, a missed one leaves drift. Watch calls notify from its own
// goroutine, and returns nil when ctx is done. It implements
// converge.Watcher.
//
// It is one select loop and the setup of the watches it serves; the two
// share the map of watched directories, so it stays whole.
func (d *Driver) Watch(ctx context.Context, rs []*spec.Resource, notify func(spec.ID)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch files: %w", err)
	}
	defer w.Close()

	type target struct {
		path string
		id   spec.ID
	}
	var targets []target
	byPath := map[string][]spec.ID{}
	for _, r := range rs {
		if Of(r) == nil {
			continue
		}
		p := d.Path(Of(r).Path)
		targets = append(targets, target{p, r.ID})
		byPath[p] = append(byPath[p], r.ID)
	}
	watched := map[string]bool{}
	// rewatch watches the nearest existing directory of each target. A
	// directory created between looking and watching would go unseen, so
	// after each new watch it looks again, and it reports the targets whose
	// directory changed: their file may have appeared in the meantime.
	rewatch := func(report bool) {
		for _, t := range targets {
			moved := false
			for {
				dir := d.nearestDir(filepath.Dir(t.path))
				if watched[dir] {
					break
				}
				if err := w.Add(dir); err != nil {
					d.log.Warn("cannot watch a directory; drift there is found by the periodic pass", "dir", dir, "err", err)
					break
				}
				watched[dir] = true
				moved = true
			}
			if moved && report {
				notify(t.id)
			}
		}
	}
	rewatch(false)
	for _, t := range targets {
		notify(t.id)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ids, ok := byPath[ev.Name]; ok {
				for _, id := range ids {
					notify(id)
				}
				continue
			}
			// A directory on the way to managed files: created, removed
			// or renamed. Report its files and watch what exists now.
			prefix := ev.Name + string(filepath.Separator)
			hit := false
			for _, t := range targets {
				if strings.HasPrefix(t.path, prefix) {
					notify(t.id)
					hit = true
				}
			}
			if hit && ev.Has(fsnotify.Create|fsnotify.Remove|fsnotify.Rename) {
				if watched[ev.Name] && !ev.Has(fsnotify.Create) {
					delete(watched, ev.Name)
					_ = w.Remove(ev.Name) // the kernel may have dropped it already
				}
				rewatch(true)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				d.log.Warn("file events overflowed; checking every managed file")
				for _, t := range targets {
					notify(t.id)
				}
				continue
			}
			d.log.Warn("watching files", "err", err)
		}
	}
}

// nearestDir returns dir, or its nearest ancestor that exists, never above
// the root.
func (d *Driver) nearestDir(dir string) string {
	top := d.root
	if top == "" {
		top = "/"
	}
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if dir == top || parent == dir || !within(top, parent) {
			return top
		}
		dir = parent
	}
}
