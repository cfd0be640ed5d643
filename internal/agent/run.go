package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// Validate loads the repository in the directory dir and reports every
// validation error. The error is for a repository that cannot be read at
// all; an invalid one is a report with Valid false.
//
// A repository with no manifest is invalid unless allowEmpty: it is almost
// always the wrong directory.
func Validate(ctx context.Context, dir string, allowEmpty bool) (*ValidateReport, error) {
	snap, err := dirSnapshot(dir)
	if err != nil {
		return nil, err
	}
	repo, err := spec.Load(snap.FS, spec.Options{})
	if err != nil {
		ps, ok := problems(err, snap.Display)
		if !ok {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
		return &ValidateReport{Errors: ps}, nil
	}
	resources, files := repo.Stats()
	if files == 0 && !allowEmpty {
		ps, _ := problems(spec.Errors{emptyError(repo, spec.Host{})}, snap.Display)
		return &ValidateReport{Errors: ps}, nil
	}
	return &ValidateReport{Valid: true, Resources: resources, Files: files, Errors: []Problem{}}, nil
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// NoWait skips the health wait of what a new revision changed (apply
	// --wait=false): a failed resource still fails the pass, but nothing
	// is rolled back for its health.
	NoWait bool

	seams seams
}

// Diff reports what Apply would change on this host, and changes nothing:
// no state, no note.
func Diff(ctx context.Context, cfg *Config, log *slog.Logger) (*Report, error) {
	return onePass(ctx, cfg, log, passOptions{fallback: true}, seams{})
}

// Apply converges this host once to the source's current revision, as one
// pass of the daemon does: it waits for what changed to become healthy and
// rolls back to the last good revision when it does not, and records the
// outcome in the state directory and in a status note.
func Apply(ctx context.Context, cfg *Config, log *slog.Logger, o ApplyOptions) (*Report, error) {
	return onePass(ctx, cfg, log, passOptions{apply: true, wait: !o.NoWait, fallback: true}, o.seams)
}

// onePass runs a single pass, dry or not: diff and apply share every stage.
func onePass(ctx context.Context, cfg *Config, log *slog.Logger, o passOptions, s seams) (*Report, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.apply {
		// A key that others could read or replace is refused before it
		// is used.
		if err := CheckCredentials(cfg); err != nil {
			return nil, err
		}
		lock, err := state.Lock(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		defer lock.Unlock()
		if _, err := EnsureSecretKey(cfg); err != nil {
			log.Warn("the host's age key cannot be made; encrypted files will not decrypt", "err", err)
		}
	}
	p, err := newRunner(cfg, log.With("host", cfg.Host.Name), s)
	if err != nil {
		return nil, err
	}
	defer p.close()
	p.pollDue = true
	if p.src, err = p.seams.newSource(cfg, p.log); err != nil {
		return nil, err
	}
	if o.apply {
		// Status notes are a report, not a duty: without them the host
		// still converges.
		if p.notes, err = newReporter(cfg, p.log, p.seams.newPusher); err != nil {
			p.log.Warn("status notes disabled", "err", err)
		}
	}
	rev, pollErr := p.src.Poll(ctx)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	tip := polled{rev: rev, err: pollErr}
	if pollErr == nil && o.apply {
		g := gate(ctx, p.gateInput(), p.src, rev)
		tip.gate = &g
	}
	rep, err := p.pass(ctx, tip, o)
	if err = errors.Join(err, p.saveErr); err != nil {
		return nil, err
	}
	p.pushNotes(ctx)
	return rep, nil
}

// desiredState loads the snapshot and renders it for this host, confined to
// the allowed paths. Its errors are spec.Errors when the repository is at
// fault.
func desiredState(snap *Snapshot, cfg *Config) (*spec.State, error) {
	keys, _ := hostKeys(cfg)
	repo, err := spec.Load(snap.FS, spec.Options{Decrypter: keys})
	if err != nil {
		return nil, err
	}
	host := spec.Host{Name: cfg.Host.Name, Labels: cfg.Host.Labels}
	desired, err := repo.Render(host)
	if err != nil {
		return nil, err
	}
	seal(desired, cfg.StateDir)
	if len(desired.Resources) == 0 && !cfg.AllowEmpty {
		return nil, spec.Errors{emptyError(repo, host)}
	}
	// Every confinement is reported at once, so that one round fixes the
	// repository.
	var es spec.Errors
	for _, err := range []error{
		checkAllowedPaths(desired, cfg.AllowedPaths), newContainerPolicy(cfg).check(desired),
		checkKinds(desired, cfg.AllowKinds), checkUnitNames(desired, cfg.Units.AllowedNames),
		checkAgentFiles(desired, cfg), docker.SetUpdateMode(desired),
	} {
		var more spec.Errors
		if errors.As(err, &more) {
			es = append(es, more...)
		}
	}
	if len(es) > 0 {
		es.Sort()
		return nil, es
	}
	mountSecrets(desired, cfg.Secrets.runDir())
	return desired, nil
}

// allowEmptyHint ends the errors about an empty desired state.
const allowEmptyHint = "pass --allow-empty if an empty desired state is meant"

// emptyError says why the desired state of host is empty: almost always a
// mistake (the wrong --source, a selector with a typo, a host's label
// missing), which would otherwise print "in sync" and exit 0.
func emptyError(repo *spec.Repo, host spec.Host) *spec.Error {
	if _, files := repo.Stats(); files == 0 {
		return &spec.Error{Pos: spec.Pos{File: "."}, Msg: "no manifests (*.yaml) in the repository; " + allowEmptyHint}
	}
	labels := make([]string, 0, len(host.Labels))
	for k, v := range host.Labels {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	who := fmt.Sprintf("host %q (labels: %s)", host.Name, strings.Join(labels, ","))
	if len(labels) == 0 {
		who = fmt.Sprintf("host %q (no labels)", host.Name)
	}
	if !repo.Selects(host) {
		return &spec.Error{Pos: spec.Pos{File: spec.FleetFile}, Msg: "no target selects " + who + "; " + allowEmptyHint}
	}
	return &spec.Error{Pos: spec.Pos{File: spec.FleetFile}, Msg: "the targets that select " + who + " hold no resources; " + allowEmptyHint}
}

// dockerSocketDirs are the paths whose bind mount hands a container the
// Docker engine's socket: the socket itself and every directory above it.
var dockerSocketDirs = []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/var", "/"}

// checkContainers refuses the whole desired state when a container asks for
// what the configuration does not allow: the Docker socket, or privileges
// that reach the host. Like allowed paths, it is checked before anything
// changes.
func checkContainers(desired *spec.State, allow ContainersConfig) error {
	var errs spec.Errors
	refuse := func(r *spec.Resource, what, option string) {
		errs = append(errs, &spec.Error{Pos: r.Pos, Msg: fmt.Sprintf(
			"%s: %s is not allowed on this host (set containers.%s: true in the agent's configuration to allow it)", r.ID, what, option)})
	}
	for _, r := range desired.Resources {
		c := docker.Of(r)
		if r.ID.Kind != docker.Kind || c == nil {
			continue
		}
		if !allow.AllowDockerSocket {
			for _, v := range c.Volumes {
				if !v.Named && slices.Contains(dockerSocketDirs, v.Source) {
					refuse(r, fmt.Sprintf("a bind mount of %s (the Docker socket)", v.Source), "allow_docker_socket")
				}
			}
		}
		if allow.AllowPrivileged {
			continue
		}
		if c.Privileged {
			refuse(r, "privileged: true", "allow_privileged")
		}
		if c.NetworkMode == "host" {
			refuse(r, "network_mode: host", "allow_privileged")
		}
		if len(c.CapAdd) > 0 {
			refuse(r, "cap_add", "allow_privileged")
		}
		if len(c.Devices) > 0 {
			refuse(r, "devices", "allow_privileged")
		}
	}
	if len(errs) == 0 {
		return nil
	}
	errs.Sort()
	return errs
}

// refuseEach refuses the whole desired state with an error at each
// resource for which why says why; why returns "" for a resource it allows.
func refuseEach(desired *spec.State, why func(r *spec.Resource) string) error {
	var errs spec.Errors
	for _, r := range desired.Resources {
		if msg := why(r); msg != "" {
			errs = append(errs, &spec.Error{Pos: r.Pos, Msg: r.ID.String() + ": " + msg})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	errs.Sort()
	return errs
}

// checkKinds refuses the whole desired state when it holds a resource of a
// kind that allow_kinds leaves out; an empty list allows every kind.
func checkKinds(desired *spec.State, allowed []string) error {
	if len(allowed) == 0 {
		return nil
	}
	return refuseEach(desired, func(r *spec.Resource) string {
		if slices.Contains(allowed, string(r.ID.Kind)) {
			return ""
		}
		return fmt.Sprintf("kind %s is not allowed on this host (allow_kinds: %s in the agent's configuration)", r.ID.Kind, strings.Join(allowed, ", "))
	})
}

// checkAgentFiles refuses the whole desired state when a file resource
// would replace the agent's configuration (where it was read from, or the
// default path, which a later start would read), a key or trust file it
// names, or lie in its state directory: the policy there is the host's, and
// no commit may change it. Under --root, files go below the root and reach
// none of them.
func checkAgentFiles(desired *spec.State, cfg *Config) error {
	if cfg.Root != "" {
		return nil
	}
	a, v := cfg.Source.Auth, cfg.Source.Verify
	own := map[string]bool{}
	for _, f := range []string{cfg.File, DefaultConfigPath, a.SSHKeyFile, a.KnownHostsFile, a.PasswordFile,
		a.TokenFile, a.CAFile, v.AllowedSigners, v.OpenPGPKeyring} {
		if f != "" {
			own[filepath.Clean(f)] = true
		}
	}
	return refuseEach(desired, func(r *spec.Resource) string {
		if r.ID.Kind != file.Kind || file.Of(r) == nil {
			return ""
		}
		p := file.Of(r).Path
		if own[p] || (cfg.StateDir != "" && underAny(p, []string{filepath.Clean(cfg.StateDir)})) {
			return "the agent's own configuration, keys and state are not managed by a commit"
		}
		return ""
	})
}

// checkUnitNames refuses the whole desired state when a unit's name matches
// none of the patterns; an empty list allows every name.
func checkUnitNames(desired *spec.State, patterns []string) error {
	if len(patterns) == 0 {
		return nil
	}
	return refuseEach(desired, func(r *spec.Resource) string {
		match := func(p string) bool { ok, _ := path.Match(p, r.ID.Name); return ok }
		if r.ID.Kind != systemd.Kind || slices.ContainsFunc(patterns, match) {
			return ""
		}
		return fmt.Sprintf("the name matches none of this host's units.allowed_names (%s)", strings.Join(patterns, ", "))
	})
}

// checkAllowedPaths refuses the whole desired state when a file resource
// lies outside the allowed prefixes: applying the rest would leave the host
// half way.
func checkAllowedPaths(desired *spec.State, allowed []string) error {
	if len(allowed) == 0 {
		return nil
	}
	var errs spec.Errors
	for _, r := range desired.Resources {
		if r.ID.Kind != file.Kind || file.Of(r) == nil {
			continue
		}
		if !underAny(file.Of(r).Path, allowed) {
			errs = append(errs, &spec.Error{Pos: r.Pos, Msg: fmt.Sprintf(
				"%s: path is outside the allowed paths of this host (%s)", r.ID, strings.Join(allowed, ", "))})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	errs.Sort()
	return errs
}

func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || p == "/" || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// problems converts validation errors into problems positioned relative to
// display. ok is false when err is not a validation error.
func problems(err error, display string) (ps []Problem, ok bool) {
	var es spec.Errors
	if !errors.As(err, &es) {
		return nil, false
	}
	ps = make([]Problem, 0, len(es))
	for _, e := range es {
		f := e.Pos.File
		if display != "" && f != "" {
			f = filepath.Join(display, f)
		} else if f == "" {
			f = display
		}
		ps = append(ps, Problem{File: f, Line: e.Pos.Line, Col: e.Pos.Col, Message: e.Msg})
	}
	return ps, true
}

// buildDrivers returns the drivers of the kinds that are desired or owned,
// reusing those in have and building the others. A driver that cannot be
// built (no system bus, no Docker engine) stands in as one that fails each
// of its resources with the reason, so the other kinds still converge.
//
// The drivers read st's inventory when they ask whether an object is
// recorded as Outpost's; only the pass that owns st changes it, after the
// drivers' calls of that pass have returned.
func buildDrivers(ctx context.Context, cfg *Config, log *slog.Logger, desired *spec.State, st *state.State, have map[spec.Kind]converge.Driver, factories map[spec.Kind]converge.NewDriverFunc) map[spec.Kind]converge.Driver {
	need := map[spec.Kind]bool{}
	for _, r := range desired.Resources {
		need[r.ID.Kind] = true
	}
	// An entry without a hash is a create that failed or was cut short:
	// what is at its name may be Outpost's or not, and only a driver's mark
	// can tell.
	recorded := func(id spec.ID) bool {
		e, ok := st.Inventory.Get(id)
		return ok && e.Hash != ""
	}
	for _, id := range st.Inventory.IDs() {
		need[id.Kind] = true
	}
	out := map[spec.Kind]converge.Driver{}
	for _, k := range spec.Kinds() {
		// A driver that was unavailable is tried again: the engine may
		// have come back.
		if d, ok := have[k]; ok {
			if !stale(d) {
				out[k] = d
				continue
			}
			if _, down := d.(unavailable); !down {
				// Its connection died (the system bus restarted):
				// it is built again below.
				log.Warn("driver lost its connection; reconnecting", "kind", k)
				closeDrivers(map[spec.Kind]converge.Driver{k: d})
			}
		}
		mk, ok := factories[k]
		if !need[k] || !ok {
			continue
		}
		d, err := mk(ctx, converge.Env{Root: cfg.Root, StateDir: cfg.StateDir, Logger: log.With("kind", string(k)), Recorded: recorded})
		if err != nil {
			log.Warn("driver unavailable", "kind", k, "err", err)
			out[k] = unavailable{kind: k, err: err}
			continue
		}
		out[k] = d
	}
	return out
}

// connected is a driver that holds a connection which can die under it.
type connected interface{ Connected() bool }

// stale reports whether a driver must be built again: it could not be built,
// or its connection died.
func stale(d converge.Driver) bool {
	if _, down := d.(unavailable); down {
		return true
	}
	c, ok := d.(connected)
	return ok && !c.Connected()
}

// newEngine is the engine of apply, diff and the daemon over drv; owned,
// when set, records the objects that a pass creates as it goes.
func newEngine(drv map[spec.Kind]converge.Driver, log *slog.Logger, owned func(state.Inventory)) *converge.Engine {
	return converge.New(drv, converge.Options{Logger: log, Timeout: resourceTimeout, Owned: owned})
}

// recordOwned returns the recorder that saves st with the inventory that a
// pass has so far, as soon as the pass has created an object, and leaves
// st itself alone: a pass killed, or whose final save fails, before its end
// still leaves what it created in the state, to be pruned when it leaves
// the desired state.
//
// A save writes the whole inventory, so saving after each of many quick
// creations (a first converge of thousands of files) would cost the square
// of their number. After a save, the next waits until nine times as long
// as that save took has passed: the records cost at most a tenth of the
// pass. What is created meanwhile is saved when that time has passed, by a
// timer, even when the pass is then busy with one slow object (a unit that
// takes minutes to start): it is never left unrecorded for longer.
func recordOwned(store *state.Store, st *state.State, log *slog.Logger) *ownedRecorder {
	return &ownedRecorder{store: store, st: st, log: log}
}

// ownedRecorder is recordOwned's; record is the engine's Owned, and
// settle ends a pass's records before the pass saves the state itself.
type ownedRecorder struct {
	store *state.Store
	st    *state.State
	log   *slog.Logger

	mu      sync.Mutex
	next    time.Time
	pending state.Inventory // created since the last save, not saved yet
	timer   *time.Timer
}

func (r *ownedRecorder) record(inv state.Inventory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Before(r.next) {
		// The engine goes on with its inventory: the timer saves a
		// copy.
		r.pending = maps.Clone(inv)
		if r.timer == nil {
			r.timer = time.AfterFunc(r.next.Sub(now), r.flush)
		}
		return
	}
	r.pending = nil
	r.save(inv)
}

func (r *ownedRecorder) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	if r.pending != nil {
		inv := r.pending
		r.pending = nil
		r.save(inv)
	}
}

// save writes inv with the rest of st; the caller holds r.mu.
func (r *ownedRecorder) save(inv state.Inventory) {
	start := time.Now()
	rec := *r.st
	rec.Inventory = inv // only read, by Save, before this returns
	if err := r.store.Save(&rec); err != nil {
		r.log.Warn("what this pass created is not recorded yet", "err", err)
	}
	end := time.Now()
	r.next = end.Add(9 * end.Sub(start))
}

// settle drops what waits for the timer: the pass has ended and saves its
// whole state. Once it returns, no save of the recorder runs.
func (r *ownedRecorder) settle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.pending = nil
}

// closeDrivers releases the drivers' connections.
func closeDrivers(ds map[spec.Kind]converge.Driver) {
	for _, d := range ds {
		if c, ok := d.(io.Closer); ok {
			c.Close()
		}
	}
}

// unavailable is the driver of a kind whose client could not be built.
type unavailable struct {
	kind spec.Kind
	err  error
}

func (u unavailable) CheckApply(context.Context, *spec.Resource, bool) (spec.Change, error) {
	return spec.Change{}, fmt.Errorf("%w for kind %s on this host: %w", converge.ErrNoDriver, u.kind, u.err)
}

func (u unavailable) Remove(context.Context, spec.ID, bool) (spec.Change, error) {
	return spec.Change{}, fmt.Errorf("%w for kind %s on this host: %w", converge.ErrNoDriver, u.kind, u.err)
}

// fillChanges turns the engine's result into the report's changes: every
// item that changed something or failed.
func fillChanges(rep *Report, res *converge.Result, desired *spec.State) {
	rep.secrets = status.Secrets(desired)
	for _, it := range res.Items {
		if !it.Changed() && it.Err == nil {
			continue
		}
		c := Change{
			Kind:      string(it.ID.Kind),
			Name:      it.ID.Name,
			Action:    string(it.Change.Action),
			Fields:    it.Change.Fields,
			Prune:     it.Prune,
			Restarted: it.Restarted,
			Skipped:   it.Skipped,
		}
		src := diffSource{before: it.Change.Before}
		if !it.Prune {
			src.desired = desired.Lookup(it.ID)
		}
		if c.Action == "" {
			c.Action = string(spec.ActionNone)
		}
		if c.Fields == nil {
			c.Fields = []string{}
		}
		if it.Err != nil {
			c.Error = it.Err.Error()
			rep.Summary.Failed++
		} else {
			switch it.Change.Action {
			case spec.ActionCreate:
				rep.Summary.Create++
			case spec.ActionUpdate:
				rep.Summary.Update++
			case spec.ActionDelete:
				rep.Summary.Delete++
			}
			if it.Restarted {
				rep.Summary.Restart++
			}
		}
		rep.Changes = append(rep.Changes, c)
		rep.sources = append(rep.sources, src)
	}
}

// sameRecord reports whether a and b record the same applied state.
func sameRecord(a, b *state.State) bool {
	return a.Commit == b.Commit && a.LastGood == b.LastGood && a.RolledBack == b.RolledBack &&
		maps.EqualFunc(a.Inventory, b.Inventory, func(x, y state.Entry) bool {
			return x.Kind == y.Kind && x.Name == y.Name && x.Hash == y.Hash &&
				x.NoPrune == y.NoPrune && x.AppliedAt.Equal(y.AppliedAt)
		})
}
