package agent

import (
	"context"
	"sync"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// startWatchers replaces the running watchers with one per driver that can
// watch, over the resources of desired. Their notifications reach the loop
// through d.drift; a full channel drops a notification, which the periodic
// full pass makes up for.
func (d *daemon) startWatchers(ctx context.Context, drivers map[spec.Kind]converge.Driver, desired *spec.State) {
	d.stopWatchers()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for kind, drv := range drivers {
		w, ok := drv.(converge.Watcher)
		if !ok {
			continue
		}
		var rs []*spec.Resource
		for _, r := range desired.Resources {
			if r.ID.Kind == kind && r.Drift != spec.DriftIgnore {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := w.Watch(wctx, rs, func(id spec.ID) {
				select {
				case d.drift <- id:
				default:
				}
			})
			if err != nil && wctx.Err() == nil {
				d.log.Warn("watcher stopped; the full pass still repairs drift", "kind", kind, "err", err)
			}
		}()
	}
	d.stopWatch = func() {
		cancel()
		wg.Wait()
	}
}

func (d *daemon) stopWatchers() {
	if d.stopWatch != nil {
		d.stopWatch()
		d.stopWatch = nil
	}
}
