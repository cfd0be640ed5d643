package spec

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"

	"gopkg.in/yaml.v3"
)

// SecretValue returns one value of a decrypted document: by a dotted path
// (db.password) in YAML or JSON, or by name in a dotenv file. The format
// is the file's name without its .age or .sops: secrets.sops.yaml and
// secrets.yaml.age are YAML. An error never quotes the document.
func SecretValue(file string, plain []byte, key string) (string, error) {
	name := strings.TrimSuffix(strings.TrimSuffix(file, ".age"), ".sops")
	name = strings.Replace(name, ".sops.", ".", 1)
	switch path.Ext(name) {
	case ".env":
		sc := bufio.NewScanner(bytes.NewReader(plain))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == key {
				return v, nil
			}
		}
		return "", fmt.Errorf("no variable %q", key)
	case ".yaml", ".yml", ".json":
		var n yaml.Node
		if err := yaml.Unmarshal(plain, &n); err != nil || len(n.Content) == 0 {
			return "", fmt.Errorf("the decrypted file is not YAML or JSON")
		}
		cur := n.Content[0]
		for _, k := range strings.Split(key, ".") {
			if cur.Kind != yaml.MappingNode {
				return "", fmt.Errorf("no value at %q", key)
			}
			var next *yaml.Node
			for i := 0; i+1 < len(cur.Content); i += 2 {
				if cur.Content[i].Value == k {
					next = cur.Content[i+1]
				}
			}
			if next == nil {
				return "", fmt.Errorf("no value at %q", key)
			}
			cur = next
		}
		if cur.Kind != yaml.ScalarNode {
			return "", fmt.Errorf("the value at %q is not a string or a number", key)
		}
		return cur.Value, nil
	}
	return "", fmt.Errorf("a key (%q) needs a YAML, JSON or dotenv file, named so: NAME.yaml.age, NAME.json.age, NAME.env.age or a SOPS file", key)
}
