package sops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseTree reads a YAML or JSON document (JSON is read as YAML) whose top
// level holds the sops section beside the data.
func parseTree(data []byte, format Format) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSOPS, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: the document is not a mapping", ErrNotSOPS)
	}
	root := doc.Content[0]
	f := &File{Format: format}
	var meta *yaml.Node
	kept := root.Content[:0:0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "sops" {
			meta = root.Content[i+1]
			continue
		}
		kept = append(kept, root.Content[i], root.Content[i+1])
	}
	if meta == nil {
		return nil, ErrNotSOPS
	}
	root.Content = kept
	var m map[string]any
	if err := meta.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: the sops section: %v", ErrNotSOPS, err)
	}
	if err := f.readMeta(m); err != nil {
		return nil, err
	}
	f.walk(root, nil)
	f.emit = func() ([]byte, error) { return emitTree(&doc, root, f) }
	f.lookup = func(keys []string) (string, bool) {
		n := root
		for _, k := range keys {
			if n.Kind != yaml.MappingNode {
				return "", false
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
				}
			}
			if next == nil {
				return "", false
			}
			n = next
		}
		return n.Value, n.Kind == yaml.ScalarNode
	}
	return f, nil
}

// walk records every scalar under n, in document order, with its path:
// the keys of the mappings above it (a list adds none).
func (f *File) walk(n *yaml.Node, path []string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := append(append([]string(nil), path...), n.Content[i].Value)
			f.walk(n.Content[i+1], p)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			f.walk(c, path)
		}
	case yaml.AliasNode:
		f.walk(n.Alias, path)
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return // a null is neither encrypted nor in the MAC
		}
		node := n
		f.leaves = append(f.leaves, leaf{path: path, value: plainForMAC(n), set: func(plain, typ string) {
			node.Value = plain
			node.Style = 0
			switch typ {
			case "int":
				node.Tag = "!!int"
			case "float":
				node.Tag = "!!float"
			case "bool":
				node.Tag = "!!bool"
				if b, err := strconv.ParseBool(plain); err == nil {
					node.Value = strconv.FormatBool(b)
				}
			default:
				node.Tag = "!!str"
			}
		}})
	}
}

// plainForMAC is a value that is not encrypted, as the MAC reads it.
func plainForMAC(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!bool":
		if b, err := strconv.ParseBool(n.Value); err == nil {
			if b {
				return "True"
			}
			return "False"
		}
	case "!!float":
		if v, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
	case "!!int":
		if v, err := strconv.Atoi(n.Value); err == nil {
			return strconv.Itoa(v)
		}
	}
	return n.Value
}

// emitTree writes the decrypted document: YAML as sops writes it (four
// spaces, comments decrypted), JSON indented with tabs, binary as the
// bytes of its data.
func emitTree(doc, root *yaml.Node, f *File) ([]byte, error) {
	switch f.Format {
	case Binary:
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "data" {
				return []byte(root.Content[i+1].Value), nil
			}
		}
		return nil, fmt.Errorf("%w: a binary file without data", ErrNotSOPS)
	case JSON:
		var b bytes.Buffer
		if err := writeJSON(&b, root, ""); err != nil {
			return nil, err
		}
		b.WriteByte('\n')
		return b.Bytes(), nil
	}
	decryptComments(root, f, nil)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(4)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeJSON writes n as JSON in the order of its keys.
func writeJSON(b *bytes.Buffer, n *yaml.Node, indent string) error {
	in := indent + "\t"
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteString("{\n")
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, _ := json.Marshal(n.Content[i].Value)
			b.WriteString(in)
			b.Write(k)
			b.WriteString(": ")
			if err := writeJSON(b, n.Content[i+1], in); err != nil {
				return err
			}
			if i+2 < len(n.Content) {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteString("[\n")
		for i, c := range n.Content {
			b.WriteString(in)
			if err := writeJSON(b, c, in); err != nil {
				return err
			}
			if i+1 < len(n.Content) {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "]")
	case yaml.AliasNode:
		return writeJSON(b, n.Alias, indent)
	default:
		switch n.ShortTag() {
		case "!!int", "!!float", "!!bool", "!!null":
			b.WriteString(n.Value)
		default:
			s, _ := json.Marshal(n.Value)
			b.Write(s)
		}
	}
	return nil
}

// decryptComments decrypts the comments of a YAML tree in place: sops
// encrypts them bound to the path of the mapping they sit in. A comment
// that does not decrypt is left as it is, as sops leaves it.
func decryptComments(n *yaml.Node, f *File, path []string) {
	for _, c := range []*string{&n.HeadComment, &n.LineComment, &n.FootComment} {
		if *c != "" {
			*c = decryptComment(*c, f, path)
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			for _, c := range []*string{&k.HeadComment, &k.LineComment, &k.FootComment} {
				if *c != "" {
					*c = decryptComment(*c, f, path)
				}
			}
			decryptComments(n.Content[i+1], f, append(append([]string(nil), path...), k.Value))
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			decryptComments(c, f, path)
		}
	}
}

// decryptComment decrypts each "#ENC[...]" line of a comment block.
func decryptComment(block string, f *File, path []string) string {
	key := f.plainKey
	if key == nil {
		return block
	}
	lines := strings.Split(block, "\n")
	for i, l := range lines {
		v, ok := strings.CutPrefix(strings.TrimSpace(l), "#")
		if !ok || !strings.HasPrefix(v, "ENC[") {
			continue
		}
		if plain, _, err := decryptValue(v, key, strings.Join(path, ":")+":"); err == nil {
			lines[i] = "#" + plain
		}
	}
	return strings.Join(lines, "\n")
}
