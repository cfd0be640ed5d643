package agent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// stateProbe is a unit driver that reads the state directory when the
// engine reaches a unit, which comes after every file, and fails the unit.
type stateProbe struct {
	store *state.Store
	seen  *state.Inventory
}

var errProbe = errors.New("probe")

func (p stateProbe) CheckApply(context.Context, *spec.Resource, bool) (spec.Change, error) {
	st, err := p.store.Load()
	if err != nil {
		return spec.Change{}, err
	}
	*p.seen = st.Inventory
	return spec.Change{}, errProbe
}

func (p stateProbe) Remove(context.Context, spec.ID, bool) (spec.Change, error) {
	return spec.Change{Action: spec.ActionNone}, nil
}

// TestApplyRecordsCreatedBeforeGoingOn checks that a pass saves the objects
// it created before it goes on to the next kind: were it killed while it
// converges the unit, the state would already own the file, and a later
// pass would prune it once it leaves the desired state.
func TestApplyRecordsCreatedBeforeGoingOn(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{
		"a.yaml": "kind: file\npath: /etc/a\ncontent: a\n",
		"u.yaml": "kind: unit\nname: u.service\ncontent: |\n  [Service]\n  ExecStart=/bin/true\n",
	})
	cfg := sandbox(t, repo)
	var seen state.Inventory
	unit := func(context.Context, converge.Env) (converge.Driver, error) {
		return stateProbe{store: state.New(cfg.StateDir), seen: &seen}, nil
	}

	rep, err := Apply(context.Background(), cfg, nil, ApplyOptions{seams: seams{drivers: withDriver(systemd.Kind, unit)}})
	if err != nil {
		t.Fatalf("Apply() = %v", err)
	}
	if rep.Summary.Create != 1 || rep.Summary.Failed != 1 {
		t.Errorf("Apply() summary = %+v, want the file created and the unit failed", rep.Summary)
	}
	if seen == nil {
		t.Fatal("the unit was never converged")
	}
	if _, ok := seen.Get(spec.ID{Kind: file.Kind, Name: "/etc/a"}); !ok {
		t.Errorf("while the unit converged, the state owned %v; want the file the pass created", seen.IDs())
	}
}

// withDriver returns the default drivers with the one of kind replaced.
func withDriver(kind spec.Kind, f converge.NewDriverFunc) map[spec.Kind]converge.NewDriverFunc {
	m := converge.Drivers()
	m[kind] = f
	return m
}

// TestRecordOwnedBoundsSaves checks that a save of what a pass created
// waits after the previous one, nine times as long as it took, so that
// many quick creations do not each write the whole inventory; and that
// the records are written again once that time has passed.
func TestRecordOwnedBoundsSaves(t *testing.T) {
	t.Parallel()
	store := state.New(t.TempDir())
	record := recordOwned(store, &state.State{Schema: state.Schema}, slog.New(slog.DiscardHandler)).record
	inv := state.Inventory{}
	onDisk := func() []spec.ID {
		t.Helper()
		st, err := store.Load()
		if err != nil {
			t.Fatal(err)
		}
		return st.Inventory.IDs()
	}
	add := func(name string) {
		inv.Set(state.Entry{Kind: file.Kind, Name: name})
		record(inv)
	}

	add("/a") // the first is saved at once
	if got := len(onDisk()); got != 1 {
		t.Fatalf("after the first object, state.json owns %d objects, want 1", got)
	}
	add("/b") // at once after a save that wrote to disk and synced it
	if got := len(onDisk()); got != 1 {
		t.Errorf("right after a save, state.json owns %d objects, want the save skipped (1)", got)
	}
	time.Sleep(time.Second) // far more than nine saves of two entries
	add("/c")
	if got := len(onDisk()); got != 3 {
		t.Errorf("a second after, state.json owns %d objects, want 3", got)
	}
}
