package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// images resolves the tags of containers that follow their registry: the
// resolved tag@digest of each is kept in the state directory, so a restart
// pins the same image without the registry, and a tag whose deployment
// failed is marked bad for this host.
type images struct {
	store  *registry.Store
	poller *registry.Poller
	// interval is images.interval: how long a check stands.
	interval time.Duration
}

// newImages builds the registry client, with the credentials that the
// Docker config file holds now, over store; a nil store is opened in the
// state directory. The client keeps each registry's session and its
// credentials, so a reload builds it again.
func newImages(cfg *Config, log *slog.Logger, store *registry.Store) (*images, error) {
	if store == nil {
		var err error
		if store, err = registry.OpenStore(cfg.StateDir); err != nil {
			return nil, err
		}
	}
	res, err := registry.NewResolver(registry.Options{Bad: store, Logger: log, UserAgent: "outpost/" + Version})
	if err != nil {
		return nil, err
	}
	interval := time.Duration(cfg.Images.Interval)
	if interval <= 0 {
		interval = registry.DefaultInterval
	}
	return &images{
		store:    store,
		interval: interval,
		poller: registry.NewPoller(res, store, registry.PollerOptions{
			HostName: cfg.Host.Name,
			Interval: time.Duration(cfg.Images.Interval),
			Logger:   log,
		}),
	}, nil
}

// following returns the containers of st that follow their registry.
func following(st *spec.State) []*docker.Container {
	var cs []*docker.Container
	for _, r := range st.Resources {
		if c := docker.Of(r); c != nil && c.Follows() {
			cs = append(cs, c)
		}
	}
	return cs
}

// withUpdate reports whether a container of st has an update policy, in
// either mode: the images store then keeps its bad tags.
func withUpdate(st *spec.State) bool {
	for _, r := range st.Resources {
		if c := docker.Of(r); c != nil && c.Update != nil {
			return true
		}
	}
	return false
}

// resolveMode says which registries pin asks before it pins.
type resolveMode int

const (
	// pinOnly asks none: the last good revision, from local state.
	pinOnly resolveMode = iota
	// resolveNew asks for the containers that have nothing resolved yet:
	// the daemon's, whose registry timer asks for the others beside its
	// loop.
	resolveNew
	// resolveDue also asks for those whose last check is older than
	// images.interval: the daemon's pacing, kept in the store, so that a
	// one-shot pass deploys a tag pushed since the last check once a
	// check is due.
	resolveDue
)

// pin sets the tag and digest of every following container of st from the
// store, first asking the registries that resolve says. A container left
// unresolved fails when it is converged, with the registry's error.
func (im *images) pin(ctx context.Context, st *spec.State, resolve resolveMode) {
	unresolved := im.store.PinState(st)
	if resolve == pinOnly {
		return
	}
	now := time.Now()
	var cs []*docker.Container
	for _, c := range following(st) {
		if slices.Contains(unresolved, c.Name) || (resolve == resolveDue && im.due(c, now)) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return
	}
	im.poller.Poll(ctx, cs) // errors are recorded in the store per container
	im.store.PinState(st)
}

// due reports whether c's registry check is due: never checked for its
// image, or checked longer than the interval ago.
func (im *images) due(c *docker.Container, now time.Time) bool {
	e, ok := im.store.Entry(c.Name)
	if !ok || e.Image != c.Image || e.Check == nil {
		return true
	}
	return now.Sub(e.Check.At) >= im.interval
}

// markBad records the images of following containers that failed in a
// converge, so that the next pin falls back to the previous tag. It reports
// whether it marked any.
func (im *images) markBad(st *spec.State, failed map[spec.ID]string) bool {
	marked := false
	for _, r := range st.Resources {
		c := docker.Of(r)
		reason, bad := failed[r.ID]
		if c == nil || c.Update == nil || !bad || c.Tag == "" {
			continue
		}
		if err := im.store.MarkBad(c.Name, c.Tag, c.Digest, reason); err == nil {
			marked = true
		}
	}
	return marked
}

// ImagesReport renders the source for this host, checks the registries of
// the containers that follow one, and returns `outpost images`'s rows:
// RUNNING is what the engine runs, BEST what the registry resolved.
func ImagesReport(ctx context.Context, cfg *Config, log *slog.Logger) ([]registry.Row, error) {
	return imagesReport(ctx, cfg, log, seams{})
}

func imagesReport(ctx context.Context, cfg *Config, log *slog.Logger, s seams) ([]registry.Row, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s = s.withDefaults()
	prior, err := state.New(cfg.StateDir).Load()
	if err != nil {
		return nil, err
	}
	snap, _, err := openSourceOr(ctx, cfg, log, prior.LastGood)
	if err != nil {
		return nil, err
	}
	desired, err := desiredState(snap, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shortRev(snap.Revision), err)
	}
	im, err := s.newImages(cfg, log, nil)
	if err != nil {
		return nil, err
	}
	cs := following(desired)
	im.poller.Poll(ctx, cs) // per-container errors land in the rows
	return registry.Report(cs, im.store, running(ctx, cfg, log, s, cs, im.store)), nil
}

// runningImage is a driver that tells what a container runs.
type runningImage interface {
	Running(ctx context.Context, name string) (ref, digest string, err error)
}

// running asks the engine what each container of cs runs, as tag@digest:
// the tag is the one the store resolved to that digest. A container that
// does not run has no entry; without an engine, none has.
func running(ctx context.Context, cfg *Config, log *slog.Logger, s seams, cs []*docker.Container, store *registry.Store) map[string]string {
	out := map[string]string{}
	mk, ok := s.drivers[docker.Kind]
	if !ok || len(cs) == 0 {
		return out
	}
	drv, err := mk(ctx, converge.Env{Root: cfg.Root, StateDir: cfg.StateDir, Logger: log, Recorded: func(spec.ID) bool { return false }})
	if err != nil {
		log.Warn("what the containers run is not known: no engine", "err", err)
		return out
	}
	defer closeDrivers(map[spec.Kind]converge.Driver{docker.Kind: drv})
	ri, ok := drv.(runningImage)
	if !ok {
		return out
	}
	for _, c := range cs {
		ref, digest, err := ri.Running(ctx, c.Name)
		if err != nil || ref == "" {
			continue
		}
		if _, d, ok := strings.Cut(ref, "@"); ok && digest == "" {
			digest = d
		}
		out[c.Name] = docker.Reference("", tagOf(c, ref, digest, store), digest)
	}
	return out
}

// tagOf names the tag that a container runs: the one the store knows for
// its digest, or the tag in the engine's reference.
func tagOf(c *docker.Container, ref, digest string, store *registry.Store) string {
	if e, ok := store.Entry(c.Name); ok && digest != "" {
		for _, r := range []*registry.Ref{e.Current, e.Previous} {
			if r != nil && r.Digest == digest {
				return r.Tag
			}
		}
		if e.Check != nil {
			if tag, d, _ := strings.Cut(e.Check.Best, "@"); d == digest {
				return tag
			}
		}
	}
	if _, _, pinned := strings.Cut(ref, "@"); pinned {
		return ""
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return ""
}

// failedIDs maps each failed item of a pass to its error.
func failedIDs(res *converge.Result) map[spec.ID]string {
	out := map[spec.ID]string{}
	if res == nil {
		return out
	}
	for _, it := range res.Failed() {
		out[it.ID] = it.Err.Error()
	}
	return out
}

// imagesPolled is the outcome of one registry poll.
type imagesPolled struct {
	ups []registry.Update
	err error
}

// startImagesPoll arms the next registry poll and, unless one is in flight,
// checks the registries of the containers that follow one. A registry
// request may wait on the network for minutes (a timeout and retries for
// each), so the poll runs in a goroutine of its own and hands its outcome
// to the loop, which repairs drift and polls the source meanwhile.
func (d *daemon) startImagesPoll(ctx context.Context) {
	d.imagesT.Reset(d.images.poller.Next())
	if d.imagesBusy || d.desired == nil || d.st.Suspended {
		return
	}
	var cs []*docker.Container
	for _, c := range following(d.desired) {
		cc := *c // the loop may pin its own copy meanwhile
		cs = append(cs, &cc)
	}
	if len(cs) == 0 {
		return
	}
	d.imagesBusy = true
	d.work.Add(1)
	poller := d.images.poller // a reload may replace d.images meanwhile
	go func() {
		defer d.work.Done()
		ups, err := poller.Poll(ctx, cs)
		d.imagesDone <- imagesPolled{ups, err}
	}()
}

// applyImages converges the revision in force with the tags that a
// registry poll resolved. A tag whose container fails (the Docker target
// has put the old container back) is marked bad, and the previous tag
// pinned again.
func (d *daemon) applyImages(ctx context.Context, r imagesPolled) {
	d.imagesBusy = false
	if r.err != nil && ctx.Err() == nil {
		d.log.Debug("registry poll", "err", r.err)
	}
	if len(r.ups) == 0 || ctx.Err() != nil || d.desired == nil || d.st.Suspended {
		return
	}
	desired := d.repin(ctx, d.desired)
	d.use(ctx, d.rev, desired, true)
	res, err := d.converge(ctx, desired)
	if err != nil {
		d.log.Error("image update refused", "err", err)
		return
	}
	if !d.images.markBad(desired, failedIDs(res)) {
		d.record(ctx, outcome{rev: d.rev, result: ResultApplied, res: res, inForce: d.rev})
		return
	}
	d.log.Warn("new image failed on this host; marked bad, back to the previous one")
	desired = d.repin(ctx, desired)
	d.use(ctx, d.rev, desired, true)
	if res, err = d.converge(ctx, desired); err != nil {
		d.log.Error("image update refused", "err", err)
		return
	}
	d.record(ctx, outcome{rev: d.rev, result: ResultApplied, res: res, inForce: d.rev})
}

// repin returns a copy of st with its following containers pinned afresh
// from the images store: what rendering the same revision again would
// give, without reading the source, which a fetch may be holding.
func (d *daemon) repin(ctx context.Context, st *spec.State) *spec.State {
	out := *st
	out.Resources = make([]*spec.Resource, len(st.Resources))
	for i, r := range st.Resources {
		if c := docker.Of(r); c != nil && c.Follows() {
			rc, cc := *r, *c
			cc.Tag, cc.Digest = "", ""
			rc.Object = &cc
			r = &rc
		}
		out.Resources[i] = r
	}
	d.images.pin(ctx, &out, pinOnly)
	return &out
}
