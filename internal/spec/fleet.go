package spec

import (
	"io/fs"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// FleetFile is the name of the fleet file at the repository's root.
const FleetFile = "fleet.yaml"

// fleet is fleet.yaml: which paths apply to which hosts.
type fleet struct {
	present        bool
	targets        []target
	allowMassPrune bool
	updateMode     string // update.mode
	rollout        *Rollout
	windows        []Window
}

// target is one entry of fleet.yaml's targets.
type target struct {
	path   string // clean, relative to the root; "." is the whole repository
	labels map[string]string
	names  []string
	pos    Pos
	// pathPos is where path is written; file is true when path names a
	// file rather than a directory.
	pathPos Pos
	file    bool
	windows []Window
}

// covers reports whether the manifest file lies under the target's path.
func (t *target) covers(file string) bool {
	return t.path == "." || file == t.path || strings.HasPrefix(file, t.path+"/")
}

// selects reports whether the target applies to host: every label it names
// has the value it names, and the host's name is in names when names is set.
func (t *target) selects(h Host) bool {
	for k, v := range t.labels {
		if hv, ok := h.Labels[k]; !ok || hv != v {
			return false
		}
	}
	return len(t.names) == 0 || slices.Contains(t.names, h.Name)
}

// compatible reports whether some host can be selected by both targets: no
// label has two different values, and their name lists, when both are set,
// share a name. This is exact: such a host exists whenever it holds.
func compatible(a, b *target) bool {
	for k, v := range a.labels {
		if w, ok := b.labels[k]; ok && w != v {
			return false
		}
	}
	if len(a.names) == 0 || len(b.names) == 0 {
		return true
	}
	for _, n := range a.names {
		if slices.Contains(b.names, n) {
			return true
		}
	}
	return false
}

// fleet reads fleet.yaml's data. fsys is used to check that each target
// path exists.
func (d *Decoder) fleet(fsys fs.FS, data []byte) *fleet {
	fl := &fleet{present: true}
	docs := d.documents(data)
	if len(docs) == 0 {
		return fl
	}
	if len(docs) > 1 {
		d.Errorf(docs[1], "fleet.yaml must hold one document")
	}
	f, ok := d.Fields(docs[0], "fleet", FieldSet([]string{"targets", "allow_mass_prune", "update", "rollout", "windows"}))
	if !ok {
		return fl
	}
	if g, ok := f["allow_mass_prune"]; ok {
		fl.allowMassPrune, _ = d.Bool(g, "allow_mass_prune")
	}
	if g, ok := f["update"]; ok {
		fl.updateMode = d.fleetUpdate(g)
	}
	if g, ok := f["rollout"]; ok {
		fl.rollout = d.rollout(g)
	}
	if g, ok := f["windows"]; ok {
		fl.windows = d.windows(g, true)
	}
	g, ok := f["targets"]
	if !ok {
		d.Errorf(docs[0], "fleet: missing field \"targets\"")
		return fl
	}
	if g.Val == nil || g.Val.Kind != yaml.SequenceNode {
		d.Errorf(g.At, "targets: must be a list, got %s", Describe(g.Val))
		return fl
	}
	if len(g.Val.Content) == 0 {
		d.Errorf(g.At, "targets: an empty list applies nothing to any host")
	}
	for _, e := range g.Val.Content {
		if t, ok := d.target(fsys, e); ok {
			fl.targets = append(fl.targets, t)
		}
	}
	return fl
}

// fleetUpdate reads fleet.yaml's update: the default update mode of the
// containers that follow a registry.
func (d *Decoder) fleetUpdate(g Field) string {
	f, ok := d.Fields(g.At, "update", FieldSet([]string{"mode"}))
	if !ok {
		return ""
	}
	h, ok := f["mode"]
	if !ok {
		return ""
	}
	s, ok := d.Str(h, "update.mode")
	if ok && s != "host" && s != "git" {
		d.Errorf(h.At, "update.mode: %q: want host or git", s)
		return ""
	}
	return s
}

func (d *Decoder) target(fsys fs.FS, n *yaml.Node) (target, bool) {
	t := target{pos: posOf(d.file, n)}
	f, ok := d.Fields(n, "target", FieldSet([]string{"path", "selector", "windows"}))
	if !ok {
		return t, false
	}
	g, ok := f["path"]
	if !ok {
		d.Errorf(n, "target: missing field \"path\"")
		return t, false
	}
	p, ok := d.Str(g, "path")
	if !ok {
		return t, false
	}
	switch {
	case p == "" || path.IsAbs(p) || strings.ContainsRune(p, 0):
		d.Errorf(g.At, "path: %q must be a path relative to the repository's root", p)
		return t, false
	case CheckPrintable(p) != nil:
		d.Errorf(g.At, "path: %v", CheckPrintable(p))
		return t, false
	case path.Clean(p) != p:
		d.Errorf(g.At, "path: %q must be a clean path (%q)", p, path.Clean(p))
		return t, false
	case escapes(p):
		d.Errorf(g.At, "path: %q leaves the repository", p)
		return t, false
	}
	real, err := resolve(fsys, p)
	if err != nil {
		d.Errorf(g.At, "path: %v", err)
		return t, false
	}
	if real != p {
		d.Errorf(g.At, "path: %q must not go through a symlink", p)
		return t, false
	}
	if _, err := fs.Stat(fsys, p); err != nil {
		d.Errorf(g.At, "path: %q does not exist", p)
		return t, false
	}
	t.path = p
	t.pathPos = posOf(d.file, g.At)
	if fi, err := fs.Stat(fsys, p); err == nil && !fi.IsDir() {
		t.file = true
	}
	if g, ok := f["selector"]; ok {
		sel, ok := d.selector(g)
		if !ok {
			return t, false
		}
		t.labels, t.names = sel.labels, sel.names
	}
	if g, ok := f["windows"]; ok {
		t.windows = d.windows(g, false)
	}
	return t, true
}

// selector is a selector of hosts: labels, names, or both.
type selector struct {
	labels map[string]string
	names  []string
}

// matches reports whether h has every label and, when names are set, one
// of the names.
func (s selector) matches(h Host) bool {
	for k, v := range s.labels {
		if hv, ok := h.Labels[k]; !ok || hv != v {
			return false
		}
	}
	return len(s.names) == 0 || slices.Contains(s.names, h.Name)
}

// selector reads a selector: {labels: {k: v}, names: [a, b]}.
func (d *Decoder) selector(g Field) (selector, bool) {
	var s selector
	sf, ok := d.Fields(g.At, "selector", FieldSet([]string{"labels", "names"}))
	if !ok {
		return s, false
	}
	if h, ok := sf["labels"]; ok {
		items, _ := d.StrMap(h, "selector.labels")
		s.labels = make(map[string]string, len(items))
		for _, it := range items {
			if it.Key == "" {
				d.Errorf(it.At, "selector.labels: a label name must not be empty")
			}
			s.labels[it.Key] = it.Val
		}
	}
	if h, ok := sf["names"]; ok {
		items, _ := d.StrList(h, "selector.names")
		s.names = []string{}
		for _, it := range items {
			if it.Val == "" {
				d.Errorf(it.At, "selector.names: a host name must not be empty")
			}
			s.names = append(s.names, it.Val)
		}
		if len(s.names) == 0 {
			d.Errorf(h.At, "selector.names: an empty list selects no host; leave it out to select every host")
		}
	}
	return s, true
}

// NamedHosts returns the hosts that fleet.yaml names in a selector's
// names, sorted by name, each with the labels that the selectors naming it
// ask for, so that a host known only from fleet.yaml renders as the file
// means it to (outpost plan renders them beside the hosts of the notes).
func (rp *Repo) NamedHosts() []Host {
	if rp.fleet == nil {
		return nil
	}
	byName := map[string]map[string]string{}
	for _, t := range rp.fleet.targets {
		for _, n := range t.names {
			if byName[n] == nil {
				byName[n] = map[string]string{}
			}
			for k, v := range t.labels {
				byName[n][k] = v
			}
		}
	}
	out := make([]Host, 0, len(byName))
	for _, n := range sortedKeys(byName) {
		out = append(out, Host{Name: n, Labels: byName[n]})
	}
	return out
}
