package spec

import (
	"fmt"
	"path"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// decl is one resource as declared in a manifest: parsed and checked, with
// its content not yet rendered for a host.
type decl struct {
	res     Resource // ID, Pos, Prune, Drift and the kind's object without content
	file    string   // the manifest, relative to the repository root
	after   []ref
	restart []ref
	bodies  []boundBody // content to render for each host
	marks   []Pos       // what the kind marked, for its Check
	targets []int       // indexes of the fleet targets that cover file
}

// boundBody is content and where it goes in a host's copy of the object.
type boundBody struct {
	*Body
	set func(Object, []byte)
}

// ref is a reference to another resource in after or restart_on.
type ref struct {
	id  ID
	pos Pos
}

// Body is content from content: or source:, possibly a template, read at
// Load and rendered for each host.
type Body struct {
	prefix string // "dropins.x.conf." in messages
	field  string // the field that names the file in messages: "source" when empty
	inline bool
	text   string // content:, or source: relative to the repository root
	at     *yaml.Node
	pos    Pos
	data   []byte             // read at Load
	tmpl   *template.Template // set when the content is a template
	// secret is set for a source that is an encrypted file
	// (IsEncrypted): data holds its ciphertext until Render decrypts it.
	// key, when set, takes one value of the decrypted document.
	secret bool
	key    string
	// secretFiles are the files that the template's secret calls name.
	secretFiles []string
}

// sourceField is the field that names the body's file, for messages.
func (b *Body) sourceField() string {
	if b.field != "" {
		return b.field
	}
	return "source"
}

// Template makes the content a Go template, rendered for each host.
func (b *Body) Template() { b.tmpl = template.New("") } // parsed once the text is read

var commonFields = []string{"kind", "prune", "drift", "adopt", "force", "after", "restart_on"}

// FieldSet makes the set of known fields that Fields takes.
func FieldSet(lists ...[]string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, f := range l {
			m[f] = true
		}
	}
	return m
}

// manifest parses one manifest file's documents into decls.
func (d *Decoder) manifest(data []byte) []*decl {
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
func (d *Decoder) resource(root *yaml.Node) *decl {
	m := deref(root)
	if m == nil || m.Kind != yaml.MappingNode {
		d.Errorf(root, "a resource must be a mapping, got %s", Describe(m))
		return nil
	}
	var kindField *Field
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i])
		if k != nil && k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			d.Errorf(m.Content[i], "merge keys (<<) are not supported")
			return nil
		}
		if k != nil && k.Kind == yaml.ScalarNode && k.Value == "kind" {
			kindField = &Field{Name: "kind", Key: m.Content[i], Val: deref(m.Content[i+1]), At: m.Content[i+1]}
			break
		}
	}
	if kindField == nil {
		d.Errorf(root, "missing field \"kind\" (%s)", KindList())
		return nil
	}
	ks, ok := d.Str(*kindField, "kind")
	if !ok {
		return nil
	}
	kind := lookup(Kind(ks))
	if kind == nil {
		if hint := kindHint(ks); hint != "" {
			d.Errorf(kindField.At, "kind: unknown kind %q (did you mean %q?)", ks, hint)
		} else {
			d.Errorf(kindField.At, "kind: unknown kind %q (want %s)", ks, KindList())
		}
		return nil
	}
	f, _ := d.Fields(root, ks, kind.known)
	r := &decl{file: d.file}
	r.res.ID.Kind = kind.Name
	r.res.Pos = posOf(d.file, root)
	r.res.Prune = true
	r.res.Drift = DriftRevert
	d.common(r, f, kind)
	d.decl, d.root, d.fields = r, root, f
	defer func() { d.decl, d.root, d.fields = nil, nil, nil }()
	if !kind.Decode(d, f) {
		return nil
	}
	return r
}

func (d *Decoder) common(r *decl, f map[string]Field, kind *KindDef) {
	if g, ok := f["prune"]; ok {
		if b, ok := d.Bool(g, "prune"); ok {
			r.res.Prune = b
		}
	}
	for name, dst := range map[string]*bool{"adopt": &r.res.Adopt, "force": &r.res.Force} {
		if g, ok := f[name]; ok {
			if b, ok := d.Bool(g, name); ok {
				*dst = b
			}
		}
	}
	if g, ok := f["drift"]; ok {
		if s, ok := d.Str(g, "drift"); ok {
			switch DriftMode(s) {
			case DriftRevert, DriftWarn, DriftIgnore:
				r.res.Drift = DriftMode(s)
			default:
				d.Errorf(g.At, "drift: %q: want revert, warn or ignore", s)
			}
		}
	}
	r.after = d.refs(f, "after")
	r.restart = d.refs(f, "restart_on")
	if len(r.restart) > 0 && !kind.Restartable {
		d.Errorf(f["restart_on"].Key, "restart_on: a %s cannot be restarted", kind.Name)
		r.restart = nil
	}
	for _, x := range r.restart {
		if k := lookup(x.id.Kind); k == nil || !k.Trigger {
			d.Errorf(nodeAt(x.pos), "restart_on: %s: must name a %s", x.id, triggerList())
		}
	}
}

// nodeAt makes a node that carries a position, for errorf.
func nodeAt(p Pos) *yaml.Node { return &yaml.Node{Line: p.Line, Column: p.Col} }

func (d *Decoder) refs(f map[string]Field, name string) []ref {
	g, ok := f[name]
	if !ok {
		return nil
	}
	items, _ := d.StrList(g, name)
	var out []ref
	seen := map[ID]bool{}
	for _, it := range items {
		id, err := ParseID(it.Val)
		if err != nil {
			d.Errorf(it.At, "%s: %v", name, err)
			continue
		}
		if k := lookup(id.Kind); k != nil && k.CheckRef != nil {
			if err := k.CheckRef(id.Name); err != nil {
				d.Errorf(it.At, "%s: %s: %v", name, it.Val, err)
				continue
			}
		}
		if seen[id] {
			d.Errorf(it.At, "%s: %s listed twice", name, id)
			continue
		}
		seen[id] = true
		out = append(out, ref{id: id, pos: posOf(d.file, it.At)})
	}
	return out
}

// content reads source: or content: into a body. what names the mapping in
// messages ("" for the resource itself); required says whether one of them
// must be present.
func (d *Decoder) content(f map[string]Field, what string, at *yaml.Node, required bool) *Body {
	prefix, dotted := "", ""
	if what != "" {
		prefix, dotted = what+": ", what+"."
	}
	src, hasSrc := f["source"]
	txt, hasTxt := f["content"]
	switch {
	case hasSrc && hasTxt:
		d.Errorf(txt.Key, "%ssource and content are exclusive", prefix)
		return nil
	case hasTxt:
		if txt.Val != nil && txt.Val.ShortTag() == binaryTag {
			data, err := decodeBinary(txt.Val.Value)
			if err != nil {
				d.Errorf(txt.At, "%scontent: !!binary: %v", dotted, err)
				return nil
			}
			return &Body{prefix: dotted, inline: true, text: string(data), at: txt.At, pos: posOf(d.file, txt.At)}
		}
		s, ok := d.Str(txt, dotted+"content")
		if !ok {
			return nil
		}
		return &Body{prefix: dotted, inline: true, text: s, at: txt.At, pos: posOf(d.file, txt.At)}
	case hasSrc:
		s, ok := d.Str(src, dotted+"source")
		if !ok {
			return nil
		}
		p, err := d.sourcePath(s)
		if err != nil {
			d.Errorf(src.At, "%ssource: %v", dotted, err)
			return nil
		}
		return &Body{prefix: dotted, text: p, at: src.At, pos: posOf(d.file, src.At), secret: IsEncrypted(p)}
	case required:
		d.Errorf(at, "%smissing field \"source\" or \"content\"", prefix)
	}
	return nil
}

// sourcePath resolves a source: relative to the manifest's directory.
func (d *Decoder) sourcePath(s string) (string, error) {
	switch {
	case s == "":
		return "", fmt.Errorf("must not be empty")
	case strings.ContainsRune(s, 0) || strings.Contains(s, "\\"):
		return "", fmt.Errorf("%q: a source must be a slash-separated path", s)
	case path.IsAbs(s):
		return "", fmt.Errorf("%q must be relative to the manifest's directory", s)
	case CheckPrintable(s) != nil:
		return "", CheckPrintable(s)
	}
	p := path.Join(path.Dir(d.file), s)
	if escapes(p) {
		return "", fmt.Errorf("%q leaves the repository", s)
	}
	return p, nil
}
