package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// asideSuffix names an old container kept aside during an update.
const asideSuffix = "-outpost-old"

// CheckApply compares the container of r with the host's and, with apply
// true, converges it: create it, start it, rename it back, update its
// restart policy or CPUs in place, or replace it without leaving it broken.
//
// It is long because it is the one place that decides, in order, between
// those outcomes from what the engine reports; each branch is short and
// calls out to a helper, and splitting the decision would scatter the
// order that makes an update safe.
func (d *Driver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	c := Of(r)
	if c == nil {
		return spec.Change{}, fmt.Errorf("%s: not a container resource", r.ID)
	}
	if c.EnvFileErr != "" {
		return spec.Change{}, fmt.Errorf("container %s: %s; the container is left as it is", c.Name, c.EnvFileErr)
	}
	defer d.lock(c.Name)()
	log := d.log.With("resource", r.ID.String())

	cur, other, aside, err := d.find(ctx, c.Name)
	if err != nil {
		return spec.Change{}, err
	}
	hash := specHash(c)
	if cur == nil {
		ch := spec.Change{Action: spec.ActionCreate}
		if other != nil {
			return ch, conflict(c.Name, other)
		}
		if !apply {
			return ch, nil
		}
		if err := d.create(ctx, log, c, hash); err != nil {
			return ch, err
		}
		log.Info("container created", "image", imageRef(c))
		return ch, nil
	}

	// A container that runs the reference it was created with runs the
	// image it was given: a tag is not followed by pulling it again (a
	// registry policy pins digests for that), so the image is looked up by
	// its immutable ID, from a cache in a no-op pass.
	var img *image.InspectResponse
	if cur.Config.Image == imageRef(c) {
		img, err = d.imageByID(ctx, cur.Image)
	} else {
		img, err = d.localImage(ctx, imageRef(c))
	}
	if err != nil {
		return spec.Change{}, err
	}
	want := expected(c, img, d.logDriver)
	if img == nil {
		// Not pulled yet: compare what the image adds with the running
		// image's, so that only the image is reported.
		if run, err := d.imageByID(ctx, cur.Image); err == nil && run != nil {
			want = expected(c, run, d.logDriver)
			want.ImageID = ""
		}
	}
	have := observed(*cur)
	if target, ok := strings.CutPrefix(want.Network, "container:"); ok {
		// The engine keeps container:ID for container:NAME.
		cctx, cancel := d.call(ctx)
		in, err := d.api.ContainerInspect(cctx, target)
		cancel()
		if err == nil && have.Network == "container:"+in.ID {
			want.Network = have.Network
		}
	}
	fields := diff(want, have)
	// The spec hash label tells drift (the spec is the one applied, the
	// container changed) from a desired change.
	drifted := cur.Config.Labels[LabelSpecHash] == hash
	if len(fields) == 0 || (drifted && r.Drift == spec.DriftIgnore) {
		if aside == "" {
			return spec.Change{Action: spec.ActionNone}, nil
		}
		// The update that set the old container aside was cut short
		// after it started the new one, which is what is desired: the
		// old one is left over.
		ch := spec.Change{Action: spec.ActionUpdate, Fields: []string{asideField(c.Name)}}
		if !apply {
			return ch, nil
		}
		if err := d.clearAside(ctx, c.Name, cur.ID); err != nil {
			return ch, err
		}
		log.Info("old container left aside removed")
		return ch, nil
	}
	ch := spec.Change{Action: spec.ActionUpdate}
	worst := fixStart
	for _, f := range fields {
		ch.Fields = append(ch.Fields, f.Text)
		worst = max(worst, f.Fix)
	}
	if drifted && r.Drift == spec.DriftWarn {
		log.Warn("container drifted; left alone (drift: warn)", "fields", strings.Join(ch.Fields, ", "))
		ch.Fields = append(ch.Fields, "left alone (drift: warn)")
		return ch, nil
	}
	if aside != "" {
		ch.Fields = append(ch.Fields, asideField(c.Name))
	}
	if other != nil {
		// The owned container is under another name and an unowned one
		// holds this name: neither can be fixed.
		return ch, conflict(c.Name, other)
	}
	if !apply {
		return ch, nil
	}
	// A desired change recreates the container so that its labels say
	// which spec it runs; only drift is repaired in place.
	if worst == fixRecreate || !drifted {
		if err := d.replace(ctx, log, c, cur, hash); err != nil {
			return ch, err
		}
		log.Info("container replaced", "fields", strings.Join(ch.Fields, ", "))
		return ch, nil
	}
	if err := d.repair(ctx, c, cur, fields); err != nil {
		return ch, err
	}
	if aside != "" {
		if err := d.clearAside(ctx, c.Name, cur.ID); err != nil {
			return ch, err
		}
	}
	log.Info("container repaired", "fields", strings.Join(ch.Fields, ", "))
	return ch, nil
}

// asideField is the change that removes the old container of name that an
// interrupted update left aside.
func asideField(name string) string { return "old container " + name + asideSuffix + " removed" }

func conflict(name string, other *container.InspectResponse) error {
	return fmt.Errorf("container %s: %w (id %.12s); it was left as it is", name, ErrConflict, other.ID)
}

// repair fixes drift that needs no new container.
func (d *Driver) repair(ctx context.Context, c *Container, cur *container.InspectResponse, fields []field) error {
	for _, f := range fields {
		switch f.Fix {
		case fixUpdate:
			cctx, cancel := d.call(ctx)
			_, err := d.api.ContainerUpdate(cctx, cur.ID, container.UpdateConfig{
				RestartPolicy: parseRestart(c.Restart),
				Resources:     container.Resources{NanoCPUs: nanoCPUs(c.CPUs)},
			})
			cancel()
			if err != nil {
				return fmt.Errorf("container %s: update: %w", c.Name, err)
			}
		case fixRename:
			cctx, cancel := d.call(ctx)
			err := d.api.ContainerRename(cctx, cur.ID, c.Name)
			cancel()
			if err != nil {
				return fmt.Errorf("container %s: rename back: %w", c.Name, err)
			}
		}
	}
	switch {
	case cur.State.Paused:
		cctx, cancel := d.call(ctx)
		defer cancel()
		if err := d.api.ContainerUnpause(cctx, cur.ID); err != nil {
			return fmt.Errorf("container %s: unpause: %w", c.Name, err)
		}
	case !cur.State.Running:
		cctx, cancel := d.call(ctx)
		defer cancel()
		if err := d.api.ContainerStart(cctx, cur.ID, container.StartOptions{}); err != nil {
			return fmt.Errorf("container %s: start: %w", c.Name, err)
		}
	}
	return nil
}

// find returns the owned container of resource name, an unowned container
// that holds the name, if any, and the ID of the owned container that an
// interrupted update left aside when it is not the one returned.
func (d *Driver) find(ctx context.Context, name string) (owned, other *container.InspectResponse, aside string, err error) {
	cctx, cancel := d.call(ctx)
	defer cancel()
	in, err := d.api.ContainerInspect(cctx, name)
	switch {
	case err == nil && in.ContainerJSONBase != nil && in.Name == "/"+name:
		if isOwned(in.Config, name) {
			aside, err := d.asideOf(cctx, name, in.ID)
			return &in, nil, aside, err
		}
		other = &in
	case err == nil, errdefs.IsNotFound(err):
		// Not found, or only an ID prefix matched.
	default:
		return nil, nil, "", fmt.Errorf("container %s: inspect: %w", name, err)
	}
	list, err := d.api.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelResource+"="+name),
	)})
	if err != nil {
		return nil, nil, "", fmt.Errorf("container %s: list: %w", name, err)
	}
	// Prefer a container under its own name, then any but one kept aside
	// by an interrupted update, then that one.
	var pick string
	for _, s := range list {
		if hasName(s.Names, "/"+name+asideSuffix) {
			aside = s.ID
		}
		if pick == "" || !hasName(s.Names, "/"+name+asideSuffix) {
			pick = s.ID
		}
	}
	if aside == pick {
		aside = ""
	}
	if pick == "" {
		return nil, other, "", nil
	}
	in, err = d.api.ContainerInspect(cctx, pick)
	if errdefs.IsNotFound(err) {
		return nil, other, "", nil
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("container %s: inspect: %w", name, err)
	}
	return &in, other, aside, nil
}

// asideOf returns the ID of the owned container of name that an update
// left aside, unless it is keep, or "".
func (d *Driver) asideOf(ctx context.Context, name, keep string) (string, error) {
	in, err := d.api.ContainerInspect(ctx, name+asideSuffix)
	switch {
	case errdefs.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("container %s: inspect: %w", name+asideSuffix, err)
	case in.ContainerJSONBase == nil || in.ID == keep || in.Name != "/"+name+asideSuffix || !isOwned(in.Config, name):
		return "", nil
	}
	return in.ID, nil
}

func hasName(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

func isOwned(c *container.Config, name string) bool {
	return c != nil && c.Labels[LabelManaged] == "true" && c.Labels[LabelResource] == name
}

// localImage returns the local image that ref names, or nil when it is not
// pulled.
func (d *Driver) localImage(ctx context.Context, ref string) (*image.InspectResponse, error) {
	cctx, cancel := d.call(ctx)
	defer cancel()
	img, err := d.api.ImageInspect(cctx, ref)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: inspect: %w", ref, err)
	}
	return &img, nil
}

// imageByID returns the local image with the given ID, or nil. Images are
// immutable by ID, so they are cached.
func (d *Driver) imageByID(ctx context.Context, id string) (*image.InspectResponse, error) {
	d.mu.Lock()
	img, ok := d.images[id]
	d.mu.Unlock()
	if ok {
		return img, nil
	}
	img, err := d.localImage(ctx, id)
	if err != nil || img == nil {
		return img, err
	}
	d.mu.Lock()
	if len(d.images) > 256 {
		clear(d.images)
	}
	d.images[id] = img
	d.mu.Unlock()
	return img, nil
}

// ensureImage pulls ref unless it is present, and returns its digest for
// the image-digest label.
func (d *Driver) ensureImage(ctx context.Context, log *slog.Logger, c *Container) (string, error) {
	ref := imageRef(c)
	img, err := d.localImage(ctx, ref)
	if err != nil {
		return "", err
	}
	if img == nil {
		if err := d.pull(ctx, ref); err != nil {
			return "", err
		}
		log.Info("image pulled", "image", ref)
		if img, err = d.localImage(ctx, ref); err != nil {
			return "", err
		}
		if img == nil {
			return "", fmt.Errorf("image %s: %w: not present after the pull", ref, ErrPull)
		}
	}
	if c.Digest != "" {
		return c.Digest, nil
	}
	for _, rd := range img.RepoDigests {
		if repo, dg, ok := strings.Cut(rd, "@"); ok && repo == c.Image {
			return dg, nil
		}
	}
	return "", nil
}

// ensureNetworks creates the named networks that c joins and that are
// missing, labelled as Outpost's.
func (d *Driver) ensureNetworks(ctx context.Context, log *slog.Logger, c *Container) error {
	for _, n := range Networks(c) {
		if n == "bridge" {
			continue
		}
		cctx, cancel := d.call(ctx)
		nw, err := d.api.NetworkInspect(cctx, n, network.InspectOptions{})
		if err == nil && nw.Name != n {
			// The engine finds a network by its ID or an ID's prefix
			// too: "networks: [<ID of host>]" would be the host's
			// network under another spelling, past the policy, which
			// decides on names.
			err = fmt.Errorf("%w: the engine reads it as the ID of network %s; name networks by their names", ErrNetworkByID, nw.Name)
		}
		if errdefs.IsNotFound(err) {
			_, err = d.api.NetworkCreate(cctx, n, network.CreateOptions{
				Driver: "bridge",
				Labels: networkLabels(c, n),
			})
			if err == nil {
				log.Info("network created", "network", n)
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("network %s: %w", n, err)
		}
	}
	return nil
}

// create makes and starts the container of c.
func (d *Driver) create(ctx context.Context, log *slog.Logger, c *Container, hash string) error {
	digest, err := d.ensureImage(ctx, log, c)
	if err != nil {
		return err
	}
	if err := d.ensureNetworks(ctx, log, c); err != nil {
		return err
	}
	id, err := d.createStart(ctx, c, hash, digest)
	if err != nil && id != "" {
		d.removeContainer(context.WithoutCancel(ctx), id)
	}
	return err
}

// createStart creates the container of c under its name, joins its other
// networks and starts it. It returns the new ID when the container exists,
// even on error.
func (d *Driver) createStart(ctx context.Context, c *Container, hash, digest string) (string, error) {
	cfg, host, nc := createConfig(c, hash, digest)
	cctx, cancel := d.call(ctx)
	defer cancel()
	resp, err := d.api.ContainerCreate(cctx, cfg, host, nc, nil, c.Name)
	if err != nil {
		if errdefs.IsConflict(err) {
			return "", fmt.Errorf("container %s: %w", c.Name, ErrConflict)
		}
		return "", fmt.Errorf("container %s: create: %w", c.Name, err)
	}
	mode := NetworkMode(c)
	for _, n := range Networks(c) {
		if n == mode {
			continue
		}
		if err := d.api.NetworkConnect(cctx, n, resp.ID, endpointSettings(c, n)); err != nil {
			return resp.ID, fmt.Errorf("container %s: connect network %s: %w", c.Name, n, err)
		}
	}
	if err := d.api.ContainerStart(cctx, resp.ID, container.StartOptions{}); err != nil {
		return resp.ID, fmt.Errorf("container %s: start: %w", c.Name, err)
	}
	return resp.ID, nil
}

// replace recreates the container: pull first, stop the old one and keep
// it aside, create and start the new one, wait until it is healthy, then
// remove the old one; if the new one fails, put the old one back.
func (d *Driver) replace(ctx context.Context, log *slog.Logger, c *Container, old *container.InspectResponse, hash string) error {
	digest, err := d.ensureImage(ctx, log, c)
	if err != nil {
		return err // the old container is untouched
	}
	if err := d.ensureNetworks(ctx, log, c); err != nil {
		return err
	}
	oldName := strings.TrimPrefix(old.Name, "/")
	wasRunning := old.State != nil && old.State.Running
	if wasRunning {
		cctx, cancel := d.call(ctx)
		err := d.api.ContainerStop(cctx, old.ID, container.StopOptions{}) // its own stop_timeout
		cancel()
		if err != nil {
			return fmt.Errorf("container %s: stop the old container: %w", c.Name, err)
		}
	}
	aside := c.Name + asideSuffix
	if oldName != aside {
		if err := d.clearAside(ctx, c.Name, old.ID); err != nil {
			return err
		}
		cctx, cancel := d.call(ctx)
		err := d.api.ContainerRename(cctx, old.ID, aside)
		cancel()
		if err != nil {
			d.restore(ctx, log, c.Name, old.ID, "", wasRunning)
			return fmt.Errorf("container %s: rename the old container aside: %w", c.Name, err)
		}
	}

	id, err := d.createStart(ctx, c, hash, digest)
	if err == nil {
		err = d.waitHealthy(ctx, id, d.opts.Settle)
	}
	if err != nil {
		d.restore(ctx, log, c.Name, old.ID, id, wasRunning)
		return fmt.Errorf("container %s: %w; the previous container is back", c.Name, err)
	}
	d.removeContainer(ctx, old.ID)
	d.pruneNetworks(ctx, log, networksOf(old))
	return nil
}

// clearAside removes an owned container left aside by an interrupted
// update, so that the name is free.
func (d *Driver) clearAside(ctx context.Context, name, keep string) error {
	cctx, cancel := d.call(ctx)
	defer cancel()
	in, err := d.api.ContainerInspect(cctx, name+asideSuffix)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: inspect: %w", name+asideSuffix, err)
	}
	if in.ID == keep || in.Name != "/"+name+asideSuffix {
		return nil
	}
	if !isOwned(in.Config, name) {
		return fmt.Errorf("container %s: %w", name+asideSuffix, ErrConflict)
	}
	if err := d.api.ContainerRemove(cctx, in.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: remove: %w", name+asideSuffix, err)
	}
	return nil
}

// restore removes the failed new container and puts the old one back. It
// runs even when ctx is done: the host must not be left without either.
func (d *Driver) restore(ctx context.Context, log *slog.Logger, name, oldID, newID string, start bool) {
	ctx = context.WithoutCancel(ctx)
	if newID != "" {
		d.removeContainer(ctx, newID)
	}
	cctx, cancel := d.call(ctx)
	defer cancel()
	if err := d.api.ContainerRename(cctx, oldID, name); err != nil {
		log.Error("could not rename the previous container back", "container", oldID, "error", err)
	}
	if start {
		if err := d.api.ContainerStart(cctx, oldID, container.StartOptions{}); err != nil {
			log.Error("could not start the previous container", "container", oldID, "error", err)
			return
		}
	}
	log.Info("previous container restored", "container", oldID[:min(12, len(oldID))])
}

func (d *Driver) removeContainer(ctx context.Context, id string) error {
	cctx, cancel := d.call(ctx)
	defer cancel()
	err := d.api.ContainerRemove(cctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !errdefs.IsNotFound(err) {
		d.log.Warn("could not remove a container", "container", id, "error", err)
		return err
	}
	return nil
}

// waitHealthy waits until the new container id passes its healthcheck, or
// without one stays running for settle.
func (d *Driver) waitHealthy(ctx context.Context, id string, settle time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.HealthTimeout)
	defer cancel()
	settled := time.NewTimer(settle)
	defer settled.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	isSettled := settle <= 0
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: not healthy in time: %w", ErrUnhealthy, ctx.Err())
		case <-settled.C:
			isSettled = true
		case <-tick.C:
		}
		ok, reason, err := d.health(ctx, id, true)
		if err != nil {
			return err
		}
		if reason.final {
			return fmt.Errorf("%w: %s", ErrUnhealthy, reason.text)
		}
		if ok && (reason.checked || isSettled) {
			return nil
		}
	}
}

type healthReason struct {
	text    string
	final   bool // it will not get better by waiting
	checked bool // ok comes from a healthcheck, not only from running
}

// health inspects container id. A fresh container (just started by an
// update) that restarted already has failed for good.
func (d *Driver) health(ctx context.Context, id string, fresh bool) (bool, healthReason, error) {
	cctx, cancel := d.call(ctx)
	defer cancel()
	in, err := d.api.ContainerInspect(cctx, id)
	if err != nil {
		return false, healthReason{}, fmt.Errorf("inspect: %w", err)
	}
	s := in.State
	switch {
	case s == nil:
		return false, healthReason{text: "no state"}, nil
	case s.Restarting || (fresh && in.RestartCount > 0):
		return false, healthReason{text: fmt.Sprintf("restarting (exit code %d)", s.ExitCode), final: fresh}, nil
	case !s.Running:
		return false, healthReason{text: fmt.Sprintf("exited with code %d", s.ExitCode), final: true}, nil
	case s.Paused:
		return false, healthReason{text: "paused"}, nil
	case s.Health != nil && s.Health.Status != container.NoHealthcheck:
		switch s.Health.Status {
		case container.Healthy:
			return true, healthReason{text: "healthy", checked: true}, nil
		case container.Unhealthy:
			return false, healthReason{text: "healthcheck failed" + lastProbe(s.Health), final: true}, nil
		}
		return false, healthReason{text: "health " + s.Health.Status}, nil
	}
	return true, healthReason{text: "running"}, nil
}

func lastProbe(h *container.Health) string {
	if len(h.Log) == 0 {
		return ""
	}
	l := h.Log[len(h.Log)-1]
	out := strings.TrimSpace(l.Output)
	if len(out) > 200 {
		out = out[:200]
	}
	if out == "" {
		return fmt.Sprintf(" (exit code %d)", l.ExitCode)
	}
	return fmt.Sprintf(" (exit code %d: %s)", l.ExitCode, out)
}

func networksOf(in *container.InspectResponse) []string {
	if in.NetworkSettings == nil {
		return nil
	}
	var out []string
	for n := range in.NetworkSettings.Networks {
		out = append(out, n)
	}
	return out
}

// pruneNetworks removes the networks among names that Outpost owns and
// that no container uses any more.
func (d *Driver) pruneNetworks(ctx context.Context, log *slog.Logger, names []string) error {
	var errs []error
	for _, n := range names {
		cctx, cancel := d.call(ctx)
		err := d.pruneNetwork(cctx, log, n)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Driver) pruneNetwork(ctx context.Context, log *slog.Logger, n string) error {
	nw, err := d.api.NetworkInspect(ctx, n, network.InspectOptions{})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if nw.Labels[LabelManaged] != "true" || nw.Labels[LabelResource] != "" {
		return nil // not Outpost's, or a network of its own manifest
	}
	users, err := d.api.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", nw.ID))})
	if err != nil {
		return err
	}
	if len(users) > 0 || len(nw.Containers) > 0 {
		return nil
	}
	if err := d.api.NetworkRemove(ctx, nw.ID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	log.Info("network removed", "network", n)
	return nil
}

// Remove stops and removes the owned container of id, which left the
// desired state, with its anonymous volumes, its named volumes when it was
// created with remove_volumes, and the owned networks it was the last user
// of. A container without Outpost's label is never touched.
func (d *Driver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	defer d.lock(id.Name)()
	log := d.log.With("resource", id.String())
	cctx, cancel := d.call(ctx)
	list, err := d.api.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"),
		filters.Arg("label", LabelResource+"="+id.Name),
	)})
	cancel()
	if err != nil {
		return spec.Change{}, fmt.Errorf("container %s: list: %w", id.Name, err)
	}
	if len(list) == 0 {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	ch := spec.Change{Action: spec.ActionDelete}
	if !apply {
		return ch, nil
	}
	var errs []error
	for _, s := range list {
		if err := d.removeOwned(ctx, log, id.Name, s.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ch, err
	}
	log.Info("container removed")
	return ch, nil
}

func (d *Driver) removeOwned(ctx context.Context, log *slog.Logger, name, id string) error {
	cctx, cancel := d.call(ctx)
	in, err := d.api.ContainerInspect(cctx, id)
	cancel()
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: inspect: %w", name, err)
	}
	if !isOwned(in.Config, name) {
		return nil
	}
	if in.State != nil && in.State.Running {
		// A long stop_timeout needs more than one call's timeout.
		timeout := d.opts.CallTimeout
		if in.Config.StopTimeout != nil {
			timeout += time.Duration(*in.Config.StopTimeout) * time.Second
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		err := d.api.ContainerStop(sctx, id, container.StopOptions{})
		cancel()
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: stop: %w", name, err)
		}
	}
	if err := d.removeContainer(ctx, id); err != nil {
		return fmt.Errorf("container %s: remove: %w", name, err)
	}
	var errs []error
	if in.Config.Labels[LabelRemoveVolumes] == "true" {
		for _, m := range in.Mounts {
			if m.Type != "volume" || m.Name == "" {
				continue
			}
			cctx, cancel := d.call(ctx)
			err := d.api.VolumeRemove(cctx, m.Name, false)
			cancel()
			if err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("container %s: remove volume %s: %w", name, m.Name, err))
				continue
			}
			log.Info("volume removed", "volume", m.Name)
		}
	}
	if err := d.pruneNetworks(ctx, log, networksOf(&in)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Restart restarts the owned container of r (a file it names in restart_on
// changed).
func (d *Driver) Restart(ctx context.Context, r *spec.Resource) error {
	if Of(r) == nil {
		return fmt.Errorf("%s: not a container resource", r.ID)
	}
	defer d.lock(Of(r).Name)()
	cur, _, _, err := d.find(ctx, Of(r).Name)
	if err != nil {
		return err
	}
	if cur == nil {
		return fmt.Errorf("container %s: not found", Of(r).Name)
	}
	timeout := d.opts.CallTimeout
	if cur.Config.StopTimeout != nil {
		timeout += time.Duration(*cur.Config.StopTimeout) * time.Second
	} else {
		timeout += DefaultStopTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.api.ContainerRestart(cctx, cur.ID, container.StopOptions{}); err != nil {
		return fmt.Errorf("container %s: restart: %w", Of(r).Name, err)
	}
	d.log.Info("container restarted", "resource", r.ID.String())
	return nil
}

// Healthy reports whether the owned container of r passes its healthcheck,
// or runs when it has none.
func (d *Driver) Healthy(ctx context.Context, r *spec.Resource) (bool, string, error) {
	if Of(r) == nil {
		return false, "", fmt.Errorf("%s: not a container resource", r.ID)
	}
	cur, _, _, err := d.find(ctx, Of(r).Name)
	if err != nil {
		return false, "", err
	}
	if cur == nil {
		return false, "container missing", nil
	}
	ok, why, err := d.health(ctx, cur.ID, false)
	if err != nil {
		return false, "", fmt.Errorf("container %s: %w", Of(r).Name, err)
	}
	return ok, why.text, nil
}

// WaitHealthy implements converge.HealthWaiter: it waits until the owned
// container of r, which the pass just created or replaced, passes its
// healthcheck. One without a healthcheck need only be running, as Compose's
// depends_on starts a service after one that has none. It fails at once
// when the container exited, restarted or failed its healthcheck.
func (d *Driver) WaitHealthy(ctx context.Context, r *spec.Resource) error {
	c := Of(r)
	if c == nil {
		return fmt.Errorf("%s: not a container resource", r.ID)
	}
	cur, _, _, err := d.find(ctx, c.Name)
	if err != nil {
		return err
	}
	if cur == nil {
		return fmt.Errorf("container %s: missing", c.Name)
	}
	if err := d.waitHealthy(ctx, cur.ID, 0); err != nil {
		return fmt.Errorf("container %s: %w", c.Name, err)
	}
	return nil
}

// Running returns the image that the owned container of name runs, as the
// engine reports it (image@digest when a digest was pinned, else
// image:tag), and the digest it was created from; both are empty when there
// is no such container.
func (d *Driver) Running(ctx context.Context, name string) (ref, digest string, err error) {
	cur, _, _, err := d.find(ctx, name)
	if err != nil || cur == nil || cur.Config == nil {
		return "", "", err
	}
	return cur.Config.Image, cur.Config.Labels[LabelImageDigest], nil
}
