package file

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// Kind is the file kind: a file's content, mode and owner.
const Kind spec.Kind = "file"

func init() {
	converge.Register(converge.Kind{KindDef: spec.KindDef{
		Name:   Kind,
		Order:  10,
		Fields: []string{"path", "source", "content", "template", "mode", "owner", "group", "state"},
		Hints:  []string{"files", "template"},
		Decode: decode,
		CheckRef: func(name string) error {
			if err := spec.CheckAbsPath(name); err != nil {
				return fmt.Errorf("path %w", err)
			}
			return nil
		},
		Trigger: true,
		Check:   checkNested,
	}, NewDriver: newDriver})
}

func newDriver(_ context.Context, env converge.Env) (converge.Driver, error) {
	recorded := func(name string) bool { return env.Recorded(spec.ID{Kind: Kind, Name: name}) }
	return New(Options{Root: env.Root, StateDir: env.StateDir, Logger: env.Logger, Recorded: recorded}), nil
}

// Of returns r's file, or nil when r is not a file.
func Of(r *spec.Resource) *File {
	f, _ := r.Object.(*File)
	return f
}

// Resource wraps f in a resource, as a manifest would declare it: for
// tests and tools that build a desired state by hand.
func Resource(f *File) *spec.Resource {
	return &spec.Resource{ID: spec.ID{Kind: Kind, Name: f.Path}, Prune: true, Drift: spec.DriftRevert, Object: f}
}

// Clone implements spec.Object.
func (f *File) Clone() spec.Object {
	c := *f
	return &c
}

// Canonical implements spec.Object: empty and no content are the same file.
// A secret's content is digested by its keyed hash (ContentMAC), never as
// it is: the state records the digest, and a plain hash of a short secret
// could be searched for.
func (f *File) Canonical() any {
	c := *f
	if c.Secret && c.ContentMAC == nil {
		// Not sealed (outpost plan, without a host's key): the content
		// is ciphertext, and its plain hash says when it changes.
		sum := sha256.Sum256(c.Content)
		c.ContentMAC = sum[:]
	}
	if len(c.Content) == 0 || c.Secret {
		c.Content = nil
	}
	return &c
}

// MarkSecret marks the content as a secret's: it is never shown, and a
// file of the default mode (0644) is written 0600 instead.
func (f *File) MarkSecret() {
	f.Secret = true
	if f.Mode == defaultMode {
		f.Mode = 0o600
	}
}

// defaultMode is a file's mode when its manifest names none.
const defaultMode fs.FileMode = 0o644

// Seal sets the keyed hash of a secret's content with mac, which the
// agent keys with a key of the host's own.
func (f *File) Seal(mac func([]byte) []byte) {
	if f.Secret {
		f.ContentMAC = mac(f.Content)
	}
}

// File is a managed file.
type File struct {
	Path string // absolute and clean
	// Content is the rendered content: from content:, source: or a template.
	Content []byte
	Mode    fs.FileMode // default 0644
	Owner   string      // user name or numeric id; empty leaves it as created (root)
	Group   string
	// Absent is true for state: absent: the file must not exist.
	Absent bool
	// Secret is set when the content came from an encrypted file; then
	// ContentMAC, its keyed hash, stands for it in Canonical.
	Secret     bool   `json:",omitempty"`
	ContentMAC []byte `json:",omitempty"`
}

// decode reads a file declaration.
func decode(d *spec.Decoder, f map[string]spec.Field) bool {
	root := d.Root()
	fl := &File{Mode: defaultMode}
	d.Resource().Object = fl
	p, ok := d.Name("path", spec.CheckAbsPath)
	if !ok {
		return false
	}
	fl.Path = p
	if g, ok := f["state"]; ok {
		if s, ok := d.Str(g, "state"); ok {
			switch s {
			case "present":
			case "absent":
				fl.Absent = true
			default:
				d.Errorf(g.At, "state: %q: want present or absent", s)
			}
		}
	}
	if fl.Absent {
		for _, name := range []string{"source", "content", "template", "mode", "owner", "group"} {
			if g, ok := f[name]; ok {
				d.Errorf(g.Key, "%s: not allowed with state: absent", name)
			}
		}
		return true
	}
	body := d.Content(f, "", root, true, func(o spec.Object, data []byte) { o.(*File).Content = data })
	if g, ok := f["template"]; ok {
		if b, ok := d.Bool(g, "template"); ok && b && body != nil {
			body.Template()
		}
	}
	if g, ok := f["mode"]; ok {
		if s, ok := d.Str(g, "mode"); ok && g.Val.ShortTag() == "!!int" && !strings.HasPrefix(s, "0") {
			// 420 may be 0644 written in decimal, 644 may mean 0644:
			// only a leading zero says the number is octal.
			d.Errorf(g.At, "mode: %s is a number, not an octal mode: write it as a quoted string such as \"0644\"", s)
		} else if ok {
			if m, err := parseMode(s); err != nil {
				d.Errorf(g.At, "mode: %v", err)
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
		s, ok := d.Str(g, name)
		if !ok {
			continue
		}
		if !ownerRE.MatchString(s) || len(s) > 64 {
			d.Errorf(g.At, "%s: %q is not a user or group name or a numeric id", name, s)
			continue
		}
		if !validID(s) {
			// chown takes 32 bits and (uid_t)-1 means "unchanged":
			// a larger number would wrap to another id.
			d.Errorf(g.At, "%s: numeric id %s is out of range (0 to %d)", name, s, MaxID)
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

var modeRE = regexp.MustCompile(`^[0-7]{3,4}$`)

// parseMode parses an octal mode such as "0640" or "4755".
func parseMode(s string) (fs.FileMode, error) {
	if !modeRE.MatchString(s) {
		return 0, fmt.Errorf("%q is not an octal mode such as \"0644\"", s)
	}
	n, _ := strconv.ParseUint(s, 8, 32)
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

var ownerRE = regexp.MustCompile(`^([a-z_][a-zA-Z0-9_.-]*\$?|[0-9]+)$`)

// MaxID is the largest user or group id that a file's owner or group may
// name: 2^32-1 is (uid_t)-1, which chown reads as "leave unchanged".
const MaxID = 1<<32 - 2

// validID reports whether s, when it is a numeric id, is within 0..MaxID.
// A name is always valid here.
func validID(s string) bool {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n <= MaxID
}

// checkNestedFiles reports a file whose path lies under another file's path
// when both can apply to one host: one of them would have to be a
// directory.
func checkNested(c *spec.Checker) {
	rs := c.Resources()
	byPath := map[string][]*spec.Resource{}
	for _, r := range rs {
		if f := Of(r); !f.Absent {
			byPath[f.Path] = append(byPath[f.Path], r)
		}
	}
	for _, r := range rs {
		f := Of(r)
		if f.Absent {
			continue
		}
		for dir := path.Dir(f.Path); dir != "/"; dir = path.Dir(dir) {
			for _, parent := range byPath[dir] {
				if c.Collide(parent, r) {
					c.Errorf(r.Pos, "path: %s lies under file:%s, declared at %s", f.Path, dir, parent.Pos)
				}
			}
		}
	}
}
