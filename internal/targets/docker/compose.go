package docker

// The forms Compose users write, read into the container kind's own fields:
// env as a list of KEY=VALUE, command and entrypoint as one string, and the
// tag inside the image reference. Nothing here reads the agent's own
// environment: a value is what the manifest says, "$HOME" included.

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// decodeArgs reads command or entrypoint: a list of arguments, or one
// string split into words as a POSIX shell (and Compose) splits it, with
// quotes and backslashes but no expansion.
func decodeArgs(d *spec.Decoder, name string) []string {
	g, ok := d.Field(name)
	if !ok {
		return nil
	}
	if g.Val == nil || g.Val.Kind != yaml.ScalarNode || g.Val.ShortTag() != "!!str" {
		return d.List(name, nil)
	}
	words, err := splitWords(g.Val.Value)
	if err != nil {
		d.Errorf(g.At, "%s: %v", name, err)
		return nil
	}
	return words
}

// errUnterminated is a quote that does not close.
var errUnterminated = errors.New("a quote is not closed")

// splitWords splits s into words: blanks separate them, single quotes keep
// everything literally, double quotes keep everything but a backslash
// before ", \, $ or `, and a backslash outside quotes keeps the next
// character. No variable, tilde or glob expansion happens.
func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word, even an empty quoted one
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("%q: %w", s, errUnterminated)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			j, err := doubleQuoted(s, i+1, &cur)
			if err != nil {
				return nil, err
			}
			i = j
			in = true
		case c == '\\' && i+1 < len(s):
			i++
			if s[i] != '\n' { // a backslash-newline joins lines
				cur.WriteByte(s[i])
			}
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%q holds no word", s)
	}
	return words, nil
}

// doubleQuoted copies the double-quoted text starting at i into cur and
// returns the index of its closing quote.
func doubleQuoted(s string, i int, cur *strings.Builder) (int, error) {
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return i, nil
		case c == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0:
			i++
			if s[i] != '\n' {
				cur.WriteByte(s[i])
			}
		default:
			cur.WriteByte(c)
		}
	}
	return 0, fmt.Errorf("%q: %w", s, errUnterminated)
}

// decodeEnv reads env as a mapping or, as Compose also writes it, a list
// of KEY=VALUE. A bare KEY, which Compose fills from its own environment,
// is refused: the agent's environment is no input.
func decodeEnv(d *spec.Decoder) map[string]string {
	g, ok := d.Field("env")
	if !ok {
		return nil
	}
	if g.Val == nil || g.Val.Kind != yaml.SequenceNode {
		return d.Map("env", checkEnvName)
	}
	items, _ := d.StrList(g, "env")
	out := make(map[string]string, len(items))
	for _, it := range items {
		k, v, found := strings.Cut(it.Val, "=")
		if !found {
			d.Errorf(it.At, "env: %q has no value: write %s=VALUE (Outpost never takes a value from its own environment)", it.Val, it.Val)
			continue
		}
		if err := checkEnvName(k); err != nil {
			d.Errorf(it.At, "env: %v", err)
			continue
		}
		if _, dup := out[k]; dup {
			d.Errorf(it.At, "env: %s is set twice", k)
			continue
		}
		out[k] = v
	}
	return out
}

func checkEnvName(k string) error {
	if k == "" || strings.ContainsAny(k, "=\x00") {
		return fmt.Errorf("%q is not a variable name", k)
	}
	return nil
}

// hostnameRE is a host name as the engine takes it: dot-separated labels
// of letters, digits and inner hyphens.
var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)

// decodeHostSettings reads hostname, extra_hosts, dns, read_only, init and
// tty.
func decodeHostSettings(d *spec.Decoder, f map[string]spec.Field, c *Container) {
	d.String("hostname", &c.Hostname, func(s string) error {
		if len(s) > 253 || !hostnameRE.MatchString(s) {
			return fmt.Errorf("%q is not a host name", s)
		}
		return nil
	})
	if c.Hostname != "" && (c.NetworkMode == "host" || strings.HasPrefix(c.NetworkMode, "container:")) {
		d.Errorf(f["hostname"].Key, "hostname: not allowed with network_mode: %s, whose host name the container takes", c.NetworkMode)
	}
	if g, ok := f["extra_hosts"]; ok {
		items, _ := d.StrList(g, "extra_hosts")
		for _, it := range items {
			h, err := parseExtraHost(it.Val)
			if err != nil {
				d.Errorf(it.At, "extra_hosts: %v", err)
				continue
			}
			c.ExtraHosts = append(c.ExtraHosts, h)
		}
		slices.Sort(c.ExtraHosts)
	}
	c.DNS = d.List("dns", func(s string) error {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%q is not an IP address", s)
		}
		return nil
	})
	d.Boolean("read_only", &c.ReadOnly)
	d.Boolean("init", &c.Init)
	d.Boolean("tty", &c.TTY)
	decodeIsolation(d, f, c)
}

var (
	// securityOptRE is one of the engine's security options.
	securityOptRE = regexp.MustCompile(`^(no-new-privileges(:(true|false))?|(label|apparmor|seccomp|systempaths)[=:][^\x00]+)$`)
	// groupRE is a group name or ID.
	groupRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}$`)
	// sysctlRE is a kernel parameter's name.
	sysctlRE = regexp.MustCompile(`^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$`)
	// cpusetRE is a list of CPUs and ranges.
	cpusetRE = regexp.MustCompile(`^[0-9]{1,4}(-[0-9]{1,4})?(,[0-9]{1,4}(-[0-9]{1,4})?)*$`)
)

// decodeIsolation reads security_opt, group_add, pids_limit, sysctls and
// cpuset. Which security options and sysctls a host allows is the
// engine's to say: it refuses the rest at create, as a failed resource.
func decodeIsolation(d *spec.Decoder, f map[string]spec.Field, c *Container) {
	c.SecurityOpt = d.List("security_opt", func(s string) error {
		if !securityOptRE.MatchString(s) {
			return fmt.Errorf("%q: want no-new-privileges, label=..., apparmor=..., seccomp=... or systempaths=unconfined", s)
		}
		return nil
	})
	c.GroupAdd = d.List("group_add", func(s string) error {
		if !groupRE.MatchString(s) {
			return fmt.Errorf("%q is not a group name or ID", s)
		}
		return nil
	})
	if g, ok := f["pids_limit"]; ok {
		if n, ok := d.Int(g, "pids_limit"); ok {
			if n < 1 {
				d.Errorf(g.At, "pids_limit: %d: want at least 1 (leave it out for no limit)", n)
			} else {
				c.PidsLimit = n
			}
		}
	}
	c.Sysctls = d.Map("sysctls", func(k string) error {
		if !sysctlRE.MatchString(k) {
			return fmt.Errorf("%q is not a kernel parameter", k)
		}
		return nil
	})
	d.String("cpuset", &c.Cpuset, func(s string) error {
		if !cpusetRE.MatchString(s) {
			return fmt.Errorf("%q: want CPUs and ranges such as 0-1,3", s)
		}
		return nil
	})
	if g, ok := f["shm_size"]; ok {
		c.ShmSize, _ = decodeSize(d, g)
	}
	if g, ok := f["ulimits"]; ok {
		c.Ulimits = decodeUlimits(d, g)
	}
	if g, ok := f["expose"]; ok {
		c.Expose = decodeExpose(d, g)
	}
}

// maxExposed bounds the ports that expose's ranges may name.
const maxExposed = 1024

// decodeExpose reads expose: ports and ranges, each with an optional
// protocol ("3000", "8000-8010/udp"), as Compose writes them (numbers
// too).
func decodeExpose(d *spec.Decoder, g spec.Field) []string {
	if g.Val == nil || g.Val.Kind != yaml.SequenceNode {
		d.Errorf(g.At, "expose: must be a list, got %s", spec.Describe(g.Val))
		return nil
	}
	seen := map[string]bool{}
	for _, n := range g.Val.Content {
		if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
			d.Errorf(n, "expose: want a port such as 3000 or 8000-8010/udp, got %s", spec.Describe(n))
			continue
		}
		ports, err := parseExpose(n.Value)
		if err != nil {
			d.Errorf(n, "expose: %v", err)
			continue
		}
		for _, p := range ports {
			seen[p] = true
		}
		if len(seen) > maxExposed {
			d.Errorf(n, "expose: more than %d ports", maxExposed)
			return nil
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// parseExpose expands "PORT[-PORT][/PROTO]" into "PORT/PROTO" strings.
func parseExpose(s string) ([]string, error) {
	ports, proto, _ := strings.Cut(s, "/")
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("%q: the protocol must be tcp, udp or sctp", s)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	first, err := parsePortNumber(lo, false)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	last := first
	if isRange {
		if last, err = parsePortNumber(hi, false); err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		if last < first {
			return nil, fmt.Errorf("%q: the range ends before it starts", s)
		}
		if int(last-first) >= maxExposed {
			return nil, fmt.Errorf("%q: a range of more than %d ports", s, maxExposed)
		}
	}
	out := make([]string, 0, int(last-first)+1)
	for p := int(first); p <= int(last); p++ {
		out = append(out, strconv.Itoa(p)+"/"+proto)
	}
	return out, nil
}

// ulimitNames are the resource limits that the engine sets (setrlimit's,
// as Compose and docker run --ulimit name them).
var ulimitNames = map[string]bool{"core": true, "cpu": true, "data": true, "fsize": true,
	"locks": true, "memlock": true, "msgqueue": true, "nice": true, "nofile": true, "nproc": true,
	"rss": true, "rtprio": true, "rttime": true, "sigpending": true, "stack": true}

// decodeUlimits reads ulimits as Compose writes them: NAME: N (soft and
// hard), or NAME: {soft: N, hard: N}; -1 is unlimited.
func decodeUlimits(d *spec.Decoder, g spec.Field) []Ulimit {
	f, ok := d.Fields(g.At, "ulimits", ulimitNames)
	if !ok {
		return nil
	}
	var out []Ulimit
	for name, v := range f {
		what := "ulimits: " + name
		u := Ulimit{Name: name}
		if v.Val != nil && v.Val.Kind == yaml.MappingNode {
			lim, ok := d.Fields(v.At, what, map[string]bool{"soft": true, "hard": true})
			if !ok {
				continue
			}
			soft, okS := lim["soft"]
			hard, okH := lim["hard"]
			if !okS || !okH {
				d.Errorf(v.At, "%s: want both soft and hard", what)
				continue
			}
			if u.Soft, ok = ulimitValue(d, soft, what+".soft"); !ok {
				continue
			}
			if u.Hard, ok = ulimitValue(d, hard, what+".hard"); !ok {
				continue
			}
		} else {
			n, ok := ulimitValue(d, v, what)
			if !ok {
				continue
			}
			u.Soft, u.Hard = n, n
		}
		if u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard) {
			d.Errorf(v.At, "%s: the soft limit %d is above the hard limit %d", what, u.Soft, u.Hard)
			continue
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b Ulimit) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func ulimitValue(d *spec.Decoder, f spec.Field, what string) (int64, bool) {
	n, ok := d.Int(f, what)
	if ok && n < -1 {
		d.Errorf(f.At, "%s: %d: want a count, or -1 for unlimited", what, n)
		return 0, false
	}
	return n, ok
}

// parseExtraHost reads "name:address" or "name=address", as Compose
// writes them, into the engine's "name:address". The address may be
// host-gateway, which the engine replaces with the host's address.
func parseExtraHost(s string) (string, error) {
	i := strings.IndexAny(s, "=:")
	if i < 0 {
		return "", fmt.Errorf("%q: want NAME:ADDRESS", s)
	}
	name, addr := s[:i], strings.Trim(s[i+1:], "[]")
	if len(name) > 253 || !hostnameRE.MatchString(name) {
		return "", fmt.Errorf("%q: %q is not a host name", s, name)
	}
	if addr != "host-gateway" {
		if _, err := netip.ParseAddr(addr); err != nil {
			return "", fmt.Errorf("%q: %q is not an IP address or host-gateway", s, addr)
		}
	}
	return name + ":" + addr, nil
}

func checkNetworkName(s string) error {
	if !networkNameRE.MatchString(s) {
		return fmt.Errorf("%q is not a network name", s)
	}
	return nil
}

// decodeEndpoints reads networks written as a mapping, as Compose writes
// them: each network's name, with nothing or with aliases, ipv4_address
// and ipv6_address. The engine takes them on user-defined networks only.
func decodeEndpoints(d *spec.Decoder, g spec.Field) ([]string, map[string]Endpoint) {
	f, ok := d.Fields(g.At, "networks", nil)
	if !ok {
		return nil, nil
	}
	var names []string
	eps := map[string]Endpoint{}
	for _, name := range slices.Sorted(maps.Keys(f)) {
		v := f[name]
		what := "networks." + name
		if err := checkNetworkName(name); err != nil {
			d.Errorf(v.Key, "networks: %v", err)
			continue
		}
		names = append(names, name)
		if v.Val == nil || (v.Val.Kind == yaml.ScalarNode && v.Val.ShortTag() == "!!null") {
			continue
		}
		ef, ok := d.Fields(v.At, what, map[string]bool{"aliases": true, "ipv4_address": true, "ipv6_address": true})
		if !ok {
			continue
		}
		var ep Endpoint
		if a, ok := ef["aliases"]; ok {
			items, _ := d.StrList(a, what+".aliases")
			for _, it := range items {
				if len(it.Val) > 253 || !hostnameRE.MatchString(it.Val) {
					d.Errorf(it.At, "%s.aliases: %q is not a host name", what, it.Val)
					continue
				}
				ep.Aliases = append(ep.Aliases, it.Val)
			}
			slices.Sort(ep.Aliases)
			ep.Aliases = slices.Compact(ep.Aliases)
		}
		for _, ip := range []struct {
			key string
			set *string
			v6  bool
		}{{"ipv4_address", &ep.IPv4, false}, {"ipv6_address", &ep.IPv6, true}} {
			a, ok := ef[ip.key]
			if !ok {
				continue
			}
			s, ok := d.Str(a, what+"."+ip.key)
			if !ok {
				continue
			}
			addr, err := netip.ParseAddr(s)
			if err != nil || addr.Zone() != "" || addr.Is6() != ip.v6 || addr.Is4In6() {
				d.Errorf(a.At, "%s.%s: %q is not an IPv%s address", what, ip.key, s, map[bool]string{false: "4", true: "6"}[ip.v6])
				continue
			}
			*ip.set = addr.String()
		}
		if name == "bridge" && (len(ep.Aliases) > 0 || ep.IPv4 != "" || ep.IPv6 != "") {
			d.Errorf(v.Key, "%s: the engine's default bridge takes no aliases or static addresses; make a network of your own", what)
			continue
		}
		if len(ep.Aliases) > 0 || ep.IPv4 != "" || ep.IPv6 != "" {
			eps[name] = ep
		}
	}
	if len(eps) == 0 {
		eps = nil
	}
	return names, eps
}
