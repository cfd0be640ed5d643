package docker

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// maxEnvFile bounds one env_file's variables, as a container's own env is
// bounded by the manifest's size.
const maxEnvFile = 4096

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// decodeEnvFiles reads env_file: one file of the repository, or a list,
// relative to the manifest as a source: is (never outside the repository).
// Render reads each in order: a later file's variable replaces an earlier
// one's, and a variable that env sets is never replaced, as in Compose. The
// variables of an encrypted file (NAME.env.age, a SOPS dotenv file) are
// secrets, as env_secrets' are.
func decodeEnvFiles(d *spec.Decoder, c *Container) {
	g, ok := d.Field("env_file")
	if !ok {
		return
	}
	var items []*yaml.Node
	switch {
	case g.Val != nil && g.Val.Kind == yaml.SequenceNode:
		items = g.Val.Content
	default:
		items = []*yaml.Node{g.At}
	}
	explicit := make(map[string]bool, len(c.Env))
	for k := range c.Env {
		explicit[k] = true
	}
	for _, it := range items {
		// name and secret are set here, before Render calls the function.
		var name string
		var secret bool
		name, _ = d.File(spec.Field{Name: "env_file", Key: g.Key, Val: it, At: it}, "env_file", func(o spec.Object, data []byte) {
			c := o.(*Container)
			vars, err := parseEnvFile(data)
			if err != nil {
				if c.EnvFileErr == "" {
					c.EnvFileErr = fmt.Sprintf("env_file %s: %v", name, err)
				}
				return
			}
			if c.Env == nil {
				c.Env = map[string]string{}
			}
			for _, kv := range vars {
				if explicit[kv[0]] {
					continue
				}
				c.Env[kv[0]] = kv[1]
				if secret {
					if c.SecretEnv == nil {
						c.SecretEnv = map[string]bool{}
					}
					c.SecretEnv[kv[0]] = true
				}
			}
		})
		secret = spec.IsEncrypted(name)
	}
}

// parseEnvFile reads a dotenv file as Compose does: KEY=VALUE lines, with
// blank lines, # comments and a leading "export " allowed. A value in
// double quotes takes \n, \t, \" and \\ escapes; one in single quotes is
// literal; an unquoted one ends before " #". A line without = (which
// Compose fills from its own environment) is an error that names the
// line: the agent never takes a value from its environment. Errors never
// quote a value, which may be a secret.
func parseEnvFile(data []byte) ([][2]string, error) {
	var out [][2]string
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, found := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !envKeyRE.MatchString(k) {
			return nil, fmt.Errorf("line %d: not a variable name", n)
		}
		if !found {
			return nil, fmt.Errorf("line %d: %s has no value: write %s=VALUE (Outpost never takes a value from its own environment)", n, k, k)
		}
		v = strings.TrimSpace(v)
		switch {
		case len(v) >= 2 && v[0] == '"' && strings.HasSuffix(v, `"`):
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: a double-quoted value that does not end where its quotes do", n, k)
			}
			v = u
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
			v = v[1 : len(v)-1]
		case strings.HasPrefix(v, `"`) || strings.HasPrefix(v, `'`):
			return nil, fmt.Errorf("line %d: %s: a quote that is not closed on its line", n, k)
		default:
			if i := strings.Index(v, " #"); i >= 0 {
				v = strings.TrimSpace(v[:i])
			}
		}
		if len(out) == maxEnvFile {
			return nil, fmt.Errorf("more than %d variables", maxEnvFile)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}
