package converge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// host is a fake host shared by the fake drivers of every kind: the object of
// each ID holds the hash of the resource last applied to it, and every call
// that the engine makes is logged in order.
type host struct {
	mu      sync.Mutex
	objects map[spec.ID]string
	calls   []string

	fail  map[spec.ID]error
	panic map[spec.ID]bool
	block map[spec.ID]bool // wait for ctx to end
	// cancel is called during the call for an ID.
	cancel map[spec.ID]context.CancelFunc
}

func newHost() *host {
	return &host{
		objects: map[spec.ID]string{},
		fail:    map[spec.ID]error{},
		panic:   map[spec.ID]bool{},
		block:   map[spec.ID]bool{},
		cancel:  map[spec.ID]context.CancelFunc{},
	}
}

func (h *host) log(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, fmt.Sprintf(format, args...))
}

func (h *host) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

func (h *host) Objects() map[spec.ID]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[spec.ID]string{}
	for k, v := range h.objects {
		out[k] = v
	}
	return out
}

func (h *host) misbehave(ctx context.Context, id spec.ID) error {
	if c := h.cancel[id]; c != nil {
		c()
		return ctx.Err()
	}
	if h.panic[id] {
		panic("boom " + id.String())
	}
	if h.block[id] {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.fail[id]
}

// fakeDriver is a converge.Driver over a fake host.
type fakeDriver struct{ h *host }

func (d fakeDriver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	d.h.log("check %s apply=%v", r.ID, apply)
	if err := d.h.misbehave(ctx, r.ID); err != nil {
		return spec.Change{}, err
	}
	want := r.Hash()
	d.h.mu.Lock()
	defer d.h.mu.Unlock()
	got, ok := d.h.objects[r.ID]
	c := spec.Change{Action: spec.ActionNone}
	switch {
	case !ok:
		c.Action = spec.ActionCreate
	case got != want:
		c = spec.Change{Action: spec.ActionUpdate, Fields: []string{"content"}}
	}
	if apply {
		d.h.objects[r.ID] = want
	}
	return c, nil
}

func (d fakeDriver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	d.h.log("remove %s apply=%v", id, apply)
	if err := d.h.misbehave(ctx, id); err != nil {
		return spec.Change{}, err
	}
	d.h.mu.Lock()
	defer d.h.mu.Unlock()
	if _, ok := d.h.objects[id]; !ok {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	if apply {
		delete(d.h.objects, id)
	}
	return spec.Change{Action: spec.ActionDelete}, nil
}

// restartDriver is a fakeDriver that can restart.
type restartDriver struct{ fakeDriver }

func (d restartDriver) Restart(ctx context.Context, r *spec.Resource) error {
	d.h.log("restart %s", r.ID)
	return d.h.fail[spec.ID{Kind: "restart", Name: r.ID.Name}]
}

func drivers(h *host) map[spec.Kind]converge.Driver {
	return map[spec.Kind]converge.Driver{
		file.Kind:    fakeDriver{h},
		systemd.Kind: restartDriver{fakeDriver{h}},
		docker.Kind:  restartDriver{fakeDriver{h}},
	}
}

// res builds a resource from "kind:name" and options.
func res(id string, opts ...func(*spec.Resource)) *spec.Resource {
	pid, err := spec.ParseID(id)
	if err != nil {
		panic(err)
	}
	r := &spec.Resource{ID: pid, Prune: true}
	switch pid.Kind {
	case file.Kind:
		r.Object = &file.File{Path: pid.Name, Content: []byte("v1"), Mode: 0o644}
	case systemd.Kind:
		r.Object = &systemd.Unit{Name: pid.Name, Content: []byte("v1")}
	case docker.Kind:
		r.Object = &docker.Container{Name: pid.Name, Image: "busybox", Tag: "v1"}
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func after(ids ...string) func(*spec.Resource) {
	return func(r *spec.Resource) {
		for _, s := range ids {
			id, _ := spec.ParseID(s)
			r.After = append(r.After, id)
		}
	}
}

func restartOn(ids ...string) func(*spec.Resource) {
	return func(r *spec.Resource) {
		for _, s := range ids {
			id, _ := spec.ParseID(s)
			r.RestartOn = append(r.RestartOn, id)
		}
	}
}

// version changes what the resource's object should hold.
func version(v string) func(*spec.Resource) {
	return func(r *spec.Resource) {
		switch {
		case file.Of(r) != nil:
			file.Of(r).Content = []byte(v)
		case systemd.Of(r) != nil:
			systemd.Of(r).Content = []byte(v)
		case docker.Of(r) != nil:
			docker.Of(r).Tag = v
		}
	}
}

func noPrune(r *spec.Resource) { r.Prune = false }

func id(s string) spec.ID {
	i, err := spec.ParseID(s)
	if err != nil {
		panic(err)
	}
	return i
}

func desired(rs ...*spec.Resource) *spec.State { return &spec.State{Resources: rs} }

// synced puts every resource of d on the host as applied and returns the
// matching inventory.
func synced(h *host, d *spec.State) state.Inventory {
	inv := state.Inventory{}
	for _, r := range d.Resources {
		h.objects[r.ID] = r.Hash()
		inv.Set(state.Entry{Kind: r.ID.Kind, Name: r.ID.Name, Hash: r.Hash(), NoPrune: !r.Prune})
	}
	return inv
}

// summary is an Item reduced to what the tests compare.
type summary struct {
	ID        string
	Action    spec.Action
	Err       string // the sentinel it matches, or "error", or ""
	Skipped   bool
	Restarted bool
	Prune     bool
}

var sentinels = []error{converge.ErrDependency, converge.ErrNoDriver, converge.ErrPanic, converge.ErrTimeout, converge.ErrCycle, errInjected}

var errInjected = errors.New("injected")

func summarize(items []converge.Item) []summary {
	out := make([]summary, 0, len(items))
	for _, it := range items {
		s := summary{ID: it.ID.String(), Action: it.Change.Action, Skipped: it.Skipped, Restarted: it.Restarted, Prune: it.Prune}
		if it.Err != nil {
			s.Err = "error"
			for _, e := range sentinels {
				if errors.Is(it.Err, e) {
					s.Err = e.Error()
					break
				}
			}
		}
		out = append(out, s)
	}
	return out
}

func TestConvergeOrder(t *testing.T) {
	tests := []struct {
		name string
		rs   []*spec.Resource
		want []string
	}{
		{
			name: "kinds",
			rs:   []*spec.Resource{res("container:c"), res("unit:u"), res("file:/b"), res("file:/a")},
			want: []string{"file:/b", "file:/a", "unit:u", "container:c"},
		},
		{
			name: "after within a kind",
			rs:   []*spec.Resource{res("file:/a", after("file:/c")), res("file:/b"), res("file:/c")},
			want: []string{"file:/b", "file:/c", "file:/a"},
		},
		{
			name: "after against kind order",
			rs: []*spec.Resource{
				res("container:web", after("unit:b")), res("unit:a"), res("unit:b"),
				res("file:/z"), res("file:/a", after("unit:a")),
			},
			want: []string{"file:/z", "unit:a", "file:/a", "unit:b", "container:web"},
		},
		{
			name: "file after a container",
			rs:   []*spec.Resource{res("file:/a", after("container:c")), res("container:c"), res("unit:u")},
			want: []string{"unit:u", "container:c", "file:/a"},
		},
		{
			name: "restart_on orders too",
			rs:   []*spec.Resource{res("file:/a", restartOn("file:/b")), res("file:/b")},
			want: []string{"file:/b", "file:/a"},
		},
	}
	for _, tt := range tests {
		for _, workers := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/workers=%d", tt.name, workers), func(t *testing.T) {
				h := newHost()
				res, err := converge.New(drivers(h), converge.Options{Workers: workers}).Converge(context.Background(), desired(tt.rs...), nil, true)
				if err != nil {
					t.Fatalf("Converge() error = %v", err)
				}
				var got []string
				for _, it := range res.Items {
					got = append(got, it.ID.String())
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Converge() order mismatch (-want +got):\n%s", diff)
				}
				var calls []string
				for _, s := range tt.want {
					calls = append(calls, "check "+s+" apply=true")
				}
				if diff := cmp.Diff(calls, h.Calls(), unordered(workers)); diff != "" {
					t.Errorf("driver calls mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// unordered compares calls as a multiset when several workers may make them
// in any order within a batch; the items' order is checked on its own.
func unordered(workers int) cmp.Option {
	if workers <= 1 {
		return cmp.Options{}
	}
	return cmpopts.SortSlices(func(a, b string) bool { return a < b })
}

func TestConvergeFailures(t *testing.T) {
	tests := []struct {
		name    string
		rs      []*spec.Resource
		prepare func(h *host)
		drivers func(h *host) map[spec.Kind]converge.Driver
		want    []summary
	}{
		{
			name: "isolation and skipped dependents",
			rs: []*spec.Resource{
				res("file:/a"), res("file:/b"),
				res("unit:u1", after("file:/a")), res("unit:u2"),
				res("container:c1", after("unit:u1")), res("container:c2", after("file:/b")),
			},
			prepare: func(h *host) { h.fail[id("file:/a")] = errInjected },
			want: []summary{
				{ID: "file:/a", Err: "injected"},
				{ID: "file:/b", Action: spec.ActionCreate},
				{ID: "unit:u1", Err: "dependency failed", Skipped: true},
				{ID: "unit:u2", Action: spec.ActionCreate},
				{ID: "container:c1", Err: "dependency failed", Skipped: true},
				{ID: "container:c2", Action: spec.ActionCreate},
			},
		},
		{
			name:    "panic",
			rs:      []*spec.Resource{res("file:/a"), res("file:/b"), res("unit:u", after("file:/a"))},
			prepare: func(h *host) { h.panic[id("file:/a")] = true },
			want: []summary{
				{ID: "file:/a", Err: "driver panicked"},
				{ID: "file:/b", Action: spec.ActionCreate},
				{ID: "unit:u", Err: "dependency failed", Skipped: true},
			},
		},
		{
			name:    "timeout",
			rs:      []*spec.Resource{res("file:/a"), res("file:/b")},
			prepare: func(h *host) { h.block[id("file:/a")] = true },
			want: []summary{
				{ID: "file:/a", Err: "timed out"},
				{ID: "file:/b", Action: spec.ActionCreate},
			},
		},
		{
			name: "no driver",
			rs:   []*spec.Resource{res("file:/a"), res("unit:u"), res("container:c", after("unit:u"))},
			drivers: func(h *host) map[spec.Kind]converge.Driver {
				return map[spec.Kind]converge.Driver{file.Kind: fakeDriver{h}, docker.Kind: fakeDriver{h}}
			},
			want: []summary{
				{ID: "file:/a", Action: spec.ActionCreate},
				{ID: "unit:u", Err: "no driver"},
				{ID: "container:c", Err: "dependency failed", Skipped: true},
			},
		},
		{
			name: "cycle",
			rs:   []*spec.Resource{res("file:/a", after("file:/b")), res("file:/b", after("file:/a")), res("file:/c"), res("unit:u", after("file:/a"))},
			want: []summary{
				{ID: "file:/a", Err: "dependency cycle"},
				{ID: "file:/b", Err: "dependency cycle"},
				{ID: "unit:u", Err: "dependency cycle"},
				{ID: "file:/c", Action: spec.ActionCreate},
			},
		},
	}
	for _, tt := range tests {
		for _, workers := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/workers=%d", tt.name, workers), func(t *testing.T) {
				h := newHost()
				if tt.prepare != nil {
					tt.prepare(h)
				}
				drv := drivers(h)
				if tt.drivers != nil {
					drv = tt.drivers(h)
				}
				e := converge.New(drv, converge.Options{Timeout: 100 * time.Millisecond, Workers: workers})
				res, err := e.Converge(context.Background(), desired(tt.rs...), nil, true)
				if err != nil {
					t.Fatalf("Converge() error = %v, want nil", err)
				}
				if diff := cmp.Diff(tt.want, summarize(res.Items)); diff != "" {
					t.Errorf("Converge() items mismatch (-want +got):\n%s", diff)
				}
				var failed int
				for _, s := range tt.want {
					if s.Err != "" {
						failed++
					}
				}
				if got := len(res.Failed()); got != failed {
					t.Errorf("len(Failed()) = %d, want %d", got, failed)
				}
			})
		}
	}
}

func TestConvergeErrorMessages(t *testing.T) {
	h := newHost()
	h.block[id("file:/slow")] = true
	e := converge.New(map[spec.Kind]converge.Driver{file.Kind: fakeDriver{h}}, converge.Options{Timeout: 10 * time.Millisecond})
	res, err := e.Converge(context.Background(), desired(res("file:/slow"), res("unit:u"), res("container:c", after("unit:u"))), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		is   error
		text string
	}{
		{context.DeadlineExceeded, "timed out after 10ms"},
		{converge.ErrNoDriver, "no driver for kind unit on this host"},
		{converge.ErrDependency, "unit:u did not converge"},
	}
	for i, w := range want {
		it := res.Items[i]
		if !errors.Is(it.Err, w.is) || !strings.Contains(fmt.Sprint(it.Err), w.text) {
			t.Errorf("%s: Err = %v, want an error matching %v that says %q", it.ID, it.Err, w.is, w.text)
		}
	}
}

// healthDriver is a fakeDriver that waits for health: its objects in
// unhealthy never become healthy.
type healthDriver struct {
	fakeDriver
	unhealthy map[spec.ID]error
}

func (d healthDriver) WaitHealthy(ctx context.Context, r *spec.Resource) error {
	d.h.log("wait %s", r.ID)
	return d.unhealthy[r.ID]
}

func TestConvergeAfterWaitsForHealth(t *testing.T) {
	errSick := errors.New("healthcheck failed (exit code 1)")
	ds := desired(res("container:db"), res("container:web"), res("container:worker", after("container:db")))
	tests := []struct {
		name      string
		pass      int  // passes before the one checked
		apply     bool // of the checked pass
		sick      bool
		wantCalls []string
		wantErr   string // of the worker
	}{
		{"first create waits", 0, true, false,
			[]string{"check container:db apply=true", "check container:web apply=true", "wait container:db", "check container:worker apply=true"}, ""},
		{"unchanged does not wait", 1, true, false,
			[]string{"check container:db apply=true", "check container:web apply=true", "check container:worker apply=true"}, ""},
		{"a dry run does not wait", 0, false, false,
			[]string{"check container:db apply=false", "check container:web apply=false", "check container:worker apply=false"}, ""},
		{"not healthy skips what comes after", 0, true, true,
			[]string{"check container:db apply=true", "check container:web apply=true", "wait container:db"},
			"dependency failed: container:db is not healthy: healthcheck failed (exit code 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost()
			d := healthDriver{fakeDriver{h}, map[spec.ID]error{}}
			if tt.sick {
				d.unhealthy[id("container:db")] = errSick
			}
			e := converge.New(map[spec.Kind]converge.Driver{docker.Kind: d}, converge.Options{})
			var inv state.Inventory
			for range tt.pass {
				r, err := e.Converge(context.Background(), ds, inv, true)
				if err != nil {
					t.Fatal(err)
				}
				inv = r.Inventory
			}
			h.calls = nil
			r, err := e.Converge(context.Background(), ds, inv, tt.apply)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantCalls, h.Calls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			for _, it := range r.Items {
				switch it.ID {
				case id("container:worker"):
					if got := fmt.Sprint(it.Err); (tt.wantErr == "" && it.Err != nil) || (tt.wantErr != "" && got != tt.wantErr) {
						t.Errorf("worker: Err = %v, want %q", it.Err, tt.wantErr)
					}
					if tt.wantErr != "" && (!it.Skipped || !errors.Is(it.Err, converge.ErrDependency) || !errors.Is(it.Err, errSick)) {
						t.Errorf("worker: Skipped = %v, Err = %v; want skipped, an ErrDependency that wraps the health error", it.Skipped, it.Err)
					}
				default:
					if it.Err != nil {
						t.Errorf("%s: Err = %v; it converged", it.ID, it.Err)
					}
				}
			}
		})
	}
}

func TestConvergeRestartOn(t *testing.T) {
	conf := res("file:/etc/app.conf", version("v2"))
	tests := []struct {
		name  string
		apply bool
		rs    []*spec.Resource
		// onHost are applied before the pass (in their current version
		// unless listed in old).
		old   []*spec.Resource
		fail  map[spec.ID]error
		want  []summary
		calls []string
	}{
		{
			name:  "changed file restarts an unchanged container",
			apply: true,
			rs:    []*spec.Resource{conf, res("container:web", restartOn("file:/etc/app.conf"))},
			old:   []*spec.Resource{res("file:/etc/app.conf"), res("container:web", restartOn("file:/etc/app.conf"))},
			want: []summary{
				{ID: "file:/etc/app.conf", Action: spec.ActionUpdate},
				{ID: "container:web", Action: spec.ActionNone, Restarted: true},
			},
			calls: []string{"check file:/etc/app.conf apply=true", "check container:web apply=true", "restart container:web"},
		},
		{
			name:  "dry run plans the restart",
			apply: false,
			rs:    []*spec.Resource{conf, res("container:web", restartOn("file:/etc/app.conf"))},
			old:   []*spec.Resource{res("file:/etc/app.conf"), res("container:web", restartOn("file:/etc/app.conf"))},
			want: []summary{
				{ID: "file:/etc/app.conf", Action: spec.ActionUpdate},
				{ID: "container:web", Action: spec.ActionNone, Restarted: true},
			},
			calls: []string{"check file:/etc/app.conf apply=false", "check container:web apply=false"},
		},
		{
			name:  "an updated container is not restarted again",
			apply: true,
			rs:    []*spec.Resource{conf, res("container:web", restartOn("file:/etc/app.conf"), version("v2"))},
			old:   []*spec.Resource{res("file:/etc/app.conf"), res("container:web", restartOn("file:/etc/app.conf"))},
			want: []summary{
				{ID: "file:/etc/app.conf", Action: spec.ActionUpdate},
				{ID: "container:web", Action: spec.ActionUpdate},
			},
			calls: []string{"check file:/etc/app.conf apply=true", "check container:web apply=true"},
		},
		{
			name:  "an unchanged file restarts nothing",
			apply: true,
			rs:    []*spec.Resource{conf, res("file:/other", version("v2")), res("unit:u", restartOn("file:/etc/app.conf"))},
			old:   []*spec.Resource{conf, res("file:/other"), res("unit:u", restartOn("file:/etc/app.conf"))},
			want: []summary{
				{ID: "file:/etc/app.conf", Action: spec.ActionNone},
				{ID: "file:/other", Action: spec.ActionUpdate},
				{ID: "unit:u", Action: spec.ActionNone},
			},
			calls: []string{"check file:/etc/app.conf apply=true", "check file:/other apply=true", "check unit:u apply=true"},
		},
		{
			name:  "a failed restart is the resource's error",
			apply: true,
			rs:    []*spec.Resource{conf, res("unit:u", restartOn("file:/etc/app.conf")), res("container:c", after("unit:u"))},
			old:   []*spec.Resource{res("file:/etc/app.conf"), res("unit:u", restartOn("file:/etc/app.conf")), res("container:c", after("unit:u"))},
			fail:  map[spec.ID]error{{Kind: "restart", Name: "u"}: errInjected},
			want: []summary{
				{ID: "file:/etc/app.conf", Action: spec.ActionUpdate},
				{ID: "unit:u", Action: spec.ActionNone, Err: "injected"},
				{ID: "container:c", Err: "dependency failed", Skipped: true},
			},
			calls: []string{"check file:/etc/app.conf apply=true", "check unit:u apply=true", "restart unit:u"},
		},
		{
			name:  "a driver that cannot restart",
			apply: true,
			rs:    []*spec.Resource{conf, res("file:/b", restartOn("file:/etc/app.conf"))},
			old:   []*spec.Resource{res("file:/etc/app.conf"), res("file:/b", restartOn("file:/etc/app.conf"))},
			want: []summary{
				{ID: "file:/etc/app.conf", Action: spec.ActionUpdate},
				{ID: "file:/b", Action: spec.ActionNone, Err: "error"},
			},
			calls: []string{"check file:/etc/app.conf apply=true", "check file:/b apply=true"},
		},
	}
	for _, tt := range tests {
		for _, workers := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/workers=%d", tt.name, workers), func(t *testing.T) {
				h := newHost()
				inv := synced(h, desired(tt.old...))
				for k, v := range tt.fail {
					h.fail[k] = v
				}
				res, err := converge.New(drivers(h), converge.Options{Workers: workers}).Converge(context.Background(), desired(tt.rs...), inv, tt.apply)
				if err != nil {
					t.Fatalf("Converge() error = %v", err)
				}
				if diff := cmp.Diff(tt.want, summarize(res.Items)); diff != "" {
					t.Errorf("Converge() items mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.calls, h.Calls(), unordered(workers)); diff != "" {
					t.Errorf("driver calls mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestConvergePrune(t *testing.T) {
	kept := []*spec.Resource{res("file:/a"), res("file:/b"), res("unit:u"), res("container:c")}
	tests := []struct {
		name  string
		owned []*spec.Resource // on the host and in the inventory
		want  []summary
		calls []string
		// left lists what stays on the host; inv what stays owned.
		left, inv []string
	}{
		{
			name:  "removed in reverse kind order after the rest",
			owned: append(kept[:4:4], res("file:/old"), res("container:old"), res("unit:old")),
			want: []summary{
				{ID: "file:/a", Action: spec.ActionNone},
				{ID: "file:/b", Action: spec.ActionNone},
				{ID: "unit:u", Action: spec.ActionNone},
				{ID: "container:c", Action: spec.ActionNone},
				{ID: "container:old", Action: spec.ActionDelete, Prune: true},
				{ID: "unit:old", Action: spec.ActionDelete, Prune: true},
				{ID: "file:/old", Action: spec.ActionDelete, Prune: true},
			},
			calls: []string{"remove container:old apply=true", "remove unit:old apply=true", "remove file:/old apply=true"},
			left:  []string{"container:c", "container:unowned", "file:/a", "file:/b", "file:/unowned", "unit:u"},
			inv:   []string{"container:c", "file:/a", "file:/b", "unit:u"},
		},
		{
			name:  "prune: false is left on the host and forgotten",
			owned: append(kept[:4:4], res("file:/keep", noPrune), res("file:/old")),
			want: []summary{
				{ID: "file:/a", Action: spec.ActionNone},
				{ID: "file:/b", Action: spec.ActionNone},
				{ID: "unit:u", Action: spec.ActionNone},
				{ID: "container:c", Action: spec.ActionNone},
				{ID: "file:/old", Action: spec.ActionDelete, Prune: true},
			},
			calls: []string{"remove file:/old apply=true"},
			left:  []string{"container:c", "container:unowned", "file:/a", "file:/b", "file:/keep", "file:/unowned", "unit:u"},
			inv:   []string{"container:c", "file:/a", "file:/b", "unit:u"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost()
			inv := synced(h, desired(tt.owned...))
			// On the host, but never owned: never touched.
			h.objects[id("container:unowned")] = "x"
			h.objects[id("file:/unowned")] = "x"
			res, err := converge.New(drivers(h), converge.Options{}).Converge(context.Background(), desired(kept...), inv, true)
			if err != nil {
				t.Fatalf("Converge() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, summarize(res.Items)); diff != "" {
				t.Errorf("Converge() items mismatch (-want +got):\n%s", diff)
			}
			var calls []string
			for _, c := range h.Calls() {
				if strings.HasPrefix(c, "remove") {
					calls = append(calls, c)
				}
			}
			if diff := cmp.Diff(tt.calls, calls); diff != "" {
				t.Errorf("remove calls mismatch (-want +got):\n%s", diff)
			}
			var left, owned []string
			for i := range h.Objects() {
				left = append(left, i.String())
			}
			for k := range res.Inventory {
				owned = append(owned, k)
			}
			sortStrings := cmpopts.SortSlices(func(a, b string) bool { return a < b })
			if diff := cmp.Diff(tt.left, left, sortStrings); diff != "" {
				t.Errorf("objects on the host mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.inv, owned, sortStrings); diff != "" {
				t.Errorf("Result.Inventory mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConvergePruneFailureKeepsOwnership(t *testing.T) {
	h := newHost()
	inv := synced(h, desired(res("file:/a"), res("file:/b"), res("file:/old")))
	h.fail[id("file:/old")] = errInjected
	res, err := converge.New(drivers(h), converge.Options{}).Converge(context.Background(), desired(res("file:/a"), res("file:/b")), inv, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed()) != 1 || !errors.Is(res.Failed()[0].Err, errInjected) {
		t.Errorf("Failed() = %v, want the failed prune of file:/old", res.Failed())
	}
	if _, ok := res.Inventory.Get(id("file:/old")); !ok {
		t.Errorf("Result.Inventory lost file:/old, whose removal failed")
	}
}

func TestConvergeMassPruneGuard(t *testing.T) {
	owned := func(n int) []*spec.Resource {
		var rs []*spec.Resource
		for i := range n {
			rs = append(rs, res(fmt.Sprintf("file:/f%d", i)))
		}
		return rs
	}
	tests := []struct {
		name     string
		owned    []*spec.Resource
		desired  *spec.State
		maxShare float64
		refused  bool
		remove   int
	}{
		{name: "empty desired state", owned: owned(4), desired: desired(), refused: true, remove: 4},
		{name: "the only owned object", owned: owned(1), desired: desired(), refused: true, remove: 1},
		{name: "three of four", owned: owned(4), desired: desired(owned(4)[3]), refused: true, remove: 3},
		{name: "half", owned: owned(4), desired: desired(owned(4)[2:]...), remove: 2},
		{name: "all replaced by others", owned: owned(2), desired: desired(res("file:/x"), res("file:/y")), refused: true, remove: 2},
		{name: "allow_mass_prune", owned: owned(4), desired: &spec.State{AllowMassPrune: true}, remove: 4},
		{name: "a lower share", owned: owned(4), desired: desired(owned(4)[2:]...), maxShare: 0.25, refused: true, remove: 2},
		{name: "all, whatever the share", owned: owned(2), desired: desired(), maxShare: 1, refused: true, remove: 2},
		{name: "nothing owned", owned: nil, desired: desired(), remove: 0},
		{name: "prune: false does not count", owned: append(owned(1), res("file:/keep", noPrune), res("file:/keep2", noPrune)), desired: desired(owned(1)...), remove: 0},
	}
	for _, tt := range tests {
		for _, apply := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/apply=%v", tt.name, apply), func(t *testing.T) {
				h := newHost()
				inv := synced(h, desired(tt.owned...))
				before := h.Objects()
				invBefore := inv.Clone()
				e := converge.New(drivers(h), converge.Options{MaxPruneShare: tt.maxShare})
				res, err := e.Converge(context.Background(), tt.desired, inv, apply)
				if !tt.refused {
					if err != nil {
						t.Fatalf("Converge() error = %v, want nil", err)
					}
					var pruned int
					for _, it := range res.Items {
						if it.Prune && it.Change.Action == spec.ActionDelete {
							pruned++
						}
					}
					if pruned != tt.remove {
						t.Errorf("Converge() pruned %d, want %d", pruned, tt.remove)
					}
					return
				}
				var mp *converge.MassPruneError
				if !errors.As(err, &mp) || !errors.Is(err, converge.ErrMassPrune) {
					t.Fatalf("Converge() = %v, %v, want a *MassPruneError", res, err)
				}
				if mp.Remove != tt.remove || mp.Owned != len(tt.owned) {
					t.Errorf("MassPruneError = %d of %d, want %d of %d", mp.Remove, mp.Owned, tt.remove, len(tt.owned))
				}
				share := "more than "
				if tt.remove == len(tt.owned) {
					share = "all of them"
				}
				for _, w := range []string{fmt.Sprintf("%d of the %d", tt.remove, len(tt.owned)), share, "allow_mass_prune: true"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if calls := h.Calls(); len(calls) != 0 {
					t.Errorf("a refused pass called the drivers: %v", calls)
				}
				if diff := cmp.Diff(before, h.Objects()); diff != "" {
					t.Errorf("a refused pass changed the host (-before +after):\n%s", diff)
				}
				if diff := cmp.Diff(invBefore, inv); diff != "" {
					t.Errorf("a refused pass changed the inventory (-before +after):\n%s", diff)
				}
			})
		}
	}
}

func TestConvergeDryRun(t *testing.T) {
	old := []*spec.Resource{res("file:/a"), res("file:/b"), res("file:/c"), res("unit:u", restartOn("file:/a"))}
	h := newHost()
	inv := synced(h, desired(old...))
	next := desired(res("file:/a", version("v2")), res("file:/b"), res("file:/new"), res("unit:u", restartOn("file:/a")))
	before := h.Objects()
	invBefore := inv.Clone()
	e := converge.New(drivers(h), converge.Options{Workers: 3})

	dry, err := e.Converge(context.Background(), next, inv, false)
	if err != nil {
		t.Fatalf("Converge(apply=false) error = %v", err)
	}
	if diff := cmp.Diff(before, h.Objects()); diff != "" {
		t.Errorf("a dry run changed the host (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(invBefore, inv); diff != "" {
		t.Errorf("a dry run changed its inventory argument (-before +after):\n%s", diff)
	}
	for _, c := range h.Calls() {
		if strings.HasPrefix(c, "restart") || strings.HasSuffix(c, "apply=true") {
			t.Errorf("a dry run made the call %q", c)
		}
	}
	if !dry.Changed() {
		t.Errorf("dry run Changed() = false, want true")
	}

	applied, err := e.Converge(context.Background(), next, inv, true)
	if err != nil {
		t.Fatalf("Converge(apply=true) error = %v", err)
	}
	if diff := cmp.Diff(summarize(dry.Items), summarize(applied.Items)); diff != "" {
		t.Errorf("dry run and apply differ (-dry +apply):\n%s", diff)
	}
	if diff := cmp.Diff(dry.Inventory, applied.Inventory, cmpopts.IgnoreFields(state.Entry{}, "AppliedAt")); diff != "" {
		t.Errorf("dry run and apply inventories differ (-dry +apply):\n%s", diff)
	}

	again, err := e.Converge(context.Background(), next, applied.Inventory, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed() {
		t.Errorf("after apply, a dry run still plans %v", summarize(again.Items))
	}
}

func TestConvergeInventory(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	h := newHost()
	same := res("file:/same")
	inv := synced(h, desired(same, res("file:/changed")))
	inv.Set(state.Entry{Kind: file.Kind, Name: "/same", Hash: same.Hash(), AppliedAt: t0})
	h.fail[id("file:/broken")] = errInjected

	e := converge.New(map[spec.Kind]converge.Driver{file.Kind: fakeDriver{h}}, converge.Options{Now: func() time.Time { return t1 }})
	changed := res("file:/changed", version("v2"))
	kept := res("file:/kept", noPrune)
	d := desired(same, changed, kept, res("file:/broken"), res("unit:nodriver"), res("file:/skipped", after("file:/broken")))
	res, err := e.Converge(context.Background(), d, inv, true)
	if err != nil {
		t.Fatal(err)
	}
	want := state.Inventory{}
	want.Set(state.Entry{Kind: file.Kind, Name: "/same", Hash: same.Hash(), AppliedAt: t0})
	want.Set(state.Entry{Kind: file.Kind, Name: "/changed", Hash: changed.Hash(), AppliedAt: t1})
	want.Set(state.Entry{Kind: file.Kind, Name: "/kept", Hash: kept.Hash(), AppliedAt: t1, NoPrune: true})
	// A failed create may have left something: owned, with no hash.
	want.Set(state.Entry{Kind: file.Kind, Name: "/broken", AppliedAt: t1})
	if diff := cmp.Diff(want, res.Inventory); diff != "" {
		t.Errorf("Result.Inventory mismatch (-want +got):\n%s", diff)
	}
}

func TestConvergeCancelled(t *testing.T) {
	h := newHost()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.cancel[id("file:/b")] = cancel
	res, err := converge.New(drivers(h), converge.Options{}).Converge(ctx, desired(res("file:/a"), res("file:/b"), res("file:/c")), nil, true)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Converge() error = %v, want context.Canceled", err)
	}
	want := []summary{{ID: "file:/a", Action: spec.ActionCreate}}
	if diff := cmp.Diff(want, summarize(res.Items)); diff != "" {
		t.Errorf("items of a cancelled pass mismatch (-want +got):\n%s", diff)
	}
	if _, ok := res.Inventory.Get(id("file:/a")); !ok {
		t.Errorf("Result.Inventory of a cancelled pass lacks file:/a, which was applied")
	}
	if _, ok := h.Objects()[id("file:/c")]; ok {
		t.Errorf("file:/c was applied after the cancellation")
	}
	// file:/b was being created when the pass was cancelled: it may exist,
	// so it is owned, with no hash, to be pruned if it leaves the desired
	// state.
	if e, ok := res.Inventory.Get(id("file:/b")); !ok || e.Hash != "" {
		t.Errorf("Result.Inventory[file:/b] = %+v, %v, want an entry with no hash", e, ok)
	}
}

// gateDriver holds each CheckApply until want calls are in flight together,
// or its context ends, and records when each call started and ended.
type gateDriver struct {
	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
	max      int
	want     int
	events   []string
}

func newGate(want int) *gateDriver {
	g := &gateDriver{want: want}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gateDriver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	g.mu.Lock()
	g.events = append(g.events, "start "+r.ID.String())
	g.inflight++
	g.max = max(g.max, g.inflight)
	g.cond.Broadcast()
	stop := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.cond.Broadcast()
	})
	defer stop()
	for g.max < g.want && ctx.Err() == nil {
		g.cond.Wait()
	}
	g.inflight--
	g.events = append(g.events, "end "+r.ID.String())
	g.mu.Unlock()
	return spec.Change{Action: spec.ActionNone}, ctx.Err()
}

func (g *gateDriver) Remove(context.Context, spec.ID, bool) (spec.Change, error) {
	return spec.Change{Action: spec.ActionNone}, nil
}

func TestConvergeWorkers(t *testing.T) {
	g := newGate(3)
	e := converge.New(map[spec.Kind]converge.Driver{file.Kind: g, systemd.Kind: g},
		converge.Options{Workers: 3, Timeout: 30 * time.Second})
	d := desired(res("file:/a"), res("file:/b"), res("file:/c"), res("file:/d"),
		res("file:/e", after("file:/a")), res("unit:u"))
	res, err := e.Converge(context.Background(), d, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failed(); len(f) != 0 {
		t.Fatalf("Failed() = %v, want none: three independent files must converge at once", f)
	}
	var got []string
	for _, it := range res.Items {
		got = append(got, it.ID.String())
	}
	want := []string{"file:/a", "file:/b", "file:/c", "file:/d", "file:/e", "unit:u"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("items order mismatch (-want +got):\n%s", diff)
	}
	if g.max != 3 {
		t.Errorf("at most %d calls in flight, want 3", g.max)
	}
	pos := map[string]int{}
	for i, ev := range g.events {
		pos[ev] = i
	}
	for _, c := range [][2]string{
		{"end file:/a", "start file:/e"},
		{"end file:/d", "start file:/e"},
		{"end file:/e", "start unit:u"},
	} {
		if pos[c[0]] > pos[c[1]] {
			t.Errorf("%q came after %q, want before: %v", c[0], c[1], g.events)
		}
	}
}

func TestRepair(t *testing.T) {
	h := newHost()
	a := res("file:/a")
	synced(h, desired(a))
	h.objects[id("file:/a")] = "drifted"
	h.panic[id("file:/boom")] = true
	e := converge.New(drivers(h), converge.Options{})
	tests := []struct {
		name  string
		r     *spec.Resource
		apply bool
		want  summary
	}{
		{"drift seen", a, false, summary{ID: "file:/a", Action: spec.ActionUpdate}},
		{"drift repaired", a, true, summary{ID: "file:/a", Action: spec.ActionUpdate}},
		{"repaired already", a, true, summary{ID: "file:/a", Action: spec.ActionNone}},
		{"panic", res("file:/boom"), true, summary{ID: "file:/boom", Err: "driver panicked"}},
		{"after a resource is not skipped", res("unit:u", after("file:/boom")), true, summary{ID: "unit:u", Action: spec.ActionCreate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.Repair(context.Background(), tt.r, tt.apply)
			if diff := cmp.Diff([]summary{tt.want}, summarize([]converge.Item{got})); diff != "" {
				t.Errorf("Repair(%s, %v) mismatch (-want +got):\n%s", tt.r.ID, tt.apply, diff)
			}
		})
	}
	if e.Driver(file.Kind) == nil || e.Driver("nope") != nil {
		t.Errorf("Driver() returns the wrong drivers")
	}
}

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

func TestConvergePanicLogsStack(t *testing.T) {
	h := newHost()
	h.panic[id("file:/a")] = true
	rec := &recorder{}
	e := converge.New(drivers(h), converge.Options{Logger: slog.New(rec)})
	if _, err := e.Converge(context.Background(), desired(res("file:/a")), nil, true); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range rec.records {
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		if r.Level == slog.LevelDebug && attrs["resource"] == "file:/a" && strings.Contains(attrs["stack"], "fakeDriver") {
			found = true
		}
	}
	if !found {
		t.Errorf("no debug record with the panicking driver's stack for file:/a in %d records", len(rec.records))
	}
}

// prepDriver is a restartDriver that implements converge.Preparer.
type prepDriver struct {
	restartDriver
	err   error
	panic bool
}

func (d prepDriver) Prepare(ctx context.Context, rs []*spec.Resource, apply bool) error {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID.String())
	}
	d.h.log("prepare %s apply=%v", strings.Join(ids, " "), apply)
	if d.panic {
		panic("prepare")
	}
	return d.err
}

func TestConvergePrepare(t *testing.T) {
	tests := []struct {
		name string
		drv  prepDriver
	}{
		{"prepared", prepDriver{}},
		{"a failed prepare", prepDriver{err: errInjected}},
		{"a panicking prepare", prepDriver{panic: true}},
	}
	for _, tt := range tests {
		for _, apply := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/apply=%v", tt.name, apply), func(t *testing.T) {
				h := newHost()
				drv := tt.drv
				drv.restartDriver = restartDriver{fakeDriver{h}}
				e := converge.New(map[spec.Kind]converge.Driver{file.Kind: fakeDriver{h}, systemd.Kind: drv}, converge.Options{Workers: 1})
				d := desired(res("file:/a"), res("unit:b"), res("unit:a", after("file:/a")))
				res, err := e.Converge(context.Background(), d, nil, apply)
				if err != nil {
					t.Fatal(err)
				}
				want := []string{
					fmt.Sprintf("check file:/a apply=%v", apply),
					fmt.Sprintf("prepare unit:b unit:a apply=%v", apply),
					fmt.Sprintf("check unit:b apply=%v", apply),
					fmt.Sprintf("check unit:a apply=%v", apply),
				}
				if diff := cmp.Diff(want, h.Calls()); diff != "" {
					t.Errorf("driver calls mismatch (-want +got):\n%s", diff)
				}
				if f := res.Failed(); len(f) != 0 {
					t.Errorf("Failed() = %v, want none: Prepare's failure is not a resource's", f)
				}
			})
		}
	}
}
