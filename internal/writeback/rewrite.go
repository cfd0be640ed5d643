// Package writeback owns `outpost images update`: resolving the update
// policies of the containers in update mode git once for the fleet (with
// the platforms and the bad tags that the hosts' notes report), rewriting
// each pinned tag in its manifest in place, and committing and pushing
// the change with the git command.
//
// writeback imports spec, the docker target (for the container kind),
// registry and status; the agent and the engine never import it.
package writeback

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// ErrNotLiteral is matched by errors.Is when a container's tag is not
// written in its manifest as a plain value that can be rewritten: a
// template, an alias, or a value that differs from the rendered tag.
var ErrNotLiteral = errors.New("tag is not written literally")

// rewriteTag returns data with the tag of the container named name
// replaced by to. Only the bytes of that value change: comments, order,
// quoting and the other documents stay as written. The tag must read from
// in the manifest, and be written as a scalar on one line.
func rewriteTag(data []byte, name, from, to string) ([]byte, int, error) {
	n, err := findTag(data, name)
	if err != nil {
		return nil, 0, err
	}
	if n.Value != from || n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Alias != nil {
		return nil, n.Line, fmt.Errorf("container %s: %w (line %d)", name, ErrNotLiteral, n.Line)
	}
	start, err := offset(data, n.Line, n.Column)
	if err != nil {
		return nil, n.Line, err
	}
	end, repl, err := token(data[start:], n.Style, from, to)
	if err != nil {
		return nil, n.Line, fmt.Errorf("container %s: line %d: %w", name, n.Line, err)
	}
	out := make([]byte, 0, len(data)+len(to))
	out = append(out, data[:start]...)
	out = append(out, repl...)
	out = append(out, data[start+end:]...)
	return out, n.Line, nil
}

// findTag finds the value node of the tag field of the container
// declaration named name among data's documents.
func findTag(data []byte, name string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("container %s: no declaration with a tag", name)
		}
		if err != nil {
			return nil, err
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		m := doc.Content[0]
		if field(m, "kind") == nil || field(m, "kind").Value != "container" ||
			field(m, "name") == nil || field(m, "name").Value != name {
			continue
		}
		if t := field(m, "tag"); t != nil {
			return t, nil
		}
	}
}

func field(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// offset turns a node's line and column (1-based, the column counted in
// characters) into a byte offset in data.
func offset(data []byte, line, col int) (int, error) {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return 0, fmt.Errorf("line %d beyond the end", line)
		}
		off += i + 1
	}
	for c := 1; c < col; c++ {
		if off >= len(data) || data[off] == '\n' {
			return 0, fmt.Errorf("line %d: column %d beyond the end", line, col)
		}
		_, size := utf8.DecodeRune(data[off:])
		off += size
	}
	return off, nil
}

// token reads the scalar written at the start of b in style, checks that
// it reads from, and returns its length and the same scalar written with
// to in the same style.
func token(b []byte, style yaml.Style, from, to string) (int, []byte, error) {
	var quote byte
	switch style {
	case yaml.DoubleQuotedStyle:
		quote = '"'
	case yaml.SingleQuotedStyle:
		quote = '\''
	case 0:
	default:
		return 0, nil, fmt.Errorf("%w: a block or flow scalar", ErrNotLiteral)
	}
	want := from
	if quote != 0 {
		want = string(quote) + from + string(quote)
	}
	if !bytes.HasPrefix(b, []byte(want)) {
		// An escape, a line break or a comment inside: not rewritten.
		return 0, nil, fmt.Errorf("%w: written as %q", ErrNotLiteral, firstLine(b))
	}
	if quote == 0 && len(b) > len(want) && !strings.ContainsRune(" \t\r\n,]}#", rune(b[len(want)])) {
		return 0, nil, fmt.Errorf("%w: written as %q", ErrNotLiteral, firstLine(b))
	}
	if quote == 0 && !plainString(to) {
		quote = '"' // 1.10 written plain would read as a number
	}
	repl := to
	if quote != 0 {
		repl = string(quote) + to + string(quote)
	}
	return len(want), []byte(repl), nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// plainString reports whether s written plain reads as the string s.
func plainString(s string) bool {
	var n yaml.Node
	if yaml.Unmarshal([]byte("v: "+s), &n) != nil || len(n.Content) == 0 || len(n.Content[0].Content) < 2 {
		return false
	}
	v := n.Content[0].Content[1]
	return v.Tag == "!!str" && v.Value == s
}
