package spec

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"
)

// decl is one resource as declared in a manifest: parsed and checked, with
// its content not yet rendered for a host.
type decl struct {
	res     Resource // ID, Pos, Prune, Drift and the kind's object without content
	file    string   // the manifest, relative to the repository root
	after   []ref
	restart []ref
	body    *body            // a file's or a unit's content
	dropins map[string]*body // a unit's drop-ins
	targets []int            // indexes of the fleet targets that cover file
	portPos []Pos            // where each of a container's ports is written
}

// ref is a reference to another resource in after or restart_on.
type ref struct {
	id  ID
	pos Pos
}

// body is content from content: or source:, possibly a template.
type body struct {
	inline bool
	text   string // content:, or source: relative to the repository root
	at     *yaml.Node
	pos    Pos
	data   []byte             // read at Load
	tmpl   *template.Template // set when the file is a template
}

// kindHints maps likely mistakes for a kind to the kind meant.
var kindHints = map[string]Kind{
	"file": KindFile, "files": KindFile, "template": KindFile,
	"unit": KindUnit, "units": KindUnit, "service": KindUnit, "systemd": KindUnit, "timer": KindUnit,
	"container": KindContainer, "containers": KindContainer, "docker": KindContainer,
}

var commonFields = []string{"kind", "prune", "drift", "adopt", "force", "after", "restart_on"}

var kindFields = map[Kind][]string{
	KindFile: {"path", "source", "content", "template", "mode", "owner", "group", "state"},
	KindUnit: {"name", "source", "content", "dropins", "enabled", "state", "on_change", "override"},
	KindContainer: {"name", "image", "tag", "update", "command", "entrypoint", "env", "ports",
		"volumes", "tmpfs", "restart", "labels", "user", "workdir", "network_mode", "networks",
		"devices", "cap_add", "cap_drop", "privileged", "health", "log", "memory", "cpus",
		"stop_timeout", "stop_signal", "remove_volumes"},
}

func fieldSet(lists ...[]string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, f := range l {
			m[f] = true
		}
	}
	return m
}

// manifest parses one manifest file's documents into decls.
func (d *decoder) manifest(data []byte) []*decl {
	var out []*decl
	for _, root := range d.documents(data) {
		if len(d.errs) > maxErrorsPerFile {
			break
		}
		if r := d.resource(root); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// resource parses one document.
func (d *decoder) resource(root *yaml.Node) *decl {
	m := deref(root)
	if m == nil || m.Kind != yaml.MappingNode {
		d.errorf(root, "a resource must be a mapping, got %s", describe(m))
		return nil
	}
	var kindField *field
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i])
		if k != nil && k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			d.errorf(m.Content[i], "merge keys (<<) are not supported")
			return nil
		}
		if k != nil && k.Kind == yaml.ScalarNode && k.Value == "kind" {
			kindField = &field{name: "kind", key: m.Content[i], val: deref(m.Content[i+1]), at: m.Content[i+1]}
			break
		}
	}
	if kindField == nil {
		d.errorf(root, "missing field \"kind\" (file, unit or container)")
		return nil
	}
	ks, ok := d.str(*kindField, "kind")
	if !ok {
		return nil
	}
	kind := Kind(ks)
	if _, known := kindFields[kind]; !known {
		if hint, ok := kindHints[strings.ToLower(ks)]; ok {
			d.errorf(kindField.at, "kind: unknown kind %q (did you mean %q?)", ks, hint)
		} else {
			d.errorf(kindField.at, "kind: unknown kind %q (want file, unit or container)", ks)
		}
		return nil
	}
	f, _ := d.fields(root, string(kind), fieldSet(commonFields, kindFields[kind]))
	r := &decl{file: d.file}
	r.res.ID.Kind = kind
	r.res.Pos = posOf(d.file, root)
	r.res.Prune = true
	r.res.Drift = DriftRevert
	d.common(r, f)
	nameOK := true
	switch kind {
	case KindFile:
		nameOK = d.fileRes(r, root, f)
	case KindUnit:
		nameOK = d.unit(r, root, f)
	case KindContainer:
		nameOK = d.container(r, root, f)
	}
	if !nameOK {
		return nil
	}
	return r
}

func (d *decoder) common(r *decl, f map[string]field) {
	if g, ok := f["prune"]; ok {
		if b, ok := d.boolean(g, "prune"); ok {
			r.res.Prune = b
		}
	}
	for name, dst := range map[string]*bool{"adopt": &r.res.Adopt, "force": &r.res.Force} {
		if g, ok := f[name]; ok {
			if b, ok := d.boolean(g, name); ok {
				*dst = b
			}
		}
	}
	if g, ok := f["drift"]; ok {
		if s, ok := d.str(g, "drift"); ok {
			switch DriftMode(s) {
			case DriftRevert, DriftWarn, DriftIgnore:
				r.res.Drift = DriftMode(s)
			default:
				d.errorf(g.at, "drift: %q: want revert, warn or ignore", s)
			}
		}
	}
	r.after = d.refs(f, "after")
	r.restart = d.refs(f, "restart_on")
	if len(r.restart) > 0 && r.res.ID.Kind == KindFile {
		d.errorf(f["restart_on"].key, "restart_on: a file cannot be restarted")
		r.restart = nil
	}
	for _, x := range r.restart {
		if x.id.Kind != KindFile {
			d.errorf(nodeAt(x.pos), "restart_on: %s: must name a file (file:PATH)", x.id)
		}
	}
}

// nodeAt makes a node that carries a position, for errorf.
func nodeAt(p Pos) *yaml.Node { return &yaml.Node{Line: p.Line, Column: p.Col} }

func (d *decoder) refs(f map[string]field, name string) []ref {
	g, ok := f[name]
	if !ok {
		return nil
	}
	items, _ := d.strList(g, name)
	var out []ref
	seen := map[ID]bool{}
	for _, it := range items {
		id, err := ParseID(it.val)
		if err != nil {
			d.errorf(it.at, "%s: %v", name, err)
			continue
		}
		if id.Kind == KindFile {
			if err := checkAbsPath(id.Name); err != nil {
				d.errorf(it.at, "%s: %s: path %v", name, it.val, err)
				continue
			}
		}
		if seen[id] {
			d.errorf(it.at, "%s: %s listed twice", name, id)
			continue
		}
		seen[id] = true
		out = append(out, ref{id: id, pos: posOf(d.file, it.at)})
	}
	return out
}

// content reads source: or content: into a body. what names the mapping in
// messages ("" for the resource itself); required says whether one of them
// must be present.
func (d *decoder) content(f map[string]field, what string, at *yaml.Node, required bool) *body {
	prefix, dotted := "", ""
	if what != "" {
		prefix, dotted = what+": ", what+"."
	}
	src, hasSrc := f["source"]
	txt, hasTxt := f["content"]
	switch {
	case hasSrc && hasTxt:
		d.errorf(txt.key, "%ssource and content are exclusive", prefix)
		return nil
	case hasTxt:
		if txt.val != nil && txt.val.ShortTag() == binaryTag {
			data, err := decodeBinary(txt.val.Value)
			if err != nil {
				d.errorf(txt.at, "%scontent: !!binary: %v", dotted, err)
				return nil
			}
			return &body{inline: true, text: string(data), at: txt.at, pos: posOf(d.file, txt.at)}
		}
		s, ok := d.str(txt, dotted+"content")
		if !ok {
			return nil
		}
		return &body{inline: true, text: s, at: txt.at, pos: posOf(d.file, txt.at)}
	case hasSrc:
		s, ok := d.str(src, dotted+"source")
		if !ok {
			return nil
		}
		p, err := d.sourcePath(s)
		if err != nil {
			d.errorf(src.at, "%ssource: %v", dotted, err)
			return nil
		}
		return &body{text: p, at: src.at, pos: posOf(d.file, src.at)}
	case required:
		d.errorf(at, "%smissing field \"source\" or \"content\"", prefix)
	}
	return nil
}

// sourcePath resolves a source: relative to the manifest's directory.
func (d *decoder) sourcePath(s string) (string, error) {
	switch {
	case s == "":
		return "", fmt.Errorf("must not be empty")
	case strings.ContainsRune(s, 0) || strings.Contains(s, "\\"):
		return "", fmt.Errorf("%q: a source must be a slash-separated path", s)
	case path.IsAbs(s):
		return "", fmt.Errorf("%q must be relative to the manifest's directory", s)
	case checkPrintable(s) != nil:
		return "", checkPrintable(s)
	}
	p := path.Join(path.Dir(d.file), s)
	if escapes(p) {
		return "", fmt.Errorf("%q leaves the repository", s)
	}
	return p, nil
}

func (d *decoder) fileRes(r *decl, root *yaml.Node, f map[string]field) bool {
	fl := &File{Mode: 0o644}
	r.res.File = fl
	g, ok := f["path"]
	if !ok {
		d.errorf(root, "file: missing field \"path\"")
		return false
	}
	p, ok := d.str(g, "path")
	if !ok {
		return false
	}
	if err := checkAbsPath(p); err != nil {
		d.errorf(g.at, "path: %v", err)
		return false
	}
	fl.Path, r.res.ID.Name = p, p
	if g, ok := f["state"]; ok {
		if s, ok := d.str(g, "state"); ok {
			switch s {
			case "present":
			case "absent":
				fl.Absent = true
			default:
				d.errorf(g.at, "state: %q: want present or absent", s)
			}
		}
	}
	if fl.Absent {
		for _, name := range []string{"source", "content", "template", "mode", "owner", "group"} {
			if g, ok := f[name]; ok {
				d.errorf(g.key, "%s: not allowed with state: absent", name)
			}
		}
		return true
	}
	r.body = d.content(f, "", root, true)
	if g, ok := f["template"]; ok {
		if b, ok := d.boolean(g, "template"); ok && b && r.body != nil {
			r.body.tmpl = template.New("") // parsed once the text is read
		}
	}
	if g, ok := f["mode"]; ok {
		if s, ok := d.str(g, "mode"); ok {
			if m, err := parseMode(s); err != nil {
				d.errorf(g.at, "mode: %v", err)
			} else {
				fl.Mode = m
			}
		}
	}
	for _, name := range []string{"owner", "group"} {
		g, ok := f[name]
		if !ok {
			continue
		}
		s, ok := d.str(g, name)
		if !ok {
			continue
		}
		if !ownerRE.MatchString(s) || len(s) > 64 {
			d.errorf(g.at, "%s: %q is not a user or group name or a numeric id", name, s)
			continue
		}
		if !validID(s) {
			// chown takes 32 bits and (uid_t)-1 means "unchanged":
			// a larger number would wrap to another id.
			d.errorf(g.at, "%s: numeric id %s is out of range (0 to %d)", name, s, MaxID)
			continue
		}
		if name == "owner" {
			fl.Owner = s
		} else {
			fl.Group = s
		}
	}
	return true
}

func (d *decoder) unit(r *decl, root *yaml.Node, f map[string]field) bool {
	u := &Unit{}
	r.res.Unit = u
	g, ok := f["name"]
	if !ok {
		d.errorf(root, "unit: missing field \"name\"")
		return false
	}
	n, ok := d.str(g, "name")
	if !ok {
		return false
	}
	if err := checkUnitName(n); err != nil {
		d.errorf(g.at, "name: %v", err)
		return false
	}
	if why := protectedUnit(n); why != "" {
		// Still a resource, so that the other errors of the file are
		// found too; the error alone keeps it from any host.
		d.errorf(g.at, "name: %s is %s, which no commit may replace, not even with override: true", n, why)
	}
	u.Name, r.res.ID.Name = n, n
	if g, ok := f["override"]; ok {
		if b, ok := d.boolean(g, "override"); ok {
			u.Override = b
		}
	}
	r.body = d.content(f, "", root, true)
	if g, ok := f["dropins"]; ok {
		d.dropins(r, g)
	}
	if g, ok := f["enabled"]; ok {
		if b, ok := d.boolean(g, "enabled"); ok {
			u.Enabled = &b
		}
	}
	if g, ok := f["state"]; ok {
		if s, ok := d.str(g, "state"); ok {
			switch UnitState(s) {
			case UnitRunning, UnitStopped:
				u.State = UnitState(s)
				if isTemplateUnit(n) {
					d.errorf(g.at, "state: a template unit (%s) cannot be started or stopped", n)
				}
			default:
				d.errorf(g.at, "state: %q: want running or stopped", s)
			}
		}
	}
	if g, ok := f["on_change"]; ok {
		if s, ok := d.str(g, "on_change"); ok {
			switch s {
			case "restart":
			case "reload":
				u.Reload = true
			default:
				d.errorf(g.at, "on_change: %q: want restart or reload", s)
			}
		}
	}
	return true
}

func (d *decoder) dropins(r *decl, g field) {
	m, ok := d.fields(g.at, "dropins", nil)
	if !ok {
		return
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	r.dropins = map[string]*body{}
	for _, name := range names {
		e := m[name]
		if !dropinRE.MatchString(name) {
			d.errorf(e.key, "dropins: %q must be a file name ending in .conf", name)
			continue
		}
		ef, ok := d.fields(e.at, "dropins."+name, fieldSet([]string{"source", "content"}))
		if !ok {
			continue
		}
		if b := d.content(ef, "dropins."+name, e.at, true); b != nil {
			r.dropins[name] = b
		}
	}
}

// ReservedLabelPrefix starts the container labels with which Outpost marks
// what it owns; a manifest may not set them.
const ReservedLabelPrefix = "io.outpost."

var policies = map[string]bool{"semver": true, "numerical": true, "alphabetical": true, "digest": true}

// DefaultExclude lists the tags that an update policy never considers unless
// the manifest says otherwise: signatures, attestations and SBOMs.
var DefaultExclude = []string{"*.sig", "*.att", "*.sbom"}

func (d *decoder) container(r *decl, root *yaml.Node, f map[string]field) bool {
	c := &Container{}
	r.res.Container = c
	g, ok := f["name"]
	if !ok {
		d.errorf(root, "container: missing field \"name\"")
		return false
	}
	n, ok := d.str(g, "name")
	if !ok {
		return false
	}
	if err := checkContainerName(n); err != nil {
		d.errorf(g.at, "name: %v", err)
		return false
	}
	c.Name, r.res.ID.Name = n, n

	str := func(name string, set *string, check func(string) error) {
		g, ok := f[name]
		if !ok {
			return
		}
		s, ok := d.str(g, name)
		if !ok {
			return
		}
		if check != nil {
			if err := check(s); err != nil {
				d.errorf(g.at, "%s: %v", name, err)
				return
			}
		}
		*set = s
	}
	list := func(name string, check func(string) error) []string {
		g, ok := f[name]
		if !ok {
			return nil
		}
		items, _ := d.strList(g, name)
		out := make([]string, 0, len(items))
		for _, it := range items {
			if check != nil {
				if err := check(it.val); err != nil {
					d.errorf(it.at, "%s: %v", name, err)
					continue
				}
			}
			out = append(out, it.val)
		}
		return out
	}
	smap := func(name string, check func(string) error) map[string]string {
		g, ok := f[name]
		if !ok {
			return nil
		}
		items, _ := d.strMap(g, name)
		out := make(map[string]string, len(items))
		for _, it := range items {
			if check != nil {
				if err := check(it.key); err != nil {
					d.errorf(it.at, "%s: %v", name, err)
					continue
				}
			}
			out[it.key] = it.val
		}
		return out
	}
	boolean := func(name string, set *bool) {
		if g, ok := f[name]; ok {
			if b, ok := d.boolean(g, name); ok {
				*set = b
			}
		}
	}

	// The image, and exactly one of tag and update unless a digest pins it.
	imageOK := false
	if g, ok := f["image"]; !ok {
		d.errorf(root, "container: missing field \"image\"")
	} else if s, ok := d.str(g, "image"); ok {
		repo, digest, err := splitImage(s)
		if err != nil {
			d.errorf(g.at, "image: %v", err)
		} else {
			c.Image, c.Digest, imageOK = repo, digest, true
		}
	}
	str("tag", &c.Tag, checkTag)
	if g, ok := f["update"]; ok {
		c.Update = d.update(g)
	}
	_, hasTag := f["tag"]
	_, hasUpdate := f["update"]
	switch {
	case hasTag && hasUpdate:
		d.errorf(f["update"].key, "update: tag and update are exclusive: pin a tag or follow the registry")
	case hasUpdate && c.Digest != "":
		d.errorf(f["update"].key, "update: an image pinned by digest cannot follow the registry")
	case !hasTag && !hasUpdate && c.Digest == "" && imageOK:
		d.errorf(root, "container: missing field \"tag\" or \"update\" (Outpost never assumes \"latest\")")
	}

	c.Command = list("command", nil)
	c.Entrypoint = list("entrypoint", nil)
	c.Env = smap("env", func(k string) error {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("%q is not a variable name", k)
		}
		return nil
	})
	if g, ok := f["ports"]; ok {
		items, _ := d.strList(g, "ports")
		for _, it := range items {
			p, err := parsePort(it.val)
			if err != nil {
				d.errorf(it.at, "ports: %v", err)
				continue
			}
			c.Ports = append(c.Ports, p)
			r.portPos = append(r.portPos, posOf(d.file, it.at))
		}
	}
	if g, ok := f["volumes"]; ok {
		items, _ := d.strList(g, "volumes")
		for _, it := range items {
			v, err := parseVolume(it.val)
			if err != nil {
				d.errorf(it.at, "volumes: %v", err)
				continue
			}
			c.Volumes = append(c.Volumes, v)
		}
	}
	c.Tmpfs = list("tmpfs", checkTmpfs)
	str("restart", &c.Restart, func(s string) error {
		if !restartRE.MatchString(s) {
			return fmt.Errorf("%q: want no, always, on-failure[:N] or unless-stopped", s)
		}
		return nil
	})
	c.Labels = smap("labels", func(k string) error {
		if k == "" {
			return fmt.Errorf("a label key must not be empty")
		}
		if strings.HasPrefix(k, ReservedLabelPrefix) {
			return fmt.Errorf("%q: labels starting with %s are Outpost's own", k, ReservedLabelPrefix)
		}
		return nil
	})
	str("user", &c.User, func(s string) error {
		if s == "" || strings.ContainsAny(s, " \t\n\x00") {
			return fmt.Errorf("%q is not a user", s)
		}
		return nil
	})
	str("workdir", &c.Workdir, checkAbsPath)
	str("network_mode", &c.NetworkMode, func(s string) error {
		switch s {
		case "bridge", "host", "none":
			return nil
		}
		if other, ok := strings.CutPrefix(s, "container:"); ok {
			return checkContainerName(other)
		}
		return fmt.Errorf("%q: want bridge, host, none or container:NAME", s)
	})
	c.Networks = list("networks", func(s string) error {
		if !networkNameRE.MatchString(s) {
			return fmt.Errorf("%q is not a network name", s)
		}
		return nil
	})
	if len(c.Networks) > 0 && c.NetworkMode != "" && c.NetworkMode != "bridge" {
		d.errorf(f["networks"].key, "networks: not allowed with network_mode: %s", c.NetworkMode)
	}
	if len(c.Ports) > 0 && (c.NetworkMode == "host" || c.NetworkMode == "none" || strings.HasPrefix(c.NetworkMode, "container:")) {
		d.errorf(f["ports"].key, "ports: not allowed with network_mode: %s", c.NetworkMode)
	}
	c.Devices = list("devices", checkDevice)
	capCheck := func(s string) error {
		if !capRE.MatchString(s) {
			return fmt.Errorf("%q is not a capability such as NET_ADMIN", s)
		}
		return nil
	}
	c.CapAdd = list("cap_add", capCheck)
	c.CapDrop = list("cap_drop", capCheck)
	boolean("privileged", &c.Privileged)
	boolean("remove_volumes", &c.RemoveVolumes)
	if g, ok := f["health"]; ok {
		c.Health = d.health(g)
	}
	if g, ok := f["log"]; ok {
		c.Log = d.log(g)
	}
	if g, ok := f["memory"]; ok {
		if g.val != nil && g.val.Kind == yaml.ScalarNode && g.val.ShortTag() == "!!int" {
			if n, ok := d.integer(g, "memory"); ok {
				if n <= 0 {
					d.errorf(g.at, "memory: must be more than zero")
				}
				c.Memory = n
			}
		} else if s, ok := d.str(g, "memory"); ok {
			if n, err := parseMemory(s); err != nil {
				d.errorf(g.at, "memory: %v", err)
			} else {
				c.Memory = n
			}
		}
	}
	if g, ok := f["cpus"]; ok {
		if v, ok := d.number(g, "cpus"); ok {
			if v <= 0 || v > 1024 {
				d.errorf(g.at, "cpus: %v must be more than 0 and at most 1024", v)
			}
			c.CPUs = v
		}
	}
	if g, ok := f["stop_timeout"]; ok {
		if s, ok := d.str(g, "stop_timeout"); ok {
			if v, err := parseDuration(s); err != nil {
				d.errorf(g.at, "stop_timeout: %v", err)
			} else {
				c.StopTimeout = &v
			}
		}
	}
	str("stop_signal", &c.StopSignal, func(s string) error {
		if !signalRE.MatchString(s) {
			return fmt.Errorf("%q is not a signal such as SIGTERM", s)
		}
		return nil
	})
	return true
}

func (d *decoder) update(g field) *UpdatePolicy {
	f, ok := d.fields(g.at, "update", fieldSet([]string{"policy", "range", "order", "filter", "exclude", "tag"}))
	if !ok {
		return nil
	}
	u := &UpdatePolicy{}
	pf, ok := f["policy"]
	if !ok {
		d.errorf(g.at, "update: missing field \"policy\" (semver, numerical, alphabetical or digest)")
		return u
	}
	if s, ok := d.str(pf, "update.policy"); ok {
		if !policies[s] {
			d.errorf(pf.at, "update.policy: %q: want semver, numerical, alphabetical or digest", s)
			return u
		}
		u.Policy = s
	}
	if h, ok := f["range"]; ok {
		if s, ok := d.str(h, "update.range"); ok {
			if u.Policy != "semver" {
				d.errorf(h.key, "update.range: only for policy semver")
			} else if _, err := semver.NewConstraint(s); err != nil {
				d.errorf(h.at, "update.range: %q: %v", s, err)
			}
			u.Range = s
		}
	}
	if h, ok := f["order"]; ok {
		if s, ok := d.str(h, "update.order"); ok {
			switch {
			case u.Policy != "numerical" && u.Policy != "alphabetical":
				d.errorf(h.key, "update.order: only for policy numerical or alphabetical")
			case s != "asc" && s != "desc":
				d.errorf(h.at, "update.order: %q: want asc or desc", s)
			}
			u.Order = s
		}
	} else if u.Policy == "numerical" || u.Policy == "alphabetical" {
		u.Order = "asc"
	}
	if h, ok := f["filter"]; ok {
		if s, ok := d.str(h, "update.filter"); ok {
			if _, err := regexp.Compile(s); err != nil {
				d.errorf(h.at, "update.filter: %v", err)
			}
			u.Filter = s
		}
	}
	u.Exclude = append([]string(nil), DefaultExclude...)
	if h, ok := f["exclude"]; ok {
		items, _ := d.strList(h, "update.exclude")
		u.Exclude = []string{}
		for _, it := range items {
			if _, err := path.Match(it.val, ""); err != nil {
				d.errorf(it.at, "update.exclude: %q is not a glob pattern", it.val)
				continue
			}
			u.Exclude = append(u.Exclude, it.val)
		}
	}
	if h, ok := f["tag"]; ok {
		if s, ok := d.str(h, "update.tag"); ok {
			if u.Policy != "digest" {
				d.errorf(h.key, "update.tag: only for policy digest")
			} else if err := checkTag(s); err != nil {
				d.errorf(h.at, "update.tag: %v", err)
			}
			u.Tag = s
		}
	} else if u.Policy == "digest" {
		d.errorf(g.at, "update: policy digest needs the tag it follows (update.tag)")
	}
	return u
}

func (d *decoder) health(g field) *Health {
	f, ok := d.fields(g.at, "health", fieldSet([]string{"cmd", "interval", "timeout", "start_period", "retries"}))
	if !ok {
		return nil
	}
	h := &Health{}
	if c, ok := f["cmd"]; ok {
		items, _ := d.strList(c, "health.cmd")
		for _, it := range items {
			h.Cmd = append(h.Cmd, it.val)
		}
		if len(items) == 0 && c.val != nil && c.val.Kind == yaml.SequenceNode {
			d.errorf(c.at, "health.cmd: must not be empty")
		}
	} else {
		d.errorf(g.at, "health: missing field \"cmd\"")
	}
	for _, x := range []struct {
		name string
		set  *time.Duration
	}{{"interval", &h.Interval}, {"timeout", &h.Timeout}, {"start_period", &h.StartPeriod}} {
		c, ok := f[x.name]
		if !ok {
			continue
		}
		if s, ok := d.str(c, "health."+x.name); ok {
			if v, err := parseDuration(s); err != nil {
				d.errorf(c.at, "health.%s: %v", x.name, err)
			} else {
				*x.set = v
			}
		}
	}
	if c, ok := f["retries"]; ok {
		if n, ok := d.integer(c, "health.retries"); ok {
			if n < 0 || n > 1000 {
				d.errorf(c.at, "health.retries: %d: want 0 to 1000", n)
			} else {
				h.Retries = int(n)
			}
		}
	}
	return h
}

func (d *decoder) log(g field) *Log {
	f, ok := d.fields(g.at, "log", fieldSet([]string{"driver", "options"}))
	if !ok {
		return nil
	}
	l := &Log{}
	if c, ok := f["driver"]; ok {
		if s, ok := d.str(c, "log.driver"); ok {
			if !networkNameRE.MatchString(s) {
				d.errorf(c.at, "log.driver: %q is not a log driver name", s)
			}
			l.Driver = s
		}
	} else {
		d.errorf(g.at, "log: missing field \"driver\"")
	}
	if c, ok := f["options"]; ok {
		items, _ := d.strMap(c, "log.options")
		l.Options = make(map[string]string, len(items))
		for _, it := range items {
			l.Options[it.key] = it.val
		}
	}
	return l
}
