package spec

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits on a manifest's YAML, against hostile repositories. yaml.v3 itself
// refuses nesting deeper than 10,000 levels while it scans, and never
// expands aliases when it decodes into yaml.Node; Outpost expands them while
// it reads a document, so it bounds the expanded size here.
const (
	// MaxManifestSize is the largest manifest file Outpost reads.
	MaxManifestSize = 4 << 20
	// maxDocNodes bounds the nodes of one document once its aliases are
	// expanded (a "billion laughs" document exceeds it at once).
	maxDocNodes = 100_000
	// maxDepth bounds the nesting of one document: a resource needs four
	// levels.
	maxDepth = 32
	// maxErrorsPerFile stops reporting a file's errors after so many.
	maxErrorsPerFile = 100
)

func posOf(file string, n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: file}
	}
	return Pos{File: file, Line: n.Line, Col: n.Column}
}

// Errorf reports a problem at n.
func (d *Decoder) Errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: posOf(d.file, n), Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error into an Error at its line.
func syntaxError(file string, err error) *Error {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Pos: Pos{File: file, Line: line, Col: 1}, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// documents splits data into its YAML documents' root nodes, skipping empty
// documents. It stops at the first syntax error, which it reports.
func (d *Decoder) documents(data []byte) []*yaml.Node {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var roots []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return roots
		}
		if err != nil {
			d.errs = append(d.errs, syntaxError(d.file, err))
			return roots
		}
		if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
			continue
		}
		if !d.bounded(root) {
			continue
		}
		roots = append(roots, root)
	}
}

// bounded reports whether root, with its aliases expanded, stays within
// maxDocNodes and maxDepth, and reports it when not.
func (d *Decoder) bounded(root *yaml.Node) bool {
	memo := map[*yaml.Node]int{}
	busy := map[*yaml.Node]bool{}
	var problem string
	var size func(n *yaml.Node, depth int) int
	size = func(n *yaml.Node, depth int) int {
		if problem != "" {
			return 0
		}
		if depth > maxDepth {
			problem = fmt.Sprintf("nesting deeper than %d levels", maxDepth)
			return 0
		}
		if v, ok := memo[n]; ok {
			return v
		}
		if busy[n] {
			problem = "an alias refers to its own anchor"
			return 0
		}
		busy[n] = true
		total := 1
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				problem = "an alias without an anchor"
				return 0
			}
			total = size(n.Alias, depth)
		}
		for _, c := range n.Content {
			total += size(c, depth+1)
			if total > maxDocNodes {
				if problem == "" {
					problem = fmt.Sprintf("the document expands to more than %d nodes (through aliases?)", maxDocNodes)
				}
				return total
			}
		}
		delete(busy, n)
		memo[n] = total
		return total
	}
	size(root, 1)
	if problem != "" {
		d.Errorf(root, "%s", problem)
		return false
	}
	return true
}

// deref follows aliases to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// Field is one key of a mapping and its value.
type Field struct {
	Name string
	Key  *yaml.Node
	Val  *yaml.Node // dereferenced
	At   *yaml.Node // the value as written, for positions
}

// Fields reads mapping n, reporting unknown and repeated keys. what names
// the mapping in messages ("file", "update"). The result maps each known key
// that is present to its field.
func (d *Decoder) Fields(n *yaml.Node, what string, known map[string]bool) (map[string]Field, bool) {
	m := deref(n)
	if m == nil || m.Kind != yaml.MappingNode {
		d.Errorf(n, "%s: must be a mapping, got %s", what, Describe(m))
		return nil, false
	}
	out := make(map[string]Field, len(m.Content)/2)
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), m.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			d.Errorf(m.Content[i], "%s: a key must be a string, got %s", what, Describe(k))
			continue
		}
		name := k.Value
		if name == "<<" && k.ShortTag() == "!!merge" {
			d.Errorf(m.Content[i], "%s: merge keys (<<) are not supported", what)
			continue
		}
		if prev, ok := first[name]; ok {
			d.Errorf(m.Content[i], "%s: field %q repeated (first at %d:%d)", what, name, prev.Line, prev.Column)
			continue
		}
		first[name] = m.Content[i]
		if known != nil && !known[name] {
			switch hint := suggest(name, known); {
			case hint != "":
				d.Errorf(m.Content[i], "%s: unknown field %q (did you mean %q?)", what, name, hint)
			case len(known) <= 12:
				// A short list is the quickest fix.
				d.Errorf(m.Content[i], "%s: unknown field %q (known: %s)", what, name, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
			default:
				d.Errorf(m.Content[i], "%s: unknown field %q", what, name)
			}
			continue
		}
		out[name] = Field{Name: name, Key: m.Content[i], Val: deref(v), At: v}
	}
	return out, true
}

// Describe names a node's type for messages.
func Describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "a number"
		case "!!float":
			return "a number"
		}
		if len(n.Value) <= 40 {
			return strconv.Quote(n.Value) // a short string, shown as written
		}
		return "a string"
	}
	return "an unknown node"
}

// Str reads a string. Any non-null scalar counts: a tag of 1.10 is the
// string "1.10" as written, not a number.
func (d *Decoder) Str(f Field, what string) (string, bool) {
	if f.Val == nil || f.Val.Kind != yaml.ScalarNode || f.Val.ShortTag() == "!!null" {
		d.Errorf(f.At, "%s: must be a string, got %s", what, Describe(f.Val))
		return "", false
	}
	if f.Val.ShortTag() == binaryTag {
		// Its value is base64 text that means bytes; only content decodes it.
		d.Errorf(f.At, "%s: !!binary is only allowed in content", what)
		return "", false
	}
	return f.Val.Value, true
}

// binaryTag marks a scalar whose value is base64-encoded bytes.
const binaryTag = "!!binary"

// decodeBinary decodes the value of a !!binary scalar: base64, in lines
// that may be broken anywhere.
func decodeBinary(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s)
	data, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	return data, nil
}

// Bool reads true or false.
func (d *Decoder) Bool(f Field, what string) (bool, bool) {
	if f.Val == nil || f.Val.Kind != yaml.ScalarNode || f.Val.ShortTag() != "!!bool" {
		d.Errorf(f.At, "%s: must be true or false, got %s", what, Describe(f.Val))
		return false, false
	}
	b, err := strconv.ParseBool(f.Val.Value)
	if err != nil {
		d.Errorf(f.At, "%s: must be true or false, got %q", what, f.Val.Value)
		return false, false
	}
	return b, true
}

// Int reads an integer.
func (d *Decoder) Int(f Field, what string) (int64, bool) {
	if f.Val == nil || f.Val.Kind != yaml.ScalarNode || f.Val.ShortTag() != "!!int" {
		d.Errorf(f.At, "%s: must be an integer, got %s", what, Describe(f.Val))
		return 0, false
	}
	v, err := strconv.ParseInt(f.Val.Value, 0, 64)
	if err != nil {
		d.Errorf(f.At, "%s: must be an integer, got %q", what, f.Val.Value)
		return 0, false
	}
	return v, true
}

// Number reads a finite number.
func (d *Decoder) Number(f Field, what string) (float64, bool) {
	if f.Val == nil || f.Val.Kind != yaml.ScalarNode || (f.Val.ShortTag() != "!!int" && f.Val.ShortTag() != "!!float") {
		d.Errorf(f.At, "%s: must be a number, got %s", what, Describe(f.Val))
		return 0, false
	}
	v, err := strconv.ParseFloat(f.Val.Value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.Errorf(f.At, "%s: must be a finite number, got %q", what, f.Val.Value)
		return 0, false
	}
	return v, true
}

// Item is one element of a list, or one value of a map.
type Item struct {
	Key string
	Val string
	At  *yaml.Node
}

// StrList reads a list of strings.
func (d *Decoder) StrList(f Field, what string) ([]Item, bool) {
	if f.Val == nil || f.Val.Kind != yaml.SequenceNode {
		d.Errorf(f.At, "%s: must be a list, got %s", what, Describe(f.Val))
		return nil, false
	}
	out := make([]Item, 0, len(f.Val.Content))
	ok := true
	for i, c := range f.Val.Content {
		s, good := d.Str(Field{Val: deref(c), At: c}, fmt.Sprintf("%s[%d]", what, i))
		if !good {
			ok = false
			continue
		}
		out = append(out, Item{Val: s, At: c})
	}
	return out, ok
}

// StrMap reads a mapping of strings to strings.
func (d *Decoder) StrMap(f Field, what string) ([]Item, bool) {
	m, ok := d.Fields(f.At, what, nil)
	if !ok {
		return nil, false
	}
	out := make([]Item, 0, len(m))
	for name, g := range m {
		s, good := d.Str(g, what+"."+name)
		if !good {
			ok = false
			continue
		}
		out = append(out, Item{Key: name, Val: s, At: g.Key})
	}
	return out, ok
}

// composeNames maps Docker Compose's names of container fields to Outpost's,
// for the hint of an unknown field.
var composeNames = map[string]string{
	"container_name":    "name",
	"environment":       "env",
	"working_dir":       "workdir",
	"healthcheck":       "health",
	"test":              "cmd",
	"logging":           "log",
	"mem_limit":         "memory",
	"stop_grace_period": "stop_timeout",
	"restart_policy":    "restart",
	"file":              "source",
	"dest":              "path",
}

// suggest returns the known field that name was probably meant to be: its
// Docker Compose equivalent, or a field at most two edits away.
func suggest(name string, known map[string]bool) string {
	if alt, ok := composeNames[name]; ok && known[alt] {
		return alt
	}
	best, bestDist := "", 3
	for k := range known {
		if d := editDistance(name, k); d < bestDist || d == bestDist && k < best {
			best, bestDist = k, d
		}
	}
	if len(name) <= 3 && bestDist > 1 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, for short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
