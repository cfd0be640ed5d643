package systemd

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// drifts are changes made by hand to a converged unit, and how to tell
// whether one is still in place.
var drifts = []struct {
	name    string
	make    func(t *testing.T, name string)
	present func(t *testing.T, name string) bool
}{
	{"systemctl stop", func(t *testing.T, name string) { mustSystemctl(t, "stop", name) },
		func(t *testing.T, name string) bool { return show(t, name, "ActiveState") != "active" }},
	{"systemctl disable", func(t *testing.T, name string) { mustSystemctl(t, "disable", name) },
		func(t *testing.T, name string) bool { return show(t, name, "UnitFileState") != "enabled" }},
	{"edited unit file", func(t *testing.T, name string) {
		path := "/etc/systemd/system/" + name
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(data), "Outpost test service", "edited by hand", 1)
		if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
	}, func(t *testing.T, name string) bool {
		data, _ := os.ReadFile("/etc/systemd/system/" + name)
		return strings.Contains(string(data), "edited by hand")
	}},
	{"deleted unit file", func(t *testing.T, name string) {
		if err := os.Remove("/etc/systemd/system/" + name); err != nil {
			t.Fatal(err)
		}
	}, func(t *testing.T, name string) bool {
		_, err := os.Stat("/etc/systemd/system/" + name)
		return err != nil
	}},
}

func TestDrift(t *testing.T) {
	d := newDriver(t)
	for _, mode := range []spec.DriftMode{spec.DriftRevert, spec.DriftWarn, spec.DriftIgnore} {
		for _, dr := range drifts {
			if mode != spec.DriftRevert && dr.name == "deleted unit file" {
				// A missing unit file is created whatever the mode: there
				// is no object left to leave alone.
				continue
			}
			t.Run(string(mode)+"/"+dr.name, func(t *testing.T) {
				name := unitName(t, ".service")
				r := unitResource(&Unit{Name: name, Content: []byte(sleeper), Enabled: boolp(true), State: UnitRunning})
				r.Drift = mode
				mustApply(t, d, r)
				dr.make(t, name)
				if !dr.present(t, name) {
					t.Fatalf("the drift did not take")
				}
				ch := mustApply(t, d, r)
				switch mode {
				case spec.DriftRevert:
					if ch.Action == spec.ActionNone {
						t.Errorf("CheckApply after %s = %v, want a repair", dr.name, ch)
					}
					if dr.present(t, name) {
						t.Errorf("after CheckApply, %s is still in place, want it reverted", dr.name)
					}
					if got := show(t, name, "ActiveState"); got != "active" {
						t.Errorf("after the repair ActiveState = %q, want active", got)
					}
				case spec.DriftWarn:
					if ch.Action != spec.ActionUpdate || !strings.Contains(ch.String(), "left alone (drift: warn)") {
						t.Errorf("CheckApply after %s = %v, want it reported and left alone", dr.name, ch)
					}
					if !dr.present(t, name) {
						t.Errorf("after CheckApply, %s was reverted, want it left alone", dr.name)
					}
				case spec.DriftIgnore:
					if ch.Action != spec.ActionNone {
						t.Errorf("CheckApply after %s = %v, want none", dr.name, ch)
					}
					if !dr.present(t, name) {
						t.Errorf("after CheckApply, %s was reverted, want it left alone", dr.name)
					}
				}
			})
		}
	}
}

// TestWarnAppliesNewSpec: drift: warn leaves changes by hand alone, but a
// new spec is applied.
func TestWarnAppliesNewSpec(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	u := &Unit{Name: name, Content: []byte(sleeper), State: UnitRunning}
	r := unitResource(u)
	r.Drift = spec.DriftWarn
	mustApply(t, d, r)
	mustSystemctl(t, "stop", name)
	u.Content = []byte(strings.Replace(sleeper, "Outpost test service", "new spec", 1))
	ch := mustApply(t, d, r)
	if strings.Contains(ch.String(), "left alone") {
		t.Errorf("CheckApply(new spec) = %v, want it applied", ch)
	}
	if got := show(t, name, "Description"); got != "new spec" {
		t.Errorf("Description = %q, want new spec", got)
	}
	if got := show(t, name, "ActiveState"); got != "active" {
		t.Errorf("ActiveState = %q, want active", got)
	}
}

func watch(t *testing.T, d *Driver, rs []*spec.Resource) chan spec.ID {
	t.Helper()
	ch := make(chan spec.ID, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Watch(ctx, rs, func(id spec.ID) {
			select {
			case ch <- id:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch() = %v", err)
		}
	})
	return ch
}

// await waits for a notification of id, ignoring others, and fails t after
// a generous deadline: it tests that the event comes, not how fast.
func await(t *testing.T, ch chan spec.ID, id spec.ID, what string) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case got := <-ch:
			if got == id {
				return
			}
		case <-deadline.C:
			t.Fatalf("Watch did not report %s after %s", id, what)
		}
	}
}

func drain(ch chan spec.ID) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestWatchReportsDrift(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), Enabled: boolp(true), State: UnitRunning,
		Dropins: map[string][]byte{"10-a.conf": []byte("[Service]\nEnvironment=A=1\n")}})
	mustApply(t, d, r)
	other := unitResource(&Unit{Name: unitName(t, ".service"), Content: []byte(sleeper)})
	ch := watch(t, d, []*spec.Resource{r, other})
	// Once for each resource at start.
	await(t, ch, r.ID, "start")
	await(t, ch, other.ID, "start")

	changes := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"systemctl stop", func(t *testing.T) { mustSystemctl(t, "stop", name) }},
		{"systemctl disable", func(t *testing.T) { mustSystemctl(t, "disable", name) }},
		{"edited unit file", func(t *testing.T) {
			os.WriteFile("/etc/systemd/system/"+name, []byte(MarkerPrefix+"\n[Service]\nExecStart=/bin/true\n"), 0o644)
		}},
		{"edited drop-in", func(t *testing.T) {
			os.WriteFile("/etc/systemd/system/"+name+".d/10-a.conf", []byte(MarkerPrefix+"\n[Service]\n"), 0o644)
		}},
		{"new drop-in", func(t *testing.T) {
			os.WriteFile("/etc/systemd/system/"+name+".d/20-b.conf", []byte("[Service]\n"), 0o644)
		}},
		{"deleted unit file", func(t *testing.T) { os.Remove("/etc/systemd/system/" + name) }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			mustApply(t, d, r) // back to the spec
			drain(ch)
			c.do(t)
			await(t, ch, r.ID, c.name)
			mustApply(t, d, r)
			if got := show(t, name, "ActiveState"); got != "active" {
				t.Errorf("after the repair ActiveState = %q, want active", got)
			}
		})
	}
}

// TestPrepareLeavesWarnedDriftAlone: the batched write of a pass skips a
// unit whose only difference is drift under drift: warn.
func TestPrepareLeavesWarnedDriftAlone(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: UnitRunning})
	r.Drift = spec.DriftWarn
	mustApply(t, d, r)
	path := "/etc/systemd/system/" + name
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := append(data, "# edited by hand\n"...)
	if err := os.WriteFile(path, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	reloads := d.Reloads()
	if err := d.Prepare(ctxT(t), []*spec.Resource{r}, true); err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	ch := mustApply(t, d, r)
	if !strings.Contains(ch.String(), "left alone (drift: warn)") {
		t.Errorf("CheckApply after Prepare = %v, want the drift reported and left alone", ch)
	}
	if got, _ := os.ReadFile(path); string(got) != string(edited) {
		t.Errorf("unit file after the pass = %q, want the edit left in place", got)
	}
	if got := d.Reloads() - reloads; got != 0 {
		t.Errorf("daemon-reloads = %d, want 0", got)
	}
}

// TestRepairAfterPrepareReadsFreshState: a unit stopped by hand after a
// pass's Prepare read its state is repaired by the repair that Watch wakes.
func TestRepairAfterPrepareReadsFreshState(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: UnitRunning})
	mustApply(t, d, r)
	ch := watch(t, d, []*spec.Resource{r})
	await(t, ch, r.ID, "start")
	if err := d.Prepare(ctxT(t), []*spec.Resource{r}, true); err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	drain(ch)
	mustSystemctl(t, "stop", name)
	await(t, ch, r.ID, "systemctl stop")
	if got := mustApply(t, d, r); got.Action != spec.ActionUpdate {
		t.Errorf("CheckApply after the stop = %v, want an update", got)
	}
	if got := show(t, name, "ActiveState"); got != "active" {
		t.Errorf("ActiveState = %q, want active", got)
	}
}
