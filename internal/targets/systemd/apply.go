package systemd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// unitState is what the driver reads of a loaded unit.
type unitState struct {
	LoadState     string
	ActiveState   string
	SubState      string
	UnitFileState string
}

func (d *Driver) state(ctx context.Context, name string) (unitState, error) {
	states, err := d.states(ctx, []string{name})
	if err != nil {
		return unitState{}, err
	}
	return states[name], nil
}

// states reads the state of units with two calls, whatever their number:
// cheaper than reading each unit's properties.
func (d *Driver) states(ctx context.Context, names []string) (map[string]unitState, error) {
	out := make(map[string]unitState, len(names))
	if len(names) == 0 {
		return out, nil
	}
	units, err := d.conn.ListUnitsByNamesContext(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("read unit states: %w", err)
	}
	for _, u := range units {
		out[u.Name] = unitState{LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState}
	}
	// UnitFileState as the unit reports it: systemd keeps it with the
	// loaded unit and refreshes it on daemon-reload, so reading it is cheap,
	// unlike listing unit files, which walks every unit directory.
	for _, n := range names {
		if out[n].LoadState != "loaded" {
			continue
		}
		p, err := d.conn.GetUnitPropertyContext(ctx, n, "UnitFileState")
		if err != nil {
			return nil, fmt.Errorf("read unit file state: %w", err)
		}
		st := out[n]
		st.UnitFileState, _ = p.Value.Value().(string)
		out[n] = st
	}
	return out, nil
}

// running reports whether an ActiveState counts as running: active, or on
// its way there.
func running(active string) bool {
	return active == "active" || active == "reloading" || active == "activating"
}

// enabledAs reports whether a UnitFileState satisfies enabled: want. A unit
// without an [Install] section (static, and the like) satisfies either.
func enabledAs(state string, want bool) bool {
	switch state {
	case "enabled", "enabled-runtime", "linked", "linked-runtime", "alias":
		return want
	case "static", "indirect", "generated", "transient":
		return true
	}
	return !want // disabled, masked, bad, or not loaded yet
}

func (d *Driver) unit(r *spec.Resource) (*Unit, error) {
	u := Of(r)
	if u == nil {
		return nil, fmt.Errorf("resource %s: not a unit", r.ID)
	}
	if err := checkName(u.Name); err != nil {
		return nil, err
	}
	for n := range u.Dropins {
		if err := checkDropin(n); err != nil {
			return nil, fmt.Errorf("unit %s: %w", u.Name, err)
		}
	}
	return u, nil
}

// CheckApply compares the unit r with the host: its files, whether it is
// enabled, whether it runs. With apply it writes the files (and reloads
// systemd when one changed), enables or disables the unit, and starts, stops
// or restarts it, waiting for each job's result. A unit whose files changed
// is restarted (reloaded with on_change: reload) when it runs.
//
// Drift, a difference made by hand to the spec last applied, is repaired,
// except with drift: warn (reported, "left alone") and drift: ignore (not
// reported). A new spec is always applied. CheckApply implements
// converge.Driver.
//
// It is the unit's converge in order (files, reload, enablement, run
// state), each step depending on the one before, so it stays whole.
func (d *Driver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	u, err := d.unit(r)
	if err != nil {
		return spec.Change{}, err
	}
	if err := d.acquire(ctx); err != nil {
		return spec.Change{}, err
	}
	locked := true
	defer func() {
		if locked {
			d.release()
		}
	}()
	log := d.log.With("resource", r.ID.String())

	hash := specHash(u)
	plan, err := d.planFiles(u, hash, r.Adopt)
	if err != nil {
		return spec.Change{}, fmt.Errorf("unit %s: %w", u.Name, err)
	}
	// What Prepare wrote in this pass counts as this call's change.
	prep, prepared := d.prepared[u.Name]
	if prepared {
		plan.change.fields = append(slices.Clip(prep.fields), plan.change.fields...)
		plan.change.create = plan.change.create || prep.create
		plan.change.restart = plan.change.restart || prep.restart
		plan.change.drifted = prep.drifted
		if prep.before != nil {
			plan.change.before = prep.before
		}
	}
	// Prepare read every unit's state at once; a difference it shows is
	// read again, since it may be stale by now.
	st, snapped := d.takeSnap(u.Name)
	fields := stateFields(u, st, plan.change)
	if !snapped || len(fields) > len(plan.change.fields) {
		if st, err = d.state(ctx, u.Name); err != nil {
			return spec.Change{}, err
		}
		fields = stateFields(u, st, plan.change)
	}
	if len(fields) == 0 {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	ch := spec.Change{Action: spec.ActionUpdate, Fields: fields, Before: plan.change.before}
	if plan.change.create {
		ch.Action = spec.ActionCreate
	}
	if plan.change.drifted {
		switch r.Drift {
		case spec.DriftIgnore:
			return spec.Change{Action: spec.ActionNone}, nil
		case spec.DriftWarn:
			log.Warn("unit drifted; left alone (drift: warn)", "fields", strings.Join(fields, ", "))
			ch.Fields = append(ch.Fields, "left alone (drift: warn)")
			return ch, nil
		}
	}
	if !apply {
		return ch, nil
	}
	delete(d.prepared, u.Name)

	if !plan.empty() {
		if err := plan.apply(); err != nil {
			return ch, fmt.Errorf("unit %s: %w", u.Name, err)
		}
		if err := d.reload(ctx); err != nil {
			return ch, err
		}
	}
	if u.Enabled != nil {
		if err := d.enable(ctx, u.Name, *u.Enabled); err != nil {
			return ch, err
		}
	}
	// Jobs need no lock: systemd orders them.
	d.release()
	locked = false
	if err := d.converge(ctx, u, plan.change.restart); err != nil {
		return ch, err
	}
	log.Info("unit converged", "change", ch.String())
	return ch, nil
}

// enabledField describes a change of enablement from st to want.
func enabledField(st unitState, fc fileChange, want bool) string {
	from := st.UnitFileState
	if from == "" || fc.create {
		from = "missing"
	}
	return fmt.Sprintf("enabled %s -> %v", from, want)
}

// stateFields lists the file differences and where st differs from u.
func stateFields(u *Unit, st unitState, fc fileChange) []string {
	fields := append([]string(nil), fc.fields...)
	if u.Enabled != nil && !enabledAs(st.UnitFileState, *u.Enabled) {
		fields = append(fields, enabledField(st, fc, *u.Enabled))
	}
	switch {
	case u.State == UnitRunning && !running(st.ActiveState):
		fields = append(fields, fmt.Sprintf("state %s -> running", st.ActiveState))
	case u.State == UnitStopped && running(st.ActiveState):
		fields = append(fields, fmt.Sprintf("state %s -> stopped", st.ActiveState))
	}
	return fields
}

// converge brings the unit's run state to u's, restarting it when its files
// changed and it runs.
func (d *Driver) converge(ctx context.Context, u *Unit, changed bool) error {
	st, err := d.state(ctx, u.Name)
	if err != nil {
		return err
	}
	switch {
	case u.State == UnitStopped:
		if running(st.ActiveState) {
			return d.job(ctx, "stop", u.Name)
		}
	case !running(st.ActiveState):
		if u.State == UnitRunning {
			return d.job(ctx, "start", u.Name)
		}
	case changed:
		if u.Reload {
			return d.job(ctx, "reload-or-restart", u.Name)
		}
		return d.job(ctx, "restart", u.Name)
	}
	return nil
}

func (d *Driver) enable(ctx context.Context, name string, want bool) error {
	st, err := d.state(ctx, name)
	if err != nil {
		return err
	}
	if enabledAs(st.UnitFileState, want) {
		return nil
	}
	if want {
		if _, _, err := d.conn.EnableUnitFilesContext(ctx, []string{name}, false, false); err != nil {
			return fmt.Errorf("enable %s: %w", name, err)
		}
	} else if _, err := d.conn.DisableUnitFilesContext(ctx, []string{name}, false); err != nil {
		return fmt.Errorf("disable %s: %w", name, err)
	}
	// Like systemctl, reload so that systemd sees the new symlinks: its
	// dependency graph and the UnitFileState it reports.
	return d.reload(ctx)
}

func (d *Driver) reload(ctx context.Context) error {
	if err := d.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemd daemon-reload: %w", err)
	}
	d.reloads.Add(1)
	return nil
}

// job runs a start, stop, restart or reload job and waits for its result or
// for ctx. A result other than done is a *JobError.
func (d *Driver) job(ctx context.Context, op, name string) error {
	// Buffered: the library delivers the result while holding a lock, and
	// nobody reads it once ctx is done.
	done := make(chan string, 1)
	var err error
	switch op {
	case "start":
		_, err = d.conn.StartUnitContext(ctx, name, "replace", done)
	case "stop":
		_, err = d.conn.StopUnitContext(ctx, name, "replace", done)
	case "restart":
		_, err = d.conn.RestartUnitContext(ctx, name, "replace", done)
	case "try-restart":
		_, err = d.conn.TryRestartUnitContext(ctx, name, "replace", done)
	case "reload-or-restart":
		_, err = d.conn.ReloadOrRestartUnitContext(ctx, name, "replace", done)
	case "reload-or-try-restart":
		_, err = d.conn.ReloadOrTryRestartUnitContext(ctx, name, "replace", done)
	default:
		return fmt.Errorf("unknown job %q", op)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	select {
	case res := <-done:
		if res == "done" || (res == "skipped" && op != "start") {
			return nil
		}
		return d.jobError(ctx, op, name, res)
	case <-ctx.Done():
		return fmt.Errorf("%s %s: waiting for the job: %w", op, name, ctx.Err())
	}
}

// jobError describes a failed job with the unit's own result.
func (d *Driver) jobError(ctx context.Context, op, name, res string) error {
	e := &JobError{Unit: name, Op: op, JobResult: res}
	if typ := unitType(name); typ != "" {
		if props, err := d.conn.GetUnitTypePropertiesContext(ctx, name, typ); err == nil {
			e.UnitResult, _ = props["Result"].(string)
			if st, ok := props["ExecMainStatus"].(int32); ok {
				e.ExitStatus = int(st)
			}
		}
	}
	return e
}

// unitType is the D-Bus interface suffix of a unit type that has a Result.
func unitType(name string) string {
	i := strings.LastIndexByte(name, '.')
	switch t := name[i+1:]; t {
	case "service", "socket", "timer", "mount", "automount", "swap", "path":
		return strings.ToUpper(t[:1]) + t[1:]
	}
	return ""
}

// Prepare readies a pass over rs. With apply it writes the changed files of
// every unit and reloads systemd once, then enables or disables the units it
// wrote and reloads once more, so that a pass that changes many units
// reloads at most twice; each unit's CheckApply then reports what Prepare
// did and restarts the unit. It skips what CheckApply would not change
// (drift: warn and ignore) and units whose files are in the way, which
// their CheckApply reports. Either way it reads the state of every unit at
// once, which makes a pass of unchanged units cheap.
func (d *Driver) Prepare(ctx context.Context, rs []*spec.Resource, apply bool) error {
	if err := d.acquire(ctx); err != nil {
		return err
	}
	defer d.release()
	changed := false
	var errs []error
	var names []string
	wrote := map[string]*Unit{}
	for _, r := range rs {
		if Of(r) != nil && checkName(Of(r).Name) == nil {
			names = append(names, Of(r).Name)
		}
	}
	for _, r := range rs {
		if !apply {
			break
		}
		if r.ID.Kind != Kind {
			continue
		}
		u, err := d.unit(r)
		if err != nil {
			continue
		}
		plan, err := d.planFiles(u, specHash(u), r.Adopt)
		if err != nil || plan.empty() {
			continue
		}
		if plan.change.drifted && (r.Drift == spec.DriftWarn || r.Drift == spec.DriftIgnore) {
			continue
		}
		if err := plan.apply(); err != nil {
			errs = append(errs, fmt.Errorf("unit %s: %w", u.Name, err))
			continue
		}
		prev := d.prepared[u.Name]
		plan.change.fields = append(slices.Clip(prev.fields), plan.change.fields...)
		plan.change.create = plan.change.create || prev.create
		plan.change.restart = plan.change.restart || prev.restart
		if plan.change.before == nil {
			plan.change.before = prev.before
		}
		d.prepared[u.Name] = plan.change
		wrote[u.Name] = u
		changed = true
	}
	reloaded := false
	if changed {
		if err := d.reload(ctx); err != nil {
			errs = append(errs, err)
		} else {
			reloaded = true
		}
	}
	states, err := d.states(ctx, names)
	if err == nil && reloaded && d.enableWritten(ctx, wrote, states) {
		states, err = d.states(ctx, names)
	}
	if err == nil {
		now := time.Now()
		snap := make(map[string]snapEntry, len(states))
		for n, st := range states {
			snap[n] = snapEntry{st, now}
		}
		d.snapMu.Lock()
		d.snap = snap
		d.snapMu.Unlock()
	} else {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// enableWritten enables and disables, in one call each and one reload, the
// units whose files Prepare just wrote and whose enablement differs from
// their spec in states: a pass that adds many enabled units reloads systemd
// twice, not once per unit. The change is recorded for each unit's
// CheckApply. A call that fails is left to each unit's CheckApply, which
// enables or disables its unit on its own and reports its error. It
// reports whether it changed anything.
func (d *Driver) enableWritten(ctx context.Context, wrote map[string]*Unit, states map[string]unitState) bool {
	names := slices.Sorted(maps.Keys(wrote))
	var enable, disable []string
	for _, n := range names {
		u := wrote[n]
		if u.Enabled == nil || enabledAs(states[n].UnitFileState, *u.Enabled) {
			continue
		}
		if *u.Enabled {
			enable = append(enable, n)
		} else {
			disable = append(disable, n)
		}
	}
	var done []string
	if len(enable) > 0 {
		if _, _, err := d.conn.EnableUnitFilesContext(ctx, enable, false, false); err != nil {
			d.log.Warn("enable units at once; each is enabled on its own", "units", strings.Join(enable, " "), "err", err)
		} else {
			done = append(done, enable...)
		}
	}
	if len(disable) > 0 {
		if _, err := d.conn.DisableUnitFilesContext(ctx, disable, false); err != nil {
			d.log.Warn("disable units at once; each is disabled on its own", "units", strings.Join(disable, " "), "err", err)
		} else {
			done = append(done, disable...)
		}
	}
	if len(done) == 0 {
		return false
	}
	// As after each enable: systemd sees the new symlinks only then. Until
	// it has, each unit's CheckApply still finds the unit to enable.
	if err := d.reload(ctx); err != nil {
		return true
	}
	for _, n := range done {
		prep := d.prepared[n]
		prep.fields = append(prep.fields, enabledField(states[n], prep, *wrote[n].Enabled))
		d.prepared[n] = prep
	}
	return true
}

// Remove stops and disables the owned unit id, removes its files and its
// owned drop-ins, and reloads systemd. A unit file without the marker, and
// drop-ins without it, are never touched. The originals of what adopt took
// over are put back instead of removed: an adopted unit file is restored
// and the unit, left enabled or not as it is, is restarted if it runs.
// Remove implements converge.Driver.
//
// Its steps (stop, disable, restore or remove each file, reload) must run
// in this order and share what was adopted, so it stays one function.
func (d *Driver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	name := id.Name
	if err := checkName(name); err != nil {
		return spec.Change{}, err
	}
	if err := d.acquire(ctx); err != nil {
		return spec.Change{}, err
	}
	defer d.release()
	delete(d.prepared, name)

	path := d.unitPath(name)
	data, err := readRegular(path)
	if errors.Is(err, ErrNotOwned) {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return spec.Change{}, fmt.Errorf("unit %s: read unit file: %w", name, err)
	}
	if exists {
		if owned, _, _ := parseMarker(data); !owned {
			return spec.Change{Action: spec.ActionNone}, nil
		}
	}
	dropins, err := d.ownedDropins(name)
	if err != nil {
		return spec.Change{}, fmt.Errorf("unit %s: %w", name, err)
	}
	orig, origDropins, err := d.originals(name)
	if err != nil {
		return spec.Change{}, fmt.Errorf("unit %s: %w", name, err)
	}
	if !exists && len(dropins) == 0 && orig == nil && len(origDropins) == 0 {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	plan := d.removePlan(name, exists, dropins, orig, origDropins)
	ch := spec.Change{Action: spec.ActionDelete, Fields: plan.change.fields}
	if !apply {
		return ch, nil
	}
	if exists && orig == nil {
		st, err := d.state(ctx, name)
		if err != nil {
			return ch, err
		}
		if running(st.ActiveState) {
			if err := d.job(ctx, "stop", name); err != nil {
				return ch, err
			}
		}
		if _, err := d.conn.DisableUnitFilesContext(ctx, []string{name}, false); err != nil {
			return ch, fmt.Errorf("disable %s: %w", name, err)
		}
	}
	if err := plan.apply(); err != nil {
		return ch, fmt.Errorf("unit %s: %w", name, err)
	}
	if err := d.reload(ctx); err != nil {
		return ch, err
	}
	if orig != nil || len(origDropins) > 0 {
		if err := d.forgetOriginals(name); err != nil {
			return ch, fmt.Errorf("unit %s: %w", name, err)
		}
		// The original's configuration is back: a running unit uses it
		// only once restarted. One that is not loaded (its file was
		// Outpost's) has nothing to restart.
		st, err := d.state(ctx, name)
		if err != nil {
			return ch, err
		}
		if running(st.ActiveState) {
			if err := d.job(ctx, "restart", name); err != nil {
				return ch, err
			}
		}
	} else {
		// A unit that failed before it left keeps no failed state behind.
		_ = d.conn.ResetFailedUnitContext(ctx, name)
	}
	d.log.Info("unit removed", "resource", id.String())
	return ch, nil
}

// removePlan removes the owned files of name and puts back the originals
// of those that adopt took over.
func (d *Driver) removePlan(name string, exists bool, dropins []string, orig []byte, origDropins map[string][]byte) filePlan {
	var p filePlan
	switch {
	case orig != nil:
		p.change.fields = append(p.change.fields, "unit file restored")
		p.writes = append(p.writes, fileWrite{d.unitPath(name), orig})
	case exists:
		p.change.fields = append(p.change.fields, "unit file")
		p.removes = append(p.removes, d.unitPath(name))
	}
	for _, n := range dropins {
		if _, ok := origDropins[n]; !ok {
			p.change.fields = append(p.change.fields, "drop-in "+n)
			p.removes = append(p.removes, d.dropinPath(name, n))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(origDropins)) {
		p.change.fields = append(p.change.fields, "drop-in "+n+" restored")
		p.writes = append(p.writes, fileWrite{d.dropinPath(name, n), origDropins[n]})
	}
	if len(origDropins) == 0 {
		p.rmdir = d.dropinDir(name)
	}
	return p
}

// Restart restarts the unit r because a file it names in restart_on
// changed: reloads it instead with on_change: reload, starts it when its
// state is running, and leaves it alone when its state is stopped or it is
// not running and its state is unset. It implements converge.Restarter.
func (d *Driver) Restart(ctx context.Context, r *spec.Resource) error {
	u, err := d.unit(r)
	if err != nil {
		return err
	}
	op := ""
	switch u.State {
	case UnitStopped:
		return nil
	case UnitRunning:
		op = "restart"
		if u.Reload {
			op = "reload-or-restart"
		}
	default:
		op = "try-restart"
		if u.Reload {
			op = "reload-or-try-restart"
		}
	}
	if err := d.job(ctx, op, u.Name); err != nil {
		return err
	}
	d.log.Info("unit restarted for restart_on", "resource", r.ID.String())
	return nil
}
