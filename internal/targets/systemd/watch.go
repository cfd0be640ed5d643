package systemd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/fsnotify/fsnotify"
	"github.com/godbus/dbus/v5"

	"github.com/outpost-gitops/outpost/internal/spec"
)

const (
	systemdDest    = "org.freedesktop.systemd1"
	systemdPath    = dbus.ObjectPath("/org/freedesktop/systemd1")
	unitPathPrefix = "/org/freedesktop/systemd1/unit/"
	managerIface   = "org.freedesktop.systemd1.Manager"
)

// Watch reports the unit resources of rs that may have drifted: once each at
// start; then whenever systemd signals a change of a managed unit's
// properties (it was stopped, it failed, it was restarted) or a job on it
// ended; for every managed unit when unit files are enabled or disabled
// over D-Bus or systemd reloads; and whenever something happens on disk to a
// managed unit's file or drop-in directory. Our own changes are reported too:
// a spurious report costs a check, a missed one leaves drift. A unit that
// keeps failing keeps being reported; the caller paces its repairs.
//
// Watch uses its own bus connection and calls notify from its own goroutine;
// it returns nil when ctx is done, and an error when the bus connection is
// lost. It implements converge.Watcher.
//
// It is one select loop over the bus signals, the file watcher and the
// reload events; its setup and loop share the subscriptions, so it stays
// whole.
func (d *Driver) Watch(ctx context.Context, rs []*spec.Resource, notify func(spec.ID)) error {
	byName := map[string]spec.ID{}
	byPath := map[dbus.ObjectPath]spec.ID{}
	var all []spec.ID
	for _, r := range rs {
		if Of(r) == nil || checkName(Of(r).Name) != nil {
			continue
		}
		byName[Of(r).Name] = r.ID
		byPath[dbus.ObjectPath(unitPathPrefix+sdbus.PathBusEscape(Of(r).Name))] = r.ID
		all = append(all, r.ID)
	}

	conn, err := dbus.SystemBusPrivate(dbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("watch units: connect to the system bus: %w", err)
	}
	defer conn.Close()
	if err := conn.Auth(nil); err != nil {
		return fmt.Errorf("watch units: authenticate: %w", err)
	}
	if err := conn.Hello(); err != nil {
		return fmt.Errorf("watch units: hello: %w", err)
	}
	signals := make(chan *dbus.Signal, 256)
	conn.Signal(signals)
	if err := conn.AddMatchSignalContext(ctx,
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
		dbus.WithMatchMember("PropertiesChanged"),
		dbus.WithMatchPathNamespace(systemdPath+"/unit")); err != nil {
		return fmt.Errorf("watch units: add match: %w", err)
	}
	if err := conn.AddMatchSignalContext(ctx,
		dbus.WithMatchInterface(managerIface),
		dbus.WithMatchObjectPath(systemdPath)); err != nil {
		return fmt.Errorf("watch units: add match: %w", err)
	}
	// systemd only sends its signals once a client subscribed.
	if err := conn.Object(systemdDest, systemdPath).CallWithContext(ctx, managerIface+".Subscribe", 0).Err; err != nil {
		return fmt.Errorf("watch units: subscribe: %w", err)
	}

	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch unit files: %w", err)
	}
	defer fw.Close()
	if err := fw.Add(d.dir); err != nil {
		return fmt.Errorf("watch unit files: %w", err)
	}
	for name := range byName {
		// Missing now; added when it appears.
		_ = fw.Add(d.dropinDir(name))
	}

	// A repair must not decide on a state read before the event.
	inner := notify
	notify = func(id spec.ID) {
		d.dropSnap(id.Name)
		inner(id)
	}
	for _, id := range all {
		notify(id)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-signals:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch units: the bus connection closed")
			}
			switch {
			case sig.Name == "org.freedesktop.DBus.Properties.PropertiesChanged":
				if id, ok := byPath[sig.Path]; ok {
					notify(id)
				}
			case sig.Name == managerIface+".JobRemoved" && len(sig.Body) >= 3:
				if name, _ := sig.Body[2].(string); name != "" {
					if id, ok := byName[name]; ok {
						notify(id)
					}
				}
			case sig.Name == managerIface+".UnitFilesChanged" || sig.Name == managerIface+".Reloading":
				for _, id := range all {
					notify(id)
				}
			}
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			dir, base := filepath.Split(ev.Name)
			dir = filepath.Clean(dir)
			if dir == filepath.Clean(d.dir) {
				if id, ok := byName[base]; ok {
					notify(id)
				} else if name, ok := strings.CutSuffix(base, ".d"); ok {
					if id, ok := byName[name]; ok {
						if ev.Has(fsnotify.Create) {
							_ = fw.Add(ev.Name)
						}
						notify(id)
					}
				}
				continue
			}
			if name, ok := strings.CutSuffix(filepath.Base(dir), ".d"); ok {
				if id, ok := byName[name]; ok && strings.HasSuffix(base, ".conf") {
					notify(id)
				}
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events: check everything.
			d.log.Warn("unit file watch error; checking every unit", "err", err)
			for _, id := range all {
				notify(id)
			}
		}
	}
}
