package systemd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// Kind is the unit kind: a systemd unit file, its drop-ins, whether it is
// enabled and running.
const Kind spec.Kind = "unit"

func init() {
	converge.Register(converge.Kind{KindDef: spec.KindDef{
		Name:        Kind,
		Order:       20,
		Fields:      []string{"name", "source", "content", "dropins", "enabled", "state", "on_change", "override"},
		Hints:       []string{"units", "service", "systemd", "timer"},
		Decode:      decode,
		Restartable: true,
	}, NewDriver: buildDriver})
}

// ErrUnderRoot fails every unit of a pass under --root: --root moves
// files, but units are systemd's, which is the real host's; a demo must not
// reach it.
var ErrUnderRoot = errors.New("units are not applied under --root: they would reach the real host's systemd (run without --root to manage units)")

func buildDriver(ctx context.Context, env converge.Env) (converge.Driver, error) {
	if env.Root != "" {
		return nil, ErrUnderRoot
	}
	return New(ctx, Options{Logger: env.Logger, BackupDir: filepath.Join(env.StateDir, "adopted", "units")})
}

// Of returns r's unit, or nil when r is not a unit.
func Of(r *spec.Resource) *Unit {
	u, _ := r.Object.(*Unit)
	return u
}

// Resource wraps u in a resource, as a manifest would declare it.
func Resource(u *Unit) *spec.Resource {
	return &spec.Resource{ID: spec.ID{Kind: Kind, Name: u.Name}, Prune: true, Drift: spec.DriftRevert, Object: u}
}

// Clone implements spec.Object.
func (u *Unit) Clone() spec.Object {
	c := *u
	if u.Enabled != nil {
		e := *u.Enabled
		c.Enabled = &e
	}
	c.Dropins = maps.Clone(u.Dropins)
	return &c
}

// Canonical implements spec.Object: no content and no drop-ins are the
// same as empty ones.
func (u *Unit) Canonical() any {
	c := *u
	if len(c.Content) == 0 {
		c.Content = nil
	}
	if len(c.Dropins) == 0 {
		c.Dropins = nil
	}
	return &c
}

// UnitState is the desired run state of a unit.
type UnitState string

// Unit states. The zero value leaves the run state alone.
const (
	UnitRunning UnitState = "running"
	UnitStopped UnitState = "stopped"
)

// Unit is a managed systemd unit.
type Unit struct {
	Name    string // e.g. web-backup.timer
	Content []byte
	// Dropins maps a drop-in file name (ending in .conf) to its content,
	// written under NAME.d/.
	Dropins map[string][]byte
	Enabled *bool // nil leaves it alone
	State   UnitState
	// Reload is true when a changed unit is reloaded rather than restarted
	// (on_change: reload).
	Reload bool
	// Override is override: true: the unit may shadow a unit of the same
	// name that the host's packages install (/usr/lib/systemd/system).
	// It changes nothing that the unit puts on the host, so it is not
	// hashed.
	Override bool `json:"-"`
}

// decode reads a unit declaration.
func decode(d *spec.Decoder, f map[string]spec.Field) bool {
	root := d.Root()
	u := &Unit{}
	d.Resource().Object = u
	n, ok := d.Name("name", checkUnitName)
	if !ok {
		return false
	}
	if why := protectedUnit(n); why != "" {
		// Still a resource, so that the other errors of the file are
		// found too; the error alone keeps it from any host.
		d.Errorf(f["name"].At, "name: %s is %s, which no commit may replace, not even with override: true", n, why)
	}
	u.Name = n
	if g, ok := f["override"]; ok {
		if b, ok := d.Bool(g, "override"); ok {
			u.Override = b
		}
	}
	d.Content(f, "", root, true, func(o spec.Object, data []byte) { o.(*Unit).Content = data })
	if g, ok := f["dropins"]; ok {
		decodeDropins(d, g)
	}
	if g, ok := f["enabled"]; ok {
		if b, ok := d.Bool(g, "enabled"); ok {
			u.Enabled = &b
		}
	}
	if g, ok := f["state"]; ok {
		if s, ok := d.Str(g, "state"); ok {
			switch UnitState(s) {
			case UnitRunning, UnitStopped:
				u.State = UnitState(s)
				if isTemplateUnit(n) {
					d.Errorf(g.At, "state: a template unit (%s) cannot be started or stopped", n)
				}
			default:
				d.Errorf(g.At, "state: %q: want running or stopped", s)
			}
		}
	}
	if g, ok := f["on_change"]; ok {
		if s, ok := d.Str(g, "on_change"); ok {
			switch s {
			case "restart":
			case "reload":
				u.Reload = true
			default:
				d.Errorf(g.At, "on_change: %q: want restart or reload", s)
			}
		}
	}
	return true
}

func decodeDropins(d *spec.Decoder, g spec.Field) {
	m, ok := d.Fields(g.At, "dropins", nil)
	if !ok {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		e := m[name]
		if !dropinRE.MatchString(name) {
			d.Errorf(e.Key, "dropins: %q must be a file name ending in .conf", name)
			continue
		}
		ef, ok := d.Fields(e.At, "dropins."+name, spec.FieldSet([]string{"source", "content"}))
		if !ok {
			continue
		}
		d.Content(ef, "dropins."+name, e.At, true, func(o spec.Object, data []byte) {
			u := o.(*Unit)
			if u.Dropins == nil {
				u.Dropins = map[string][]byte{}
			}
			u.Dropins[name] = data
		})
	}
}

var unitTypes = map[string]bool{
	"service": true, "socket": true, "timer": true, "path": true, "mount": true,
	"automount": true, "target": true, "slice": true, "scope": true, "swap": true, "device": true,
}

var unitPrefixRE = regexp.MustCompile(`^[a-zA-Z0-9:_.\\-]+(@[a-zA-Z0-9:_.\\-]*)?$`)

// checkUnitName accepts a systemd unit name with a known type suffix.
func checkUnitName(n string) error {
	if strings.Contains(n, "/") {
		return fmt.Errorf("%q must be a unit name, not a path", n)
	}
	if len(n) > 255 {
		return fmt.Errorf("%q is longer than 255 characters", n)
	}
	dot := strings.LastIndexByte(n, '.')
	if dot < 0 || !unitTypes[n[dot+1:]] {
		return fmt.Errorf("%q must end in a unit type (.service, .socket, .timer, .path, .mount, .automount, .target, .slice, .scope, .swap, .device)", n)
	}
	prefix := n[:dot]
	if prefix == "" || !unitPrefixRE.MatchString(prefix) || strings.HasPrefix(prefix, "@") {
		return fmt.Errorf("%q is not a valid unit name (letters, digits, \":_.\\-\" and one \"@\")", n)
	}
	return nil
}

// isTemplateUnit reports whether n is a template such as foo@.service.
func isTemplateUnit(n string) bool {
	return strings.Contains(n, "@.")
}

var dropinRE = regexp.MustCompile(`^[a-zA-Z0-9_.@-]+\.conf$`)
