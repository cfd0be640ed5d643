package docker

// The long syntax of ports and volumes, and port ranges, as Compose users
// write them. Each decodes into the same Port, Volume or tmpfs entry as the
// short form, so the hash, the comparison and the engine never see how a
// value was written.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// maxPortRange bounds the ports one range expands to: each is a binding
// the engine keeps, and a manifest must not make it keep 65535.
const maxPortRange = 1024

// decodePorts reads ports: strings in the short syntax, with ranges, and
// mappings in Compose's long syntax.
func decodePorts(d *spec.Decoder, g spec.Field) []Port {
	if g.Val == nil || g.Val.Kind != yaml.SequenceNode {
		d.Errorf(g.At, "ports: must be a list, got %s", spec.Describe(g.Val))
		return nil
	}
	var out []Port
	for i, n := range g.Val.Content {
		what := fmt.Sprintf("ports[%d]", i)
		var s string
		if v := deref(n); v != nil && v.Kind == yaml.MappingNode {
			long, ok := longPort(d, n, what)
			if !ok {
				continue
			}
			s = long
		} else if v, ok := d.Str(spec.Field{Val: v, At: n}, what); ok {
			s = v
		} else {
			continue
		}
		ps, err := parsePorts(s)
		if err != nil {
			d.Errorf(n, "ports: %v", err)
			continue
		}
		if len(out)+len(ps) > maxPortRange {
			d.Errorf(n, "ports: more than %d ports", maxPortRange)
			return out
		}
		for _, p := range ps {
			out = append(out, p)
			d.Mark(n) // for checkPorts
		}
	}
	return out
}

// longPort writes a port of the long syntax in the short one:
// {target: 80, published: "8080", host_ip: 127.0.0.1, protocol: udp}.
func longPort(d *spec.Decoder, n *yaml.Node, what string) (string, bool) {
	f, ok := d.Fields(n, what, spec.FieldSet([]string{"target", "published", "host_ip", "protocol", "mode"}))
	if !ok {
		return "", false
	}
	str := func(name string) (string, bool) {
		g, has := f[name]
		if !has {
			return "", true
		}
		return d.Str(g, what+"."+name)
	}
	target, ok1 := str("target")
	published, ok2 := str("published")
	ip, ok3 := str("host_ip")
	proto, ok4 := str("protocol")
	mode, ok5 := str("mode")
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return "", false
	}
	if _, has := f["target"]; !has {
		d.Errorf(n, "%s: missing field \"target\"", what)
		return "", false
	}
	if mode != "" && mode != "host" && mode != "ingress" {
		d.Errorf(f["mode"].At, "%s.mode: %q: want host or ingress (one host has no difference)", what, mode)
		return "", false
	}
	s := target
	if published != "" || ip != "" {
		s = published + ":" + s
	}
	if ip != "" {
		if strings.Contains(ip, ":") {
			ip = "[" + ip + "]"
		}
		s = ip + ":" + s
	}
	if proto != "" {
		s += "/" + proto
	}
	return s, true
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// parsePorts parses the short syntax of parsePort with ranges:
// "8000-8009:8000-8009", "127.0.0.1:8000-8001:80-81/udp", "9000-9003".
func parsePorts(s string) ([]Port, error) {
	body, proto, hasProto := strings.Cut(s, "/")
	if !strings.Contains(body, "-") {
		p, err := parsePort(s)
		return []Port{p}, err
	}
	prefix, rest := "", body
	if strings.HasPrefix(rest, "[") {
		if end := strings.Index(rest, "]:"); end >= 0 {
			prefix, rest = rest[:end+2], rest[end+2:]
		}
	} else if strings.Count(rest, ":") == 2 {
		i := strings.IndexByte(rest, ':')
		prefix, rest = rest[:i+1], rest[i+1:]
	}
	host, ctr, hasHost := strings.Cut(rest, ":")
	if !hasHost {
		host, ctr = "", host
	}
	if strings.Contains(ctr, ":") {
		return nil, fmt.Errorf("%q: want [[IP:]HOST:]CONTAINER[/PROTOCOL]", s)
	}
	cLow, cHigh, err := portRange(ctr)
	if err != nil {
		return nil, fmt.Errorf("%q: container port %w", s, err)
	}
	n := cHigh - cLow + 1
	hLow := 0
	if host != "" {
		var hHigh int
		if hLow, hHigh, err = portRange(host); err != nil {
			return nil, fmt.Errorf("%q: host port %w", s, err)
		}
		switch m := hHigh - hLow + 1; {
		case m != n && n == 1:
			return nil, fmt.Errorf("%q: a host range for one container port is not supported: the engine would pick a port, which no pass could compare; publish one host port", s)
		case m != n:
			return nil, fmt.Errorf("%q: the host range has %d ports and the container range %d", s, m, n)
		}
	}
	if n > maxPortRange {
		return nil, fmt.Errorf("%q: a range of %d ports, more than %d", s, n, maxPortRange)
	}
	out := make([]Port, 0, n)
	for i := range n {
		one := prefix
		if hasHost {
			if host != "" {
				one += strconv.Itoa(hLow + i)
			}
			one += ":"
		}
		one += strconv.Itoa(cLow + i)
		if hasProto {
			one += "/" + proto
		}
		p, err := parsePort(one)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// portRange parses "80" or "8000-8010".
func portRange(s string) (low, high int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err := parsePortNumber(a, false)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return int(l), int(l), nil
	}
	h, err := parsePortNumber(b, false)
	if err != nil {
		return 0, 0, err
	}
	if h < l {
		return 0, 0, fmt.Errorf("%q: the range ends before it starts", s)
	}
	return int(l), int(h), nil
}

// errRelativeBind is the hint for a bind mount written relative to the
// Compose file: the agent's checkout is no place for a container's data.
var errRelativeBind = errors.New("is a relative path: Compose resolves it from the Compose file, " +
	"which would put the container's data inside the agent's checkout; write the absolute host path (for example /srv/APP/data)")

// decodeVolumes reads volumes: strings in the short syntax, and mappings in
// Compose's long syntax, of type bind, volume or tmpfs (a tmpfs joins
// tmpfs).
func decodeVolumes(d *spec.Decoder, g spec.Field, c *Container) {
	if g.Val == nil || g.Val.Kind != yaml.SequenceNode {
		d.Errorf(g.At, "volumes: must be a list, got %s", spec.Describe(g.Val))
		return
	}
	for i, n := range g.Val.Content {
		what := fmt.Sprintf("volumes[%d]", i)
		if v := deref(n); v != nil && v.Kind == yaml.MappingNode {
			longVolume(d, n, what, c)
			continue
		}
		s, ok := d.Str(spec.Field{Val: deref(n), At: n}, what)
		if !ok {
			continue
		}
		if src, _, _ := strings.Cut(s, ":"); isRelative(src) {
			d.Errorf(n, "volumes: %q: source %q %v", s, src, errRelativeBind)
			continue
		}
		v, err := parseVolume(s)
		if err != nil {
			d.Errorf(n, "volumes: %v", err)
			continue
		}
		c.Volumes = append(c.Volumes, v)
	}
}

func isRelative(src string) bool {
	return src == "." || src == ".." || src == "~" ||
		strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../") || strings.HasPrefix(src, "~/")
}

// longVolume reads {type, source, target, read_only, tmpfs: {size, mode}}.
func longVolume(d *spec.Decoder, n *yaml.Node, what string, c *Container) {
	f, ok := d.Fields(n, what, spec.FieldSet([]string{"type", "source", "target", "read_only", "tmpfs"}))
	if !ok {
		return
	}
	str := func(name string) string {
		if g, has := f[name]; has {
			s, _ := d.Str(g, what+"."+name)
			return s
		}
		return ""
	}
	typ, src, target := str("type"), str("source"), str("target")
	if _, has := f["target"]; !has {
		d.Errorf(n, "%s: missing field \"target\"", what)
		return
	}
	ro := false
	if g, has := f["read_only"]; has {
		ro, _ = d.Bool(g, what+".read_only")
	}
	if g, has := f["tmpfs"]; has && typ != "tmpfs" {
		d.Errorf(g.Key, "%s.tmpfs: only for type tmpfs", what)
		return
	}
	switch typ {
	case "bind", "volume":
		if _, has := f["source"]; !has {
			d.Errorf(n, "%s: missing field \"source\" (Outpost makes no anonymous volumes)", what)
			return
		}
		at := f["source"].At
		if typ == "bind" && !strings.HasPrefix(src, "/") {
			if isRelative(src) {
				d.Errorf(at, "%s.source: %q %v", what, src, errRelativeBind)
			} else {
				d.Errorf(at, "%s.source: %q: a bind needs an absolute host path", what, src)
			}
			return
		}
		if typ == "volume" && strings.HasPrefix(src, "/") {
			d.Errorf(at, "%s.source: %q: a volume needs a volume name; use type bind for a host path", what, src)
			return
		}
		short := src + ":" + target
		if ro {
			short += ":ro"
		}
		v, err := parseVolume(short)
		if err != nil {
			d.Errorf(n, "volumes: %v", err)
			return
		}
		c.Volumes = append(c.Volumes, v)
	case "tmpfs":
		if _, has := f["source"]; has {
			d.Errorf(f["source"].Key, "%s.source: not for type tmpfs", what)
			return
		}
		longTmpfs(d, f, what, target, c)
	default:
		d.Errorf(n, "%s.type: %q: want bind, volume or tmpfs", what, typ)
	}
}

// longTmpfs adds a tmpfs of the long volume syntax to c.Tmpfs, as
// "target:size=N,mode=M".
func longTmpfs(d *spec.Decoder, f map[string]spec.Field, what, target string, c *Container) {
	if err := spec.CheckAbsPath(target); err != nil {
		d.Errorf(f["target"].At, "%s.target: %v", what, err)
		return
	}
	var opts []string
	if g, has := f["tmpfs"]; has {
		t, ok := d.Fields(g.At, what+".tmpfs", spec.FieldSet([]string{"size", "mode"}))
		if !ok {
			return
		}
		if h, has := t["size"]; has {
			s, ok := d.Str(h, what+".tmpfs.size")
			if !ok {
				return
			}
			size, err := parseMemory(s)
			if err != nil {
				d.Errorf(h.At, "%s.tmpfs.size: %v", what, err)
				return
			}
			opts = append(opts, "size="+strconv.FormatInt(size, 10))
		}
		if h, has := t["mode"]; has {
			s, ok := d.Str(h, what+".tmpfs.mode")
			if !ok {
				return
			}
			m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
			if err != nil || m > 0o7777 {
				d.Errorf(h.At, "%s.tmpfs.mode: %q is not an octal mode", what, s)
				return
			}
			opts = append(opts, fmt.Sprintf("mode=%o", m))
		}
	}
	if len(opts) > 0 {
		target += ":" + strings.Join(opts, ",")
	}
	c.Tmpfs = append(c.Tmpfs, target)
}
