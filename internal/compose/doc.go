package compose

import (
	"bytes"
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"
)

// doc is a YAML mapping written in the order its keys are set, with
// comments.
type doc struct{ root *yaml.Node }

func newDoc() *doc { return &doc{root: &yaml.Node{Kind: yaml.MappingNode}} }

// set sets key to v, replacing an earlier value in place, with comment
// at the end of its line.
func (d *doc) set(key string, v *yaml.Node, comment string) {
	v.LineComment = comment
	for i := 0; i+1 < len(d.root.Content); i += 2 {
		if d.root.Content[i].Value == key {
			d.root.Content[i+1] = v
			return
		}
	}
	d.root.Content = append(d.root.Content, str(key), v)
}

func (d *doc) encode() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(d.root); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	return b.Bytes(), nil
}

// str is a string scalar, quoted where YAML would read it otherwise.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// num is a number scalar.
func num(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
}

// strs is a list of strings, in flow style when short.
func strs(v []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode}
	width := 0
	for _, s := range v {
		n.Content = append(n.Content, str(s))
		width += len(s) + 2
	}
	if width < 60 {
		n.Style = yaml.FlowStyle
	}
	return n
}

// strMap is a mapping of strings, sorted by key.
func strMap[M ~map[string]string](m M) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n.Content = append(n.Content, str(k), str(m[k]))
	}
	return n
}
