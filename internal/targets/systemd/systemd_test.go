package systemd

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
)

func TestCreateNoopUpdate(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	u := &Unit{Name: name, Content: []byte(sleeper), Enabled: boolp(true), State: UnitRunning}
	r := unitResource(u)

	// A dry run reports and changes nothing.
	ch, err := d.CheckApply(ctxT(t), r, false)
	if err != nil {
		t.Fatalf("CheckApply(dry run) = %v", err)
	}
	want := spec.Change{Action: spec.ActionCreate, Fields: []string{"unit file", "enabled missing -> true", "state inactive -> running"}}
	if diff := cmp.Diff(want, ch); diff != "" {
		t.Errorf("CheckApply(dry run) mismatch (-want +got):\n%s", diff)
	}
	if _, err := os.Stat("/etc/systemd/system/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a dry run, stat unit file = %v, want it not to exist", err)
	}

	if diff := cmp.Diff(want, mustApply(t, d, r)); diff != "" {
		t.Errorf("CheckApply(create) mismatch (-want +got):\n%s", diff)
	}
	for prop, want := range map[string]string{"ActiveState": "active", "UnitFileState": "enabled"} {
		if got := show(t, name, prop); got != want {
			t.Errorf("%s %s = %q, want %q", name, prop, got, want)
		}
	}
	data, err := os.ReadFile("/etc/systemd/system/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(data), "\n"); !strings.HasPrefix(first, MarkerPrefix) {
		t.Errorf("first line of the unit file = %q, want the marker", first)
	}
	pid := show(t, name, "MainPID")

	// No-op: nothing differs, nothing reloads.
	reloads := d.Reloads()
	for _, apply := range []bool{false, true} {
		ch, err := d.CheckApply(ctxT(t), r, apply)
		if err != nil || ch.Action != spec.ActionNone {
			t.Errorf("CheckApply(unchanged, apply %v) = %v, %v; want none", apply, ch, err)
		}
	}
	if got := d.Reloads() - reloads; got != 0 {
		t.Errorf("daemon-reloads in a no-op converge = %d, want 0", got)
	}

	// before is what a change found, for its diff: the unit file's body
	// and the drop-ins that differ, without the marker.
	steps := []struct {
		name   string
		change func(u *Unit)
		fields []string
		before *spec.Before
		check  func(t *testing.T)
	}{
		{"content", func(u *Unit) {
			u.Content = []byte(strings.Replace(sleeper, "Outpost test service", "changed", 1))
		}, []string{"content"}, &spec.Before{Content: []byte(sleeper), Size: int64(len(sleeper))}, func(t *testing.T) {
			if got := show(t, name, "Description"); got != "changed" {
				t.Errorf("Description = %q, want changed", got)
			}
		}},
		{"add drop-in", func(u *Unit) {
			u.Dropins = map[string][]byte{"10-env.conf": []byte("[Service]\nEnvironment=OUTPOST_TEST=1\n")}
		}, []string{"drop-in 10-env.conf"}, nil, func(t *testing.T) {
			if got := show(t, name, "Environment"); got != "OUTPOST_TEST=1" {
				t.Errorf("Environment = %q, want OUTPOST_TEST=1", got)
			}
		}},
		{"change drop-in", func(u *Unit) {
			u.Dropins = map[string][]byte{"10-env.conf": []byte("[Service]\nEnvironment=OUTPOST_TEST=2\n")}
		}, []string{"drop-in 10-env.conf"}, &spec.Before{Dropins: map[string][]byte{"10-env.conf": []byte("[Service]\nEnvironment=OUTPOST_TEST=1\n")}}, func(t *testing.T) {
			if got := show(t, name, "Environment"); got != "OUTPOST_TEST=2" {
				t.Errorf("Environment = %q, want OUTPOST_TEST=2", got)
			}
		}},
		{"remove drop-in", func(u *Unit) { u.Dropins = nil },
			[]string{"drop-in 10-env.conf removed"}, nil, func(t *testing.T) {
				if got := show(t, name, "Environment"); got != "" {
					t.Errorf("Environment = %q, want none", got)
				}
				if _, err := os.Stat("/etc/systemd/system/" + name + ".d"); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("stat drop-in directory = %v, want it removed", err)
				}
			}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.change(u)
			reloads := d.Reloads()
			want := spec.Change{Action: spec.ActionUpdate, Fields: s.fields, Before: s.before}
			if diff := cmp.Diff(want, mustApply(t, d, r)); diff != "" {
				t.Errorf("CheckApply mismatch (-want +got):\n%s", diff)
			}
			if got := d.Reloads() - reloads; got != 1 {
				t.Errorf("daemon-reloads = %d, want 1", got)
			}
			newPID := show(t, name, "MainPID")
			if newPID == pid || newPID == "0" {
				t.Errorf("MainPID = %s after a change, want a restarted service (was %s)", newPID, pid)
			}
			pid = newPID
			s.check(t)
		})
	}
}

func TestEnableDisableStartStop(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	u := &Unit{Name: name, Content: []byte(sleeper)}
	r := unitResource(u)
	mustApply(t, d, r)

	steps := []struct {
		enabled       *bool
		state         UnitState
		fields        []string
		active, onoff string
	}{
		{boolp(true), "", []string{"enabled disabled -> true"}, "inactive", "enabled"},
		{boolp(true), UnitRunning, []string{"state inactive -> running"}, "active", "enabled"},
		{boolp(false), UnitRunning, []string{"enabled enabled -> false"}, "active", "disabled"},
		{boolp(false), UnitStopped, []string{"state active -> stopped"}, "inactive", "disabled"},
		{nil, "", nil, "inactive", "disabled"},
	}
	for _, s := range steps {
		u.Enabled, u.State = s.enabled, s.state
		ch := mustApply(t, d, r)
		want := spec.Change{Action: spec.ActionUpdate, Fields: append([]string{"marker"}, s.fields...)}
		if diff := cmp.Diff(want, ch); diff != "" {
			t.Errorf("enabled %v, state %q: CheckApply mismatch (-want +got):\n%s", s.enabled != nil && *s.enabled, s.state, diff)
		}
		if got := show(t, name, "ActiveState"); got != s.active {
			t.Errorf("enabled %v, state %q: ActiveState = %q, want %q", s.enabled != nil && *s.enabled, s.state, got, s.active)
		}
		if got := show(t, name, "UnitFileState"); got != s.onoff {
			t.Errorf("enabled %v, state %q: UnitFileState = %q, want %q", s.enabled != nil && *s.enabled, s.state, got, s.onoff)
		}
	}
}

func TestTimer(t *testing.T) {
	d := newDriver(t)
	base := unitName(t, "")
	service := &Unit{Name: base + ".service", Content: []byte("[Service]\nType=oneshot\nExecStart=/bin/true\n")}
	timer := &Unit{Name: base + ".timer", Enabled: boolp(true), State: UnitRunning,
		Content: []byte("[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n")}
	t.Cleanup(func() {
		for _, n := range []string{base + ".service", base + ".timer"} {
			systemctl(t, "stop", n)
			systemctl(t, "disable", n)
			os.Remove("/etc/systemd/system/" + n)
		}
		systemctl(t, "daemon-reload")
	})
	for _, u := range []*Unit{service, timer} {
		if ch := mustApply(t, d, unitResource(u)); ch.Action != spec.ActionCreate {
			t.Errorf("CheckApply(%s) = %v, want create", u.Name, ch)
		}
	}
	if got := show(t, timer.Name, "ActiveState"); got != "active" {
		t.Errorf("timer ActiveState = %q, want active", got)
	}
	if got := show(t, timer.Name, "UnitFileState"); got != "enabled" {
		t.Errorf("timer UnitFileState = %q, want enabled", got)
	}
	if got := show(t, timer.Name, "NextElapseUSecRealtime"); got == "" {
		t.Errorf("timer NextElapseUSecRealtime is empty, want a next elapse")
	}
	ok, reason, err := d.Healthy(ctxT(t), unitResource(timer))
	if err != nil || !ok {
		t.Errorf("Healthy(timer) = %v, %q, %v; want healthy", ok, reason, err)
	}
}

func TestStartFailure(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	r := unitResource(&Unit{Name: name, State: UnitRunning,
		Content: []byte("[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 3'\n")})
	_, err := d.CheckApply(ctxT(t), r, true)
	var je *JobError
	if !errors.As(err, &je) {
		t.Fatalf("CheckApply(failing unit) = %v, want a *JobError", err)
	}
	want := JobError{Unit: name, Op: "start", JobResult: "failed", UnitResult: "exit-code", ExitStatus: 3}
	if diff := cmp.Diff(want, *je); diff != "" {
		t.Errorf("JobError mismatch (-want +got):\n%s", diff)
	}
	ok, reason, err := d.Healthy(ctxT(t), r)
	if err != nil || ok || !strings.Contains(reason, "exit-code") {
		t.Errorf("Healthy(failed unit) = %v, %q, %v; want unhealthy with the unit's result", ok, reason, err)
	}
}

func TestHealthySettles(t *testing.T) {
	d := newDriver(t)
	tests := []struct {
		name    string
		content string
		healthy bool
	}{
		{"stays up", "[Service]\nExecStart=/bin/sleep infinity\n", true},
		// A simple service is active as soon as it forked: only the settle
		// time tells that it exits at once.
		{"exits at once", "[Service]\nExecStart=/bin/false\n", false},
		{"crash loop", "[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=100ms\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := unitResource(&Unit{Name: unitName(t, ".service"), State: UnitRunning, Content: []byte(tt.content)})
			mustApply(t, d, r)
			ok, reason, err := d.Healthy(ctxT(t), r)
			if err != nil {
				t.Fatalf("Healthy() = %v", err)
			}
			if ok != tt.healthy {
				t.Errorf("Healthy() = %v (%q), want %v", ok, reason, tt.healthy)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), Enabled: boolp(true), State: UnitRunning,
		Dropins: map[string][]byte{"10-a.conf": []byte("[Service]\nEnvironment=A=1\n")}})
	mustApply(t, d, r)
	// A drop-in that Outpost did not write stays.
	foreign := "/etc/systemd/system/" + name + ".d/50-local.conf"
	if err := os.WriteFile(foreign, []byte("[Service]\nEnvironment=B=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	want := spec.Change{Action: spec.ActionDelete, Fields: []string{"unit file", "drop-in 10-a.conf"}}
	ch, err := d.Remove(ctxT(t), r.ID, false)
	if err != nil || !cmp.Equal(want, ch) {
		t.Errorf("Remove(dry run) = %v, %v; want %v", ch, err, want)
	}
	if got := show(t, name, "ActiveState"); got != "active" {
		t.Errorf("after a dry run ActiveState = %q, want active", got)
	}
	ch, err = d.Remove(ctxT(t), r.ID, true)
	if err != nil || !cmp.Equal(want, ch) {
		t.Errorf("Remove() = %v, %v; want %v", ch, err, want)
	}
	if _, err := os.Stat("/etc/systemd/system/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat unit file after Remove = %v, want it removed", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("stat a drop-in Outpost did not write = %v, want it kept", err)
	}
	if got := show(t, name, "ActiveState"); got != "inactive" {
		t.Errorf("after Remove ActiveState = %q, want inactive", got)
	}
	if got := systemctl(t, "is-enabled", name); got == "enabled" {
		t.Errorf("after Remove is-enabled = %q, want not enabled", got)
	}
	// Removing again finds nothing of Outpost's.
	if ch, err := d.Remove(ctxT(t), r.ID, true); err != nil || ch.Action != spec.ActionNone {
		t.Errorf("Remove(again) = %v, %v; want none", ch, err)
	}
}

func TestNeverTouchesForeignUnits(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	path := "/etc/systemd/system/" + name
	foreign := []byte("[Service]\nExecStart=/bin/sleep infinity\n")
	if err := os.WriteFile(path, foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	mustSystemctl(t, "daemon-reload")
	mustSystemctl(t, "start", name)

	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: UnitStopped})
	if _, err := d.CheckApply(ctxT(t), r, true); !errors.Is(err, ErrNotOwned) {
		t.Errorf("CheckApply(foreign unit) = %v, want ErrNotOwned", err)
	}
	if ch, err := d.Remove(ctxT(t), r.ID, true); err != nil || ch.Action != spec.ActionNone {
		t.Errorf("Remove(foreign unit) = %v, %v; want none", ch, err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(foreign) {
		t.Errorf("foreign unit file = %q, want it untouched", got)
	}
	if got := show(t, name, "ActiveState"); got != "active" {
		t.Errorf("foreign unit ActiveState = %q, want active", got)
	}
}

func TestInvalidNames(t *testing.T) {
	d := newDriver(t)
	for _, name := range []string{"", "noext", "../etc/passwd.service", "a/b.service", "x."} {
		t.Run(name, func(t *testing.T) {
			_, err := d.CheckApply(ctxT(t), unitResource(&Unit{Name: name}), false)
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("CheckApply(%q) = %v, want ErrInvalidName", name, err)
			}
		})
	}
	_, err := d.CheckApply(ctxT(t), unitResource(&Unit{Name: "ok.service",
		Dropins: map[string][]byte{"../x.conf": nil}}), false)
	if !errors.Is(err, ErrInvalidName) {
		t.Errorf("CheckApply(drop-in ../x.conf) = %v, want ErrInvalidName", err)
	}
}

// A pass reloads systemd once for the files it writes, and once more for
// the units it enables or disables, however many they are.
func TestPrepareReloadsOncePerPass(t *testing.T) {
	d := newDriver(t)
	var rs []*spec.Resource
	for range 3 {
		rs = append(rs, unitResource(&Unit{Name: unitName(t, ".service"), Content: []byte(sleeper),
			Enabled: boolp(true), State: UnitRunning}))
	}
	pass := func() (changes []spec.Change, reloads int) {
		before := d.Reloads()
		if err := d.Prepare(ctxT(t), rs, true); err != nil {
			t.Fatalf("Prepare() = %v", err)
		}
		for _, r := range rs {
			changes = append(changes, mustApply(t, d, r))
		}
		return changes, d.Reloads() - before
	}
	tests := []struct {
		name    string
		edit    func()
		changes []spec.Action
		reloads int
		// enabled: the UnitFileState each unit must have after the pass.
		enabled []string
		// field: a field that each changed unit's change must list.
		field string
	}{
		{"create", func() {}, []spec.Action{"create", "create", "create"}, 2,
			[]string{"enabled", "enabled", "enabled"}, "enabled missing -> true"},
		{"no-op", func() {}, []spec.Action{"none", "none", "none"}, 0,
			[]string{"enabled", "enabled", "enabled"}, ""},
		{"update two", func() {
			Of(rs[0]).Content = []byte(sleeper + "# a\n")
			Of(rs[2]).Content = []byte(sleeper + "# c\n")
		}, []spec.Action{"update", "none", "update"}, 1, []string{"enabled", "enabled", "enabled"}, ""},
		{"disable one", func() {
			Of(rs[1]).Enabled = boolp(false)
		}, []spec.Action{"none", "update", "none"}, 2,
			[]string{"enabled", "disabled", "enabled"}, "enabled enabled -> false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.edit()
			changes, reloads := pass()
			var actions []spec.Action
			for i, ch := range changes {
				actions = append(actions, ch.Action)
				if tt.field != "" && ch.Changed() && !slices.Contains(ch.Fields, tt.field) {
					t.Errorf("unit %d: change fields = %q, want %q among them", i, ch.Fields, tt.field)
				}
				if got := show(t, Of(rs[i]).Name, "UnitFileState"); got != tt.enabled[i] {
					t.Errorf("unit %d: UnitFileState = %q, want %q", i, got, tt.enabled[i])
				}
			}
			if diff := cmp.Diff(tt.changes, actions); diff != "" {
				t.Errorf("changes mismatch (-want +got):\n%s", diff)
			}
			if reloads != tt.reloads {
				t.Errorf("daemon-reloads = %d, want %d", reloads, tt.reloads)
			}
		})
	}
}

func TestRestartOn(t *testing.T) {
	d := newDriver(t)
	tests := []struct {
		name    string
		state   UnitState
		start   bool // started by hand before Restart
		restart bool // the main PID changes
	}{
		{"running", UnitRunning, true, true},
		{"unset and running", "", true, true},
		{"unset and stopped", "", false, false},
		{"stopped", UnitStopped, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := unitName(t, ".service")
			r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: tt.state})
			mustApply(t, d, r)
			if tt.start {
				mustSystemctl(t, "start", name)
			}
			before := show(t, name, "MainPID")
			if err := d.Restart(ctxT(t), r); err != nil {
				t.Fatalf("Restart() = %v", err)
			}
			after := show(t, name, "MainPID")
			if restarted := after != before && after != "0"; restarted != tt.restart {
				t.Errorf("Restart(): main PID %s -> %s, want restarted %v", before, after, tt.restart)
			}
		})
	}
}

func TestJobWaitHonoursContext(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	r := unitResource(&Unit{Name: name, State: UnitRunning,
		Content: []byte("[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sleep 60\n")})
	ctx, cancel := context.WithTimeout(ctxT(t), 500*time.Millisecond)
	defer cancel()
	if _, err := d.CheckApply(ctx, r, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CheckApply(start that outlives ctx) = %v, want context.DeadlineExceeded", err)
	}
}

func TestConcurrentCheckApply(t *testing.T) {
	d := newDriver(t)
	var rs []*spec.Resource
	for range 4 {
		rs = append(rs, unitResource(&Unit{Name: unitName(t, ".service"), Content: []byte(sleeper),
			Enabled: boolp(true), State: UnitRunning}))
	}
	errs := make(chan error, len(rs))
	for _, r := range rs {
		go func() {
			_, err := d.CheckApply(ctxT(t), r, true)
			errs <- err
		}()
	}
	for range rs {
		if err := <-errs; err != nil {
			t.Errorf("CheckApply() = %v", err)
		}
	}
	for _, r := range rs {
		if got := show(t, Of(r).Name, "ActiveState"); got != "active" {
			t.Errorf("%s ActiveState = %q, want active", Of(r).Name, got)
		}
	}

	// Waiting for the driver ends with the caller's context.
	if err := d.acquire(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	_, err := d.CheckApply(ctx, rs[0], true)
	d.release()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CheckApply(while the driver is busy, ctx ends) = %v, want context.DeadlineExceeded", err)
	}
}
