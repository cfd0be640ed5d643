package spec

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Object is what one resource puts on the host: a file, a unit, a
// container. Each kind's package defines its own type and registers the
// kind with Register; spec only moves objects around, clones and hashes
// them.
type Object interface {
	// Clone returns a deep copy that shares nothing with the receiver:
	// rendering gives each host its own copy.
	Clone() Object
	// Canonical returns the value that Hash encodes with encoding/json:
	// what the object puts on the host, with empty and nil made equal and
	// what changes nothing on the host left out.
	Canonical() any
}

// KindDef is what spec knows of a kind: enough to read, check, order and
// hash its resources. A kind's package fills one in and registers it.
type KindDef struct {
	Name Kind
	// Order places the kind in apply order: lower first.
	Order int
	// Fields are the kind's own fields, besides the common ones (kind,
	// prune, drift, adopt, force, after, restart_on).
	Fields []string
	// Hints are words a user may write for the kind (docker for
	// container), for "did you mean".
	Hints []string
	// Decode reads one declaration of the kind from d and f, its fields: it sets the
	// resource's ID.Name and Object and reports problems with d.Errorf.
	// It returns false when the declaration has no usable name, which
	// drops it (its errors stay).
	Decode func(d *Decoder, f map[string]Field) bool
	// CheckRef, if set, checks the name in a reference to the kind
	// (after: [file:/etc/x]).
	CheckRef func(name string) error
	// Restartable is true when a resource of the kind may have
	// restart_on; Trigger is true when restart_on may name one.
	Restartable, Trigger bool
	// Check, if set, checks the kind's declarations against each other
	// once every manifest is read (two containers that publish one port).
	Check func(c *Checker)

	known map[string]bool // the common fields and Fields, made at Register
}

var registry struct {
	sync.RWMutex
	kinds []*KindDef // by Order, then Name
}

// Register adds a kind. It is called from the kind package's init, and
// panics when the name is taken or the definition is incomplete: both are
// programming errors.
func Register(k KindDef) {
	if k.Name == "" || k.Decode == nil || strings.ContainsAny(string(k.Name), ": ") {
		panic(fmt.Sprintf("spec.Register: incomplete kind %q", k.Name))
	}
	registry.Lock()
	defer registry.Unlock()
	if slices.ContainsFunc(registry.kinds, func(x *KindDef) bool { return x.Name == k.Name }) {
		panic(fmt.Sprintf("spec.Register: kind %q registered twice", k.Name))
	}
	k.known = FieldSet(commonFields, k.Fields)
	registry.kinds = append(registry.kinds, &k)
	slices.SortStableFunc(registry.kinds, func(a, b *KindDef) int {
		if a.Order != b.Order {
			return a.Order - b.Order
		}
		return strings.Compare(string(a.Name), string(b.Name))
	})
}

// Kinds lists the registered kinds in apply order.
func Kinds() []Kind {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]Kind, len(registry.kinds))
	for i, k := range registry.kinds {
		out[i] = k.Name
	}
	return out
}

// Known reports whether k is a registered kind.
func Known(k Kind) bool { return lookup(k) != nil }

func lookup(k Kind) *KindDef {
	registry.RLock()
	defer registry.RUnlock()
	for _, d := range registry.kinds {
		if d.Name == k {
			return d
		}
	}
	return nil
}

// Rank is k's place in apply order; unknown kinds come last.
func Rank(k Kind) int {
	registry.RLock()
	defer registry.RUnlock()
	for i, d := range registry.kinds {
		if d.Name == k {
			return i
		}
	}
	return len(registry.kinds)
}

// KindList names the registered kinds for messages: "file, unit or
// container".
func KindList() string {
	names := Kinds()
	var b strings.Builder
	for i, n := range names {
		switch {
		case i == 0:
		case i == len(names)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(n))
	}
	return b.String()
}

// kindHint returns the kind that word most likely means, for "did you
// mean".
func kindHint(word string) Kind {
	w := strings.ToLower(word)
	registry.RLock()
	defer registry.RUnlock()
	for _, d := range registry.kinds {
		if w == string(d.Name) || slices.Contains(d.Hints, w) {
			return d.Name
		}
	}
	return ""
}

// Decoder reads the YAML of one manifest file and collects its errors. A
// kind's Decode reads its fields through it: the helpers take a field and
// the name to print, and report what is wrong at the field's line.
type Decoder struct {
	file string
	errs Errors

	// The declaration being decoded, for a kind's Decode.
	decl   *decl
	root   *yaml.Node
	fields map[string]Field
}

// NewDecoder returns a decoder for the YAML of file, for a document that is
// not a manifest (the agent's configuration): the same readers, the same
// messages, the same "did you mean".
func NewDecoder(file string) *Decoder { return &Decoder{file: file} }

// Errors returns the problems reported so far, in the order reported.
func (d *Decoder) Errors() Errors { return d.errs }

// Resource is the resource being decoded. Its ID.Kind, Pos and common
// fields are set; Decode sets ID.Name and Object.
func (d *Decoder) Resource() *Resource { return &d.decl.res }

// Root is the declaration's mapping, where errors about the whole
// resource are reported.
func (d *Decoder) Root() *yaml.Node { return d.root }

// Name reads the field that names the resource (a unit's name, a file's
// path), which must be there and pass check, and makes it the resource's
// ID.Name. It returns false, with the error reported, when it cannot.
func (d *Decoder) Name(field string, check func(string) error) (string, bool) {
	g, ok := d.fields[field]
	if !ok {
		d.Errorf(d.root, "%s: missing field %q", d.decl.res.ID.Kind, field)
		return "", false
	}
	n, ok := d.Str(g, field)
	if !ok {
		return "", false
	}
	if err := check(n); err != nil {
		d.Errorf(g.At, "%s: %v", field, err)
		return "", false
	}
	d.decl.res.ID.Name = n
	return n, true
}

// Field returns the declaration's field name, if present.
func (d *Decoder) Field(name string) (Field, bool) {
	f, ok := d.fields[name]
	return f, ok
}

// Has reports whether the declaration has the field name.
func (d *Decoder) Has(name string) bool {
	_, ok := d.fields[name]
	return ok
}

// Pos is n's position in the manifest.
func (d *Decoder) Pos(n *yaml.Node) Pos { return posOf(d.file, n) }

// Mark records n's position for the kind's Check, which reads the marks
// back with Checker.Marks: where each of a container's ports is written,
// say. The object itself holds only what goes on the host.
func (d *Decoder) Mark(n *yaml.Node) { d.decl.marks = append(d.decl.marks, d.Pos(n)) }

// Content reads a source: or content: field of fields (the declaration's
// own when fields is nil) as content to render for each host. what names
// the mapping in messages ("" for the resource itself, "dropins.x.conf");
// required says that one of the two must be there. set stores the
// rendered bytes in the object that Render makes for a host.
func (d *Decoder) Content(fields map[string]Field, what string, at *yaml.Node, required bool, set func(Object, []byte)) *Body {
	if fields == nil {
		fields = d.fields
	}
	b := d.content(fields, what, at, required)
	if b != nil {
		d.decl.bodies = append(d.decl.bodies, boundBody{b, set})
	}
	return b
}

// File reads the string field f, named name in messages, as the path of a
// repository file relative to the manifest (as source: is, never outside
// the repository), and has Render set the file's content with set. It
// returns the path as the manifest writes it, or false when it is not
// one.
func (d *Decoder) File(f Field, name string, set func(Object, []byte)) (string, bool) {
	s, ok := d.Str(f, name)
	if !ok {
		return "", false
	}
	p, err := d.sourcePath(s)
	if err != nil {
		d.Errorf(f.At, "%s: %v", name, err)
		return "", false
	}
	b := &Body{field: name, text: p, at: f.At, pos: posOf(d.file, f.At), secret: IsEncrypted(p)}
	d.decl.bodies = append(d.decl.bodies, boundBody{b, set})
	return s, true
}

// SecretRef reads a reference to a secret, "FILE" or "FILE#KEY" (FILE
// relative to the manifest, an encrypted file; KEY a dotted path in it),
// and has Render set the decrypted value with set, as a source's content.
func (d *Decoder) SecretRef(at *yaml.Node, what, ref string, set func(Object, []byte)) {
	file, key, _ := strings.Cut(ref, "#")
	p, err := d.sourcePath(file)
	switch {
	case err != nil:
		d.Errorf(at, "%s: %v", what, err)
		return
	case !IsEncrypted(p):
		d.Errorf(at, "%s: %q is not an encrypted file (NAME.age, NAME.sops.yaml...)", what, file)
		return
	}
	b := &Body{prefix: what + ": ", text: p, at: at, pos: posOf(d.file, at), secret: true, key: key}
	d.decl.bodies = append(d.decl.bodies, boundBody{b, set})
}

// String reads the declaration's string field name into set, when it is
// present, well typed and passes check (nil checks nothing).
func (d *Decoder) String(name string, set *string, check func(string) error) {
	g, ok := d.fields[name]
	if !ok {
		return
	}
	s, ok := d.Str(g, name)
	if !ok {
		return
	}
	if check != nil {
		if err := check(s); err != nil {
			d.Errorf(g.At, "%s: %v", name, err)
			return
		}
	}
	*set = s
}

// List reads the declaration's list of strings name, keeping the items
// that pass check.
func (d *Decoder) List(name string, check func(string) error) []string {
	g, ok := d.fields[name]
	if !ok {
		return nil
	}
	items, _ := d.StrList(g, name)
	out := make([]string, 0, len(items))
	for _, it := range items {
		if check != nil {
			if err := check(it.Val); err != nil {
				d.Errorf(it.At, "%s: %v", name, err)
				continue
			}
		}
		out = append(out, it.Val)
	}
	return out
}

// Map reads the declaration's mapping of strings name, keeping the keys
// that pass check.
func (d *Decoder) Map(name string, check func(string) error) map[string]string {
	g, ok := d.fields[name]
	if !ok {
		return nil
	}
	items, _ := d.StrMap(g, name)
	out := make(map[string]string, len(items))
	for _, it := range items {
		if check != nil {
			if err := check(it.Key); err != nil {
				d.Errorf(it.At, "%s: %v", name, err)
				continue
			}
		}
		out[it.Key] = it.Val
	}
	return out
}

// Boolean reads the declaration's boolean field name into set.
func (d *Decoder) Boolean(name string, set *bool) {
	if g, ok := d.fields[name]; ok {
		if b, ok := d.Bool(g, name); ok {
			*set = b
		}
	}
}

// Checker hands a kind's Check the kind's declarations, all of them read.
type Checker struct {
	l     *loader
	decls []*decl
	by    map[*Resource]*decl
}

// Resources are the kind's declared resources, sorted by name then
// position. Their objects hold what was declared, without rendered
// content.
func (c *Checker) Resources() []*Resource {
	out := make([]*Resource, len(c.decls))
	for i, r := range c.decls {
		out[i] = &r.res
	}
	return out
}

// Marks returns the positions that the kind's Decode marked on r, in
// order.
func (c *Checker) Marks(r *Resource) []Pos { return c.by[r].marks }

// Collide reports whether a and b can both apply to one host.
func (c *Checker) Collide(a, b *Resource) bool { return c.l.collide(c.by[a], c.by[b]) }

// Errorf reports a problem at p.
func (c *Checker) Errorf(p Pos, format string, args ...any) { c.l.errorAt(p, format, args...) }

// checkKinds runs each kind's Check over its declarations.
func (l *loader) checkKinds() {
	registry.RLock()
	kinds := slices.Clone(registry.kinds)
	registry.RUnlock()
	for _, k := range kinds {
		if k.Check == nil {
			continue
		}
		c := &Checker{l: l, by: map[*Resource]*decl{}}
		for _, r := range l.decls {
			if r.res.ID.Kind == k.Name {
				c.decls = append(c.decls, r)
				c.by[&r.res] = r
			}
		}
		k.Check(c)
	}
}

// triggerList names the kinds that restart_on may name.
func triggerList() string {
	registry.RLock()
	defer registry.RUnlock()
	var names []string
	for _, k := range registry.kinds {
		if k.Trigger {
			names = append(names, string(k.Name))
		}
	}
	if len(names) == 0 {
		return "resource that can trigger a restart"
	}
	return strings.Join(names, " or ")
}
