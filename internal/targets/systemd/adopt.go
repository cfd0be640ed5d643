package systemd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
)

// checkVendor refuses a unit that would replace one that a package
// installed, unless it says override. A template's instance
// (getty@tty1.service) replaces the template's file (getty@.service) too.
func (d *Driver) checkVendor(u *Unit) error {
	if u.Override {
		return nil
	}
	names := []string{u.Name}
	if at := strings.IndexByte(u.Name, '@'); at > 0 && !strings.Contains(u.Name, "@.") {
		names = append(names, u.Name[:at+1]+u.Name[strings.LastIndexByte(u.Name, '.'):])
	}
	for _, dir := range d.vendor {
		for _, n := range names {
			p := filepath.Join(dir, n)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s is installed by a package: %w; set override: true to replace it, "+
					"or change some of its settings with a drop-in (a file resource at %s)",
					p, ErrShadowsVendor, d.dropinPath(u.Name, "10-local.conf"))
			}
		}
	}
	return nil
}

// unitBackup and dropinBackup are where the originals of an adopted unit
// file and drop-in are kept.
func (d *Driver) unitBackup(name string) string { return filepath.Join(d.backup, name) }
func (d *Driver) dropinBackup(name, f string) string {
	return filepath.Join(d.backup, name+".d", f)
}

// planAdopt adds to p the backup of the file at path, which Outpost did not
// write, when adopt allows taking it over; else the file is in the way.
func (d *Driver) planAdopt(p *filePlan, adopt bool, path, backup string, data []byte) error {
	if !adopt {
		return fmt.Errorf("%s: %w; it is left as it is (adopt: true takes it over, keeping the original to put back when the unit is pruned)", path, ErrNotOwned)
	}
	if d.backup == "" {
		return fmt.Errorf("%s: %w, and adopt needs a state directory to keep the original in", path, ErrNotOwned)
	}
	p.backups = append(p.backups, fileWrite{backup, data})
	return nil
}

// keepOriginal writes the original of an adopted file, readable by root
// only, unless an original is kept already: the first is the one that was
// there before Outpost.
func keepOriginal(b fileWrite) error {
	if _, err := os.Lstat(b.path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(b.path), 0o700); err != nil {
		return fmt.Errorf("keep the original: %w", err)
	}
	if err := atomicfile.WriteFile(b.path, b.data, 0o600, atomicfile.Options{}); err != nil {
		return fmt.Errorf("keep the original: %w", err)
	}
	return nil
}

// originals returns the kept originals of the unit name: its unit file
// (nil when none was adopted) and its drop-ins by name.
func (d *Driver) originals(name string) (unit []byte, dropins map[string][]byte, err error) {
	if d.backup == "" {
		return nil, nil, nil
	}
	unit, err = os.ReadFile(d.unitBackup(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("read the original: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(d.backup, name+".d"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("read the originals: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || checkDropin(e.Name()) != nil {
			continue
		}
		data, err := os.ReadFile(d.dropinBackup(name, e.Name()))
		if err != nil {
			return nil, nil, fmt.Errorf("read the original: %w", err)
		}
		if dropins == nil {
			dropins = map[string][]byte{}
		}
		dropins[e.Name()] = data
	}
	return unit, dropins, nil
}

// forgetOriginals removes the kept originals of name once they are back.
func (d *Driver) forgetOriginals(name string) error {
	if err := os.RemoveAll(filepath.Join(d.backup, name+".d")); err != nil {
		return fmt.Errorf("remove the originals: %w", err)
	}
	if err := os.Remove(d.unitBackup(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the original: %w", err)
	}
	return nil
}
