package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// fileChange is what differs in a unit's files.
type fileChange struct {
	fields []string
	// create: the unit file did not exist.
	create bool
	// restart: the unit's configuration changed (content or drop-ins), so a
	// running unit must restart to use it.
	restart bool
	// drifted: the unit file exists and its marker records the current
	// spec, so every difference was made by hand.
	drifted bool
	// before holds the unit file's body and the drop-ins that differ, as
	// found, for the change's diff; nil when no content differs.
	before *spec.Before
}

// keepBefore records what a differing file held, for the change's diff.
// body is nil for a unit file that did not exist.
func (c *fileChange) keepBefore(dropin string, body []byte) {
	if c.before == nil {
		c.before = &spec.Before{}
	}
	if dropin == "" {
		c.before.Content = body
		c.before.Size = int64(len(body))
		return
	}
	if c.before.Dropins == nil {
		c.before.Dropins = map[string][]byte{}
	}
	c.before.Dropins[dropin] = body
}

// filePlan is what converging a unit's files writes and removes.
type filePlan struct {
	change fileChange
	// backups keep the originals of the files that adopt takes over; they
	// are written first, so that no original is lost.
	backups []fileWrite
	writes  []fileWrite
	removes []string
	rmdir   string // the drop-in directory, removed when empty
}

type fileWrite struct {
	path string
	data []byte
}

func (p *filePlan) empty() bool { return len(p.writes) == 0 && len(p.removes) == 0 }

// planFiles compares the unit's files on disk with u. A file in the way that
// Outpost did not write is ErrNotOwned, unless adopt: then the plan keeps
// its original and takes it over. A unit that would replace a packaged one
// is ErrShadowsVendor unless u says override.
//
// Its steps (unit file, then each drop-in, each owned, adopted or
// foreign) share the plan being built, so it stays one function.
func (d *Driver) planFiles(u *Unit, hash string, adopt bool) (filePlan, error) {
	var p filePlan
	if err := d.checkVendor(u); err != nil {
		return p, err
	}
	markerOnly := false
	path := d.unitPath(u.Name)
	data, err := readRegular(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.change.create = true
		p.change.restart = true
		p.change.fields = append(p.change.fields, "unit file")
		p.writes = append(p.writes, fileWrite{path, render(hash, u.Content)})
	case err != nil:
		return p, fmt.Errorf("read unit file: %w", err)
	default:
		owned, old, body := parseMarker(data)
		if !owned {
			if err := d.planAdopt(&p, adopt, path, d.unitBackup(u.Name), data); err != nil {
				return p, err
			}
			p.change.fields = append(p.change.fields, "adopted unit file")
		}
		p.change.drifted = owned && old == hash
		switch {
		case !bytes.Equal(body, u.Content):
			p.change.restart = true
			p.change.fields = append(p.change.fields, "content")
			p.change.keepBefore("", body)
			p.writes = append(p.writes, fileWrite{path, render(hash, u.Content)})
		case old != hash:
			// Only the spec around the file changed; record it so that
			// later changes by hand are known as drift.
			markerOnly = true
			p.writes = append(p.writes, fileWrite{path, render(hash, u.Content)})
		}
	}

	names := make([]string, 0, len(u.Dropins))
	for n := range u.Dropins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		dp := d.dropinPath(u.Name, n)
		want := render("", u.Dropins[n])
		data, err := readRegular(dp)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return p, fmt.Errorf("read drop-in: %w", err)
		default:
			owned, _, _ := parseMarker(data)
			if !owned {
				if err := d.planAdopt(&p, adopt, dp, d.dropinBackup(u.Name, n), data); err != nil {
					return p, err
				}
				p.change.fields = append(p.change.fields, "adopted drop-in "+n)
			} else if bytes.Equal(data, want) {
				continue
			}
		}
		p.change.restart = true
		p.change.fields = append(p.change.fields, "drop-in "+n)
		p.writes = append(p.writes, fileWrite{dp, want})
		if data != nil {
			_, _, body := parseMarker(data)
			p.change.keepBefore(n, body)
		}
	}

	stale, err := d.ownedDropins(u.Name)
	if err != nil {
		return p, err
	}
	for _, n := range stale {
		if _, ok := u.Dropins[n]; ok {
			continue
		}
		p.change.restart = true
		p.change.fields = append(p.change.fields, "drop-in "+n+" removed")
		p.removes = append(p.removes, d.dropinPath(u.Name, n))
	}
	if len(u.Dropins) == 0 {
		p.rmdir = d.dropinDir(u.Name)
	}
	if markerOnly && len(p.change.fields) == 0 {
		p.change.fields = []string{"marker"}
	}
	return p, nil
}

// readRegular reads the file at p, which Outpost only ever writes as a
// regular file. Anything else there is someone else's, adopt or not: a
// symlink is a masked (to /dev/null), linked or aliased unit, which a copy
// of its target could not put back as it was.
func readRegular(p string) ([]byte, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is a %s, not a regular file (a masked, linked or aliased unit is left alone, even with adopt): %w",
			p, fileType(fi.Mode()), ErrNotOwned)
	}
	return os.ReadFile(p)
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsDir():
		return "directory"
	}
	return "special file"
}

// ownedDropins lists the drop-ins of name that carry the marker.
func (d *Driver) ownedDropins(name string) ([]string, error) {
	entries, err := os.ReadDir(d.dropinDir(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read drop-ins: %w", err)
	}
	var owned []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d.dropinDir(name), e.Name()))
		if err != nil {
			continue
		}
		if ok, _, _ := parseMarker(data); ok {
			owned = append(owned, e.Name())
		}
	}
	return owned, nil
}

// apply writes and removes the plan's files.
func (p *filePlan) apply() error {
	for _, b := range p.backups {
		if err := keepOriginal(b); err != nil {
			return err
		}
	}
	for _, w := range p.writes {
		if err := os.MkdirAll(filepath.Dir(w.path), 0o755); err != nil {
			return fmt.Errorf("write unit files: %w", err)
		}
		if err := atomicfile.WriteFile(w.path, w.data, 0o644, atomicfile.Options{}); err != nil {
			return err
		}
	}
	for _, r := range p.removes {
		if err := os.Remove(r); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove drop-in: %w", err)
		}
	}
	if len(p.removes) > 0 {
		if err := atomicfile.SyncDir(filepath.Dir(p.removes[0])); err != nil {
			return err
		}
	}
	if p.rmdir != "" {
		os.Remove(p.rmdir) // only when empty; a drop-in of someone else's stays
	}
	return nil
}
