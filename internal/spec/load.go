package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"text/template"
)

// DefaultMaxFileSize is the default limit on a file resource's content and on
// any file that a manifest reads.
const DefaultMaxFileSize = 16 << 20

// Options tune loading.
type Options struct {
	// MaxFileSize limits a source file or rendered content; 0 means
	// DefaultMaxFileSize.
	MaxFileSize int64
	// TemplateBudget limits the bytes that the templates rendered for one
	// host make in all, values and output; 0 means DefaultTemplateBudget.
	TemplateBudget int64
	// Decrypter opens encrypted sources (IsEncrypted) for Render. Without
	// one, such a source renders as its ciphertext, marked secret: what
	// validate and plan see, which have no host's key.
	Decrypter Decrypter
}

// Decrypter opens the encrypted files of a repository with a host's keys.
type Decrypter interface {
	// Decrypt returns the plaintext of the file name, whose bytes are
	// data. Its error names the file and never quotes the content.
	Decrypt(name string, data []byte) ([]byte, error)
}

// IsEncrypted reports whether a source is an encrypted file: age
// (NAME.age) or SOPS (NAME.sops.yaml, .sops.yml, .sops.json, .sops.env, or
// NAME.sops for any other file).
func IsEncrypted(name string) bool {
	base := path.Base(name)
	if strings.HasSuffix(base, ".age") || strings.HasSuffix(base, ".sops") {
		return true
	}
	for _, ext := range []string{".yaml", ".yml", ".json", ".env"} {
		if strings.HasSuffix(base, ".sops"+ext) {
			return true
		}
	}
	return false
}

// secretObject is an object that a secret makes: its content came from an
// encrypted file, so it must never be shown, logged or digested as is.
type secretObject interface{ MarkSecret() }

// Error is one validation error at a position in the repository.
type Error struct {
	Pos Pos
	Msg string
	Err error // the cause, when there is one to test for with errors.Is
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// Errors is every validation error of a repository, sorted by position.
// Load and Render return it when the repository is invalid; test for it with
// errors.As, or for ErrInvalid with errors.Is.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Sort orders the errors by file, line, column and message.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return es[i].Msg < es[j].Msg
	})
}

// ErrInvalid is matched by errors.Is for every Errors value.
var ErrInvalid = errors.New("invalid repository")

// Is makes errors.Is(err, ErrInvalid) true for validation errors.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Unwrap makes errors.Is and errors.As see the causes of the errors, such
// as ErrTemplateBudget.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Repo is a parsed and validated environment repository, not yet rendered for
// a host. It holds everything it needs: Render does no I/O.
type Repo struct {
	opts  Options
	decls []*decl // by kind in apply order, then name, then position
	fleet *fleet
	// secrets holds the ciphertext of every file that a template's
	// secret call names, read at Load.
	secrets map[string][]byte
}

// Load reads every manifest in fsys (a directory or a commit's tree; when fsys
// implements fs.ReadLinkFS symlinks are resolved and confined to it), parses
// and validates it. On invalid input the error is an Errors listing every
// problem. Other errors (the tree cannot be read at all) are returned as
// they are.
//
// Manifests are the files named *.yaml or *.yml, outside directories and
// files whose name starts with a dot, other than fleet.yaml at the root and
// any file that a resource names as a source.
func Load(fsys fs.FS, opts Options) (*Repo, error) {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.TemplateBudget <= 0 {
		opts.TemplateBudget = DefaultTemplateBudget
	}
	l := &loader{fsys: fsys, opts: opts, failed: map[string]bool{}}
	if err := l.walk(); err != nil {
		return nil, err
	}
	l.parse()
	l.readBodies()
	l.readFleet()
	l.checkDuplicates()
	l.checkKinds()
	l.checkRefs()
	l.checkCycles()
	if len(l.errs) > 0 {
		l.errs.Sort()
		return nil, l.errs
	}
	return &Repo{opts: opts, decls: l.decls, fleet: l.fleet, secrets: l.secrets}, nil
}

// loader is the state of one Load.
type loader struct {
	fsys     fs.FS
	opts     Options
	files    []candidate
	hasFleet bool
	decls    []*decl
	fleet    *fleet
	errs     Errors
	failed   map[string]bool // manifests with errors of their own
	secrets  map[string][]byte
}

type candidate struct {
	path    string
	symlink bool
	// set by parse
	decls []*decl
	errs  Errors
}

func (l *loader) errorAt(p Pos, format string, args ...any) {
	l.errs = append(l.errs, &Error{Pos: p, Msg: fmt.Sprintf(format, args...)})
}

// walk finds the candidate manifests and fleet.yaml.
func (l *loader) walk() error {
	return fs.WalkDir(l.fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return fmt.Errorf("read repository: %w", err)
			}
			l.errorAt(Pos{File: p}, "cannot read: %v", err)
			return nil
		}
		name := d.Name()
		if !Printable(name) {
			// Refused whatever it is: its name could forge output lines
			// wherever it is printed.
			l.errorAt(Pos{File: p}, "file name: %v", CheckPrintable(name))
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if p != "." && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if p == FleetFile {
			l.hasFleet = true
			return nil
		}
		if p == "fleet.yml" {
			l.errorAt(Pos{File: p}, "the fleet file must be named fleet.yaml")
			return nil
		}
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") || IsEncrypted(name) {
			// An encrypted file (NAME.sops.yaml) is a secret, never a
			// manifest.
			return nil
		}
		t := d.Type()
		if !t.IsRegular() && t&fs.ModeSymlink == 0 {
			return nil
		}
		l.files = append(l.files, candidate{path: p, symlink: t&fs.ModeSymlink != 0})
		return nil
	})
}

// parse parses every candidate, then keeps those that no resource names as a
// source.
func (l *loader) parse() {
	sources := map[string]bool{}
	for i := range l.files {
		c := &l.files[i]
		if c.symlink {
			continue
		}
		data, err := readFile(l.fsys, c.path, MaxManifestSize)
		if err != nil {
			c.errs = Errors{{Pos: Pos{File: c.path}, Msg: manifestReadError(err)}}
			continue
		}
		d := &Decoder{file: c.path}
		c.decls = d.manifest(data)
		c.errs = d.errs
		for _, r := range c.decls {
			for _, b := range r.bodies {
				if !b.inline {
					sources[b.text] = true
				}
			}
		}
	}
	for _, c := range l.files {
		if sources[c.path] {
			continue
		}
		if c.symlink {
			l.errorAt(Pos{File: c.path}, "a manifest must be a regular file, not a symlink")
			continue
		}
		if len(c.errs) > maxErrorsPerFile {
			c.errs.Sort()
			c.errs = append(c.errs[:maxErrorsPerFile], &Error{Pos: c.errs[maxErrorsPerFile].Pos, Msg: fmt.Sprintf("too many errors in this file; the first %d are shown", maxErrorsPerFile)})
		}
		l.errs = append(l.errs, c.errs...)
		l.decls = append(l.decls, c.decls...)
		if len(c.errs) > 0 {
			l.failed[c.path] = true
		}
	}
	order := map[Kind]int{}
	for i, k := range Kinds() {
		order[k] = i
	}
	sort.SliceStable(l.decls, func(i, j int) bool {
		a, b := l.decls[i].res, l.decls[j].res
		if a.ID.Kind != b.ID.Kind {
			return order[a.ID.Kind] < order[b.ID.Kind]
		}
		if a.ID.Name != b.ID.Name {
			return a.ID.Name < b.ID.Name
		}
		if a.Pos.File != b.Pos.File {
			return a.Pos.File < b.Pos.File
		}
		return a.Pos.Line < b.Pos.Line
	})
}

func manifestReadError(err error) string {
	var tl *tooLargeError
	if errors.As(err, &tl) {
		return fmt.Sprintf("a manifest must not be larger than %d bytes", MaxManifestSize)
	}
	return "cannot read: " + err.Error()
}

// readBodies reads every source, checks sizes and parses templates.
func (l *loader) readBodies() {
	for _, r := range l.decls {
		for _, b := range r.bodies {
			l.readBody(b.Body, b.prefix)
		}
	}
}

func (l *loader) readBody(b *Body, what string) {
	name := "content"
	if b.inline {
		if int64(len(b.text)) > l.opts.MaxFileSize {
			l.errorAt(b.pos, "%scontent: larger than %d bytes", what, l.opts.MaxFileSize)
			return
		}
		b.data = []byte(b.text)
	} else {
		data, err := readFile(l.fsys, b.text, l.opts.MaxFileSize)
		if err != nil {
			l.errorAt(b.pos, "%s%s: %v", what, b.sourceField(), err)
			return
		}
		b.data = data
		name = b.text
	}
	if b.tmpl != nil && b.secret {
		l.errorAt(b.pos, "%s%s: %s is encrypted and cannot be a template", what, b.sourceField(), b.text)
		b.tmpl = nil
		return
	}
	if b.tmpl != nil {
		t, err := parseTemplate(name, string(b.data))
		if err != nil {
			l.errorAt(b.pos, "%v", err)
			b.tmpl = nil
			return
		}
		b.tmpl = t
		l.readSecrets(b, t)
	}
}

// readSecrets reads the encrypted files that a template's secret calls
// name, relative to the repository's root.
func (l *loader) readSecrets(b *Body, t *template.Template) {
	files, err := secretCalls(t)
	if err != nil {
		l.errorAt(b.pos, "%v", err)
		return
	}
	for _, f := range files {
		switch {
		case f == "" || path.IsAbs(f) || path.Clean(f) != f || escapes(f):
			l.errorAt(b.pos, "template: secret %q: name a file by its clean path from the repository's root", f)
			continue
		case !IsEncrypted(f):
			l.errorAt(b.pos, "template: secret %q: not an encrypted file (NAME.age, NAME.sops.yaml...)", f)
			continue
		}
		if _, ok := l.secrets[f]; ok {
			continue
		}
		data, err := readFile(l.fsys, f, l.opts.MaxFileSize)
		if err != nil {
			l.errorAt(b.pos, "template: secret %q: %v", f, err)
			continue
		}
		if l.secrets == nil {
			l.secrets = map[string][]byte{}
		}
		l.secrets[f] = data
		b.secretFiles = append(b.secretFiles, f)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readFleet reads fleet.yaml and finds the targets that cover each manifest.
func (l *loader) readFleet() {
	l.fleet = &fleet{}
	if !l.hasFleet {
		return
	}
	data, err := readFile(l.fsys, FleetFile, MaxManifestSize)
	if err != nil {
		l.errorAt(Pos{File: FleetFile}, "%s", manifestReadError(err))
		l.fleet.present = true
		return
	}
	d := &Decoder{file: FleetFile}
	l.fleet = d.fleet(l.fsys, data)
	l.errs = append(l.errs, d.errs...)
	for _, r := range l.decls {
		for i := range l.fleet.targets {
			if l.fleet.targets[i].covers(r.file) {
				r.targets = append(r.targets, i)
			}
		}
	}
	manifests := map[string]bool{}
	for _, r := range l.decls {
		manifests[r.file] = true
	}
	for _, t := range l.fleet.targets {
		if t.file && !manifests[t.path] && !l.failed[t.path] {
			l.errorAt(t.pathPos, "path: %s is not a manifest that declares resources", t.path)
		}
	}
}

// collide reports whether a and b can both apply to one host.
func (l *loader) collide(a, b *decl) bool {
	if !l.fleet.present {
		return true
	}
	for _, i := range a.targets {
		for _, j := range b.targets {
			if compatible(&l.fleet.targets[i], &l.fleet.targets[j]) {
				return true
			}
		}
	}
	return false
}

// checkDuplicates reports two declarations of one ID that can apply to the
// same host. Each later one names the first it collides with.
func (l *loader) checkDuplicates() {
	byID := map[ID][]*decl{}
	for _, r := range l.decls {
		byID[r.res.ID] = append(byID[r.res.ID], r)
	}
	for id, rs := range byID {
		if len(rs) < 2 {
			continue
		}
		sort.SliceStable(rs, func(i, j int) bool { return posLess(rs[i].res.Pos, rs[j].res.Pos) })
		for j := 1; j < len(rs); j++ {
			for i := 0; i < j; i++ {
				if l.collide(rs[i], rs[j]) {
					l.errorAt(rs[j].res.Pos, "duplicate %s: first declared at %s", id, rs[i].res.Pos)
					break
				}
			}
		}
	}
}

func posLess(a, b Pos) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Col < b.Col
}

// checkRefs reports references in after and restart_on to resources that
// the repository does not declare.
func (l *loader) checkRefs() {
	ids := map[ID]bool{}
	for _, r := range l.decls {
		ids[r.res.ID] = true
	}
	for _, r := range l.decls {
		for _, x := range r.after {
			if !ids[x.id] {
				l.errorAt(x.pos, "after: %s is not declared in the repository", x.id)
			}
		}
		for _, x := range r.restart {
			if k := lookup(x.id.Kind); k != nil && k.Trigger && !ids[x.id] {
				l.errorAt(x.pos, "restart_on: %s is not declared in the repository", x.id)
			}
		}
	}
}

// checkCycles reports every cycle of ordering edges, at the reference that
// closes it. A resource converges after what it names in after and in
// restart_on, so both kinds of edge count.
func (l *loader) checkCycles() {
	type edge struct {
		ref
		field string
	}
	edges := map[ID][]edge{}
	add := func(from ID, x ref, field string) {
		if !slices.ContainsFunc(edges[from], func(y edge) bool { return y.id == x.id }) {
			edges[from] = append(edges[from], edge{x, field})
		}
	}
	for _, r := range l.decls {
		for _, x := range r.after {
			add(r.res.ID, x, "after")
		}
		for _, x := range r.restart {
			add(r.res.ID, x, "restart_on")
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := map[ID]int{}
	var stack []ID
	var visit func(id ID)
	visit = func(id ID) {
		color[id] = grey
		stack = append(stack, id)
		for _, x := range edges[id] {
			switch color[x.id] {
			case white:
				visit(x.id)
			case grey:
				start := slices.Index(stack, x.id)
				parts := make([]string, 0, len(stack)-start+1)
				for _, s := range stack[start:] {
					parts = append(parts, s.String())
				}
				parts = append(parts, x.id.String())
				l.errorAt(x.pos, "%s: dependency cycle %s", x.field, strings.Join(parts, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		color[id] = black
	}
	for _, r := range l.decls { // decls are sorted, so the walk is stable
		if color[r.res.ID] == white {
			visit(r.res.ID)
		}
	}
}

// applies reports whether r applies to host.
func (rp *Repo) applies(r *decl, host Host) bool {
	if !rp.fleet.present {
		return true
	}
	for _, i := range r.targets {
		if rp.fleet.targets[i].selects(host) {
			return true
		}
	}
	return false
}

// Render selects the resources that apply to host through fleet.yaml,
// renders templates, and returns the host's desired state. A reference in
// after or restart_on to a resource that does not apply to host is an
// error. The result is the caller's to change. Render does no I/O and is
// safe for concurrent use.
func (rp *Repo) Render(host Host) (*State, error) {
	var errs Errors
	st := &State{AllowMassPrune: rp.fleet.allowMassPrune, UpdateMode: rp.fleet.updateMode, Windows: rp.Windows(host)}
	work := newBudget(rp.opts.TemplateBudget, rp.opts.MaxFileSize)
	var selected []*decl
	present := map[ID]*decl{}
	for _, r := range rp.decls {
		if !rp.applies(r, host) {
			continue
		}
		if first, dup := present[r.res.ID]; dup {
			// Load refuses this; kept as a guard.
			errs = append(errs, &Error{Pos: r.res.Pos, Msg: fmt.Sprintf("duplicate %s: first declared at %s", r.res.ID, first.res.Pos)})
			continue
		}
		present[r.res.ID] = r
		selected = append(selected, r)
	}
	for _, r := range selected {
		res := r.res // a copy, with its own object
		res.After, res.RestartOn = nil, nil
		if r.res.Object != nil {
			res.Object = r.res.Object.Clone()
		}
		for _, x := range r.after {
			if present[x.id] == nil {
				errs = append(errs, &Error{Pos: x.pos, Msg: fmt.Sprintf("after: %s does not apply to host %s", x.id, host.Name)})
			}
			res.After = append(res.After, x.id)
		}
		for _, x := range r.restart {
			if present[x.id] == nil {
				errs = append(errs, &Error{Pos: x.pos, Msg: fmt.Sprintf("restart_on: %s does not apply to host %s", x.id, host.Name)})
			}
			res.RestartOn = append(res.RestartOn, x.id)
		}
		for _, b := range r.bodies {
			if b.secret {
				rp.renderSecret(&res, b)
				continue
			}
			data, err := rp.renderBody(b.Body, host, work)
			var se *secretError
			if len(b.secretFiles) > 0 {
				rp.markSecret(&res, b.secretFiles...)
			}
			switch {
			case errors.As(err, &se):
				res.Err = se
			case err != nil:
				errs = append(errs, &Error{Pos: b.pos, Msg: err.Error(), Err: err})
			}
			b.set(res.Object, data)
		}
		st.Resources = append(st.Resources, &res)
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return st, nil
}

// renderSecret sets a body from an encrypted source: its plaintext, or
// without a Decrypter its ciphertext. A file this host cannot decrypt
// fails its resource alone (Resource.Err), not the revision: the other
// resources converge, and the host keeps what it has of this one.
func (rp *Repo) renderSecret(res *Resource, b boundBody) {
	rp.markSecret(res, b.text)
	if rp.opts.Decrypter == nil {
		b.set(res.Object, bytes.Clone(b.data))
		return
	}
	data, err := rp.opts.Decrypter.Decrypt(b.text, b.data)
	if err == nil && b.key != "" {
		var v string
		v, err = SecretValue(b.text, data, b.key)
		data = []byte(v)
	}
	if err != nil {
		res.Err = fmt.Errorf("%s%s %s: %w", b.prefix, b.sourceField(), b.text, err)
		return
	}
	b.set(res.Object, data)
}

// markSecret records that res holds secrets from files.
func (rp *Repo) markSecret(res *Resource, files ...string) {
	res.Secret = true
	res.SecretFiles = append(res.SecretFiles, files...)
	if so, ok := res.Object.(secretObject); ok {
		so.MarkSecret()
	}
}

// secretError is a template's secret that this host cannot decrypt: it
// fails the resource alone.
type secretError struct{ err error }

func (e *secretError) Error() string { return e.err.Error() }
func (e *secretError) Unwrap() error { return e.err }

func (rp *Repo) renderBody(b *Body, host Host, work *budget) ([]byte, error) {
	if b.tmpl == nil {
		return bytes.Clone(b.data), nil
	}
	var extra template.FuncMap
	var failed error
	if len(b.secretFiles) > 0 {
		extra = template.FuncMap{"secret": func(file string, key ...string) (string, error) {
			v, err := rp.secret(file, key...)
			if err != nil && failed == nil {
				failed = &secretError{fmt.Errorf("template: secret %s: %w", file, err)}
			}
			return v, err
		}}
	}
	out, err := execTemplate(b.tmpl, host, rp.opts.MaxFileSize, work, extra)
	if failed != nil {
		return nil, failed
	}
	return out, err
}

// secret is the template's secret function: the plaintext of file, or
// one value of it; without a Decrypter, a mark that stands for it.
func (rp *Repo) secret(file string, key ...string) (string, error) {
	if len(key) > 1 {
		return "", errors.New("takes a file and at most one key")
	}
	data, ok := rp.secrets[file]
	if !ok {
		return "", errors.New("not read at load")
	}
	if rp.opts.Decrypter == nil {
		return "[secret " + strings.Join(append([]string{file}, key...), " ") + "]", nil
	}
	plain, err := rp.opts.Decrypter.Decrypt(file, data)
	if err != nil {
		return "", err
	}
	if len(key) == 0 {
		return string(plain), nil
	}
	return SecretValue(file, plain, key[0])
}
