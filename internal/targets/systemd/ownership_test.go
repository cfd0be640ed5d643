package systemd

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/spec"
)

const vendorDir = "/usr/lib/systemd/system"

// vendorUnit installs a unit as a package would, with the description
// "vendor", starts it, and removes it when the test ends.
func vendorUnit(t *testing.T, name string) {
	t.Helper()
	path := filepath.Join(vendorDir, name)
	content := strings.Replace(sleeper, "Outpost test service", "vendor", 1)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(path)
		systemctl(t, "daemon-reload")
	})
	mustSystemctl(t, "daemon-reload")
	if !strings.Contains(name, "@.") {
		mustSystemctl(t, "start", name)
	}
}

// TestVendorUnitShadowRefused checks that a unit named like a packaged one
// is refused without override: nothing is written, by CheckApply or by
// Prepare, and the packaged unit still runs as it was.
func TestVendorUnitShadowRefused(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	vendorUnit(t, name)
	template := strings.TrimSuffix(unitName(t, ""), ".service") + "@.service"
	vendorUnit(t, template)
	instance := strings.Replace(template, "@.", "@1.", 1)
	pid := show(t, name, "MainPID")

	for _, n := range []string{name, instance} {
		t.Run(n, func(t *testing.T) {
			r := unitResource(&Unit{Name: n, Content: []byte(sleeper), Enabled: boolp(true), State: UnitRunning})
			if err := d.Prepare(ctxT(t), []*spec.Resource{r}, true); err != nil {
				t.Fatalf("Prepare() = %v", err)
			}
			for _, apply := range []bool{false, true} {
				if _, err := d.CheckApply(ctxT(t), r, apply); !errors.Is(err, ErrShadowsVendor) {
					t.Errorf("CheckApply(%s, apply %v) = %v, want ErrShadowsVendor", n, apply, err)
				}
			}
			if _, err := os.Lstat(filepath.Join(DefaultUnitDir, n)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stat %s in %s = %v, want it not to exist", n, DefaultUnitDir, err)
			}
		})
	}
	if got := show(t, name, "Description"); got != "vendor" {
		t.Errorf("packaged unit's Description = %q, want vendor", got)
	}
	if got := show(t, name, "MainPID"); got != pid {
		t.Errorf("packaged unit's MainPID = %s, want %s: it was restarted", got, pid)
	}
}

// TestVendorUnitOverride checks that override: true replaces a packaged
// unit, and that pruning the unit brings the packaged one back.
func TestVendorUnitOverride(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	vendorUnit(t, name)
	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: UnitRunning, Override: true})
	mustApply(t, d, r)
	if got := show(t, name, "Description"); got != "Outpost test service" {
		t.Errorf("overridden unit's Description = %q, want Outpost test service", got)
	}
	if got, want := show(t, name, "FragmentPath"), filepath.Join(DefaultUnitDir, name); got != want {
		t.Errorf("overridden unit's FragmentPath = %q, want %q", got, want)
	}
	if _, err := d.Remove(ctxT(t), r.ID, true); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	// With a merged /usr, systemd names the packaged file by either path.
	if got := show(t, name, "FragmentPath"); got != filepath.Join(vendorDir, name) && got != filepath.Join("/lib/systemd/system", name) {
		t.Errorf("after Remove, FragmentPath = %q, want the packaged %s", got, name)
	}
}

// TestForeignFilesConflict checks that a unit file or a drop-in that
// Outpost did not write is a conflict, and stays byte for byte as it was,
// through Prepare, CheckApply and Remove.
func TestForeignFilesConflict(t *testing.T) {
	d := newDriver(t)
	foreign := []byte("[Service]\nExecStart=/bin/sleep infinity\n")
	for _, tt := range []struct {
		what string
		unit func(name string) (*Unit, string)
	}{
		{"unit file", func(name string) (*Unit, string) {
			return &Unit{Name: name, Content: []byte(sleeper)}, filepath.Join(DefaultUnitDir, name)
		}},
		{"drop-in", func(name string) (*Unit, string) {
			return &Unit{Name: name, Content: []byte(sleeper), Dropins: map[string][]byte{"10-a.conf": []byte("[Service]\n")}},
				filepath.Join(DefaultUnitDir, name+".d", "10-a.conf")
		}},
	} {
		t.Run(tt.what, func(t *testing.T) {
			u, path := tt.unit(unitName(t, ".service"))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, foreign, 0o640); err != nil {
				t.Fatal(err)
			}
			r := unitResource(u)
			if err := d.Prepare(ctxT(t), []*spec.Resource{r}, true); err != nil {
				t.Fatalf("Prepare() = %v", err)
			}
			if _, err := d.CheckApply(ctxT(t), r, true); !errors.Is(err, ErrNotOwned) {
				t.Errorf("CheckApply() = %v, want ErrNotOwned", err)
			}
			if _, err := d.Remove(ctxT(t), r.ID, true); err != nil {
				t.Errorf("Remove() = %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != string(foreign) {
				t.Errorf("foreign %s = %q, %v; want %q", tt.what, got, err, foreign)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("foreign %s mode = %v, %v; want 0640", tt.what, fi.Mode(), err)
			}
		})
	}
}

// TestAdoptAndRestore checks that adopt: true takes over a unit file and a
// drop-in that Outpost did not write, keeping their originals readable by
// root only in the backup directory, and that pruning the unit puts the
// originals back, byte for byte, and runs the unit with them again.
func TestAdoptAndRestore(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	path := filepath.Join(DefaultUnitDir, name)
	dropin := filepath.Join(DefaultUnitDir, name+".d", "10-a.conf")
	original := []byte(strings.Replace(sleeper, "Outpost test service", "original", 1))
	originalDropin := []byte("[Service]\nEnvironment=ORIGINAL=1\n")
	if err := os.MkdirAll(filepath.Dir(dropin), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{path: original, dropin: originalDropin} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustSystemctl(t, "daemon-reload")
	mustSystemctl(t, "start", name)

	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: UnitRunning,
		Dropins: map[string][]byte{"10-a.conf": []byte("[Service]\nEnvironment=ADOPTED=1\n")}})
	r.Adopt = true
	ch := mustApply(t, d, r)
	for _, f := range []string{"adopted unit file", "adopted drop-in 10-a.conf"} {
		if !slices.Contains(ch.Fields, f) {
			t.Errorf("CheckApply(adopt) fields = %q, want %q among them", ch.Fields, f)
		}
	}
	if got := show(t, name, "Description"); got != "Outpost test service" {
		t.Errorf("adopted unit's Description = %q, want Outpost test service", got)
	}
	if got := show(t, name, "Environment"); got != "ADOPTED=1" {
		t.Errorf("adopted unit's Environment = %q, want ADOPTED=1", got)
	}
	for backup, want := range map[string][]byte{d.unitBackup(name): original, d.dropinBackup(name, "10-a.conf"): originalDropin} {
		got, err := os.ReadFile(backup)
		if err != nil || string(got) != string(want) {
			t.Errorf("kept original %s = %q, %v; want %q", backup, got, err, want)
		}
		if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("kept original %s mode = %v, %v; want 0600", backup, fi.Mode(), err)
		}
	}
	// Adopted, the unit is Outpost's: a second pass changes nothing.
	if ch, err := d.CheckApply(ctxT(t), r, true); err != nil || ch.Action != spec.ActionNone {
		t.Errorf("CheckApply(adopted, again) = %v, %v; want none", ch, err)
	}

	if _, err := d.Remove(ctxT(t), r.ID, true); err != nil {
		t.Fatalf("Remove(adopted) = %v", err)
	}
	for p, want := range map[string][]byte{path: original, dropin: originalDropin} {
		if got, err := os.ReadFile(p); err != nil || string(got) != string(want) {
			t.Errorf("after Remove, %s = %q, %v; want the original %q", p, got, err, want)
		}
	}
	if _, err := os.Stat(d.unitBackup(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove, stat kept original = %v, want it gone", err)
	}
	if got := show(t, name, "Description"); got != "original" {
		t.Errorf("after Remove, Description = %q, want original", got)
	}
	if got := show(t, name, "Environment"); got != "ORIGINAL=1" {
		t.Errorf("after Remove, Environment = %q, want ORIGINAL=1", got)
	}
	if got := show(t, name, "ActiveState"); got != "active" {
		t.Errorf("after Remove, ActiveState = %q, want active", got)
	}
}

// TestMaskedUnitNotAdopted checks that a masked unit (a symlink to
// /dev/null) is a conflict even with adopt: true, and stays masked.
func TestMaskedUnitNotAdopted(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	path := filepath.Join(DefaultUnitDir, name)
	mustSystemctl(t, "mask", name)
	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: UnitRunning})
	r.Adopt = true
	if err := d.Prepare(ctxT(t), []*spec.Resource{r}, true); err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	if _, err := d.CheckApply(ctxT(t), r, true); !errors.Is(err, ErrNotOwned) {
		t.Errorf("CheckApply(masked, adopt) = %v, want ErrNotOwned", err)
	}
	if ch, err := d.Remove(ctxT(t), r.ID, true); err != nil || ch.Action != spec.ActionNone {
		t.Errorf("Remove(masked) = %v, %v; want none", ch, err)
	}
	if target, err := os.Readlink(path); err != nil || target != "/dev/null" {
		t.Errorf("readlink %s = %q, %v; want /dev/null", path, target, err)
	}
	if got := systemctl(t, "is-enabled", name); got != "masked" {
		t.Errorf("is-enabled %s = %q, want masked", name, got)
	}
}

// TestAdoptDropinOfPackagedUnit checks prune after adopting only a drop-in:
// an administrator's drop-in of a packaged unit, taken over by a unit that
// overrides the packaged one, is put back with the packaged unit, which
// then runs with it.
func TestAdoptDropinOfPackagedUnit(t *testing.T) {
	d := newDriver(t)
	name := unitName(t, ".service")
	vendorUnit(t, name)
	dropin := filepath.Join(DefaultUnitDir, name+".d", "10-a.conf")
	original := []byte("[Service]\nEnvironment=ADMIN=1\n")
	if err := os.MkdirAll(filepath.Dir(dropin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropin, original, 0o644); err != nil {
		t.Fatal(err)
	}
	mustSystemctl(t, "daemon-reload")
	mustSystemctl(t, "restart", name)

	r := unitResource(&Unit{Name: name, Content: []byte(sleeper), State: UnitRunning, Override: true,
		Dropins: map[string][]byte{"10-a.conf": []byte("[Service]\nEnvironment=OUTPOST=1\n")}})
	r.Adopt = true
	mustApply(t, d, r)
	if got := show(t, name, "Environment"); got != "OUTPOST=1" {
		t.Errorf("adopted Environment = %q, want OUTPOST=1", got)
	}
	ch, err := d.Remove(ctxT(t), r.ID, true)
	if err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	if want := []string{"unit file", "drop-in 10-a.conf restored"}; !slices.Equal(ch.Fields, want) {
		t.Errorf("Remove() fields = %q, want %q", ch.Fields, want)
	}
	if got, err := os.ReadFile(dropin); err != nil || string(got) != string(original) {
		t.Errorf("after Remove, drop-in = %q, %v; want the original %q", got, err, original)
	}
	if _, err := os.Stat(filepath.Join(DefaultUnitDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Remove, stat the unit file = %v, want it gone", err)
	}
	mustSystemctl(t, "start", name)
	for prop, want := range map[string]string{"Description": "vendor", "Environment": "ADMIN=1"} {
		if got := show(t, name, prop); got != want {
			t.Errorf("after Remove, the packaged unit's %s = %q, want %q", prop, got, want)
		}
	}
}
