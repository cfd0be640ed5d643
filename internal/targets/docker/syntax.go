package docker

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// This file holds the syntax checks of a container's single values:
// names, images, ports, volumes, sizes. Each returns an error whose text
// completes "field: ".

var containerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func checkContainerName(n string) error {
	if !containerNameRE.MatchString(n) || len(n) > 253 {
		return fmt.Errorf("%q is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)", n)
	}
	return nil
}

var networkNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

const (
	domainComp = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domain     = domainComp + `(?:\.` + domainComp + `)*(?::[0-9]+)?`
	pathComp   = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
)

var (
	imageRE  = regexp.MustCompile(`^(?:` + domain + `/)?` + pathComp + `(?:/` + pathComp + `)*$`)
	tagRE    = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$`)
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// splitImage checks an image reference without a tag and returns its
// repository and its digest, if it is pinned by one.
func splitImage(ref string) (repo, tag, digest string, err error) {
	repo, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest && !digestRE.MatchString(digest) {
		return "", "", "", fmt.Errorf("%q: the digest must be sha256: and 64 lower-case hex digits", ref)
	}
	// A tag is what follows the last colon after the last slash, as
	// Compose and docker write "name:tag" ("host:5000/web" has none).
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, tag = repo[:i], repo[i+1:]
		if err := checkTag(tag); err != nil {
			return "", "", "", fmt.Errorf("%q: %w", ref, err)
		}
	}
	if len(repo) > 255 || !imageRE.MatchString(repo) {
		return "", "", "", fmt.Errorf("%q is not a valid image reference", ref)
	}
	return repo, tag, digest, nil
}

func checkTag(t string) error {
	if !tagRE.MatchString(t) {
		return fmt.Errorf("%q is not a valid tag ([a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})", t)
	}
	return nil
}

func parsePortNumber(s string, zeroOK bool) (uint16, error) {
	if s == "" && zeroOK {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// parsePort parses "80", "8080:80", "127.0.0.1:8080:80", "[::1]:8080:80",
// each with an optional "/tcp", "/udp" or "/sctp".
func parsePort(s string) (Port, error) {
	var p Port
	spec, proto, hasProto := strings.Cut(s, "/")
	p.Protocol = "tcp"
	if hasProto {
		switch proto {
		case "tcp", "udp", "sctp":
			p.Protocol = proto
		default:
			return Port{}, fmt.Errorf("%q: protocol %q: want tcp, udp or sctp", s, proto)
		}
	}
	if strings.HasPrefix(spec, "[") {
		end := strings.Index(spec, "]:")
		if end < 0 {
			return Port{}, fmt.Errorf("%q: an IPv6 address must be written [ADDRESS]:HOST:CONTAINER", s)
		}
		p.HostIP = spec[1:end]
		spec = spec[end+2:]
		if strings.Count(spec, ":") != 1 {
			return Port{}, fmt.Errorf("%q: want [ADDRESS]:HOST:CONTAINER", s)
		}
	}
	parts := strings.Split(spec, ":")
	var host, ctr string
	switch len(parts) {
	case 1:
		ctr = parts[0]
	case 2:
		host, ctr = parts[0], parts[1]
	case 3:
		if p.HostIP != "" {
			return Port{}, fmt.Errorf("%q: want [IP:]HOST:CONTAINER", s)
		}
		p.HostIP, host, ctr = parts[0], parts[1], parts[2]
		if p.HostIP == "" {
			return Port{}, fmt.Errorf("%q: empty host address", s)
		}
	default:
		return Port{}, fmt.Errorf("%q: want [[IP:]HOST:]CONTAINER[/PROTOCOL]", s)
	}
	if p.HostIP != "" && !validIP(p.HostIP) {
		return Port{}, fmt.Errorf("%q: %q is not an IP address", s, p.HostIP)
	}
	var err error
	if p.HostPort, err = parsePortNumber(host, len(parts) == 1 || len(parts) == 3 || p.HostIP != ""); err != nil {
		if host == "" {
			return Port{}, fmt.Errorf("%q: empty host port", s)
		}
		return Port{}, fmt.Errorf("%q: host port %w", s, err)
	}
	if p.ContainerPort, err = parsePortNumber(ctr, false); err != nil {
		return Port{}, fmt.Errorf("%q: container port %w", s, err)
	}
	return p, nil
}

var volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// parseVolume parses "/host:/ctr[:ro|rw]" and "name:/ctr[:ro|rw]".
func parseVolume(s string) (Volume, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Volume{}, fmt.Errorf("%q: want SOURCE:TARGET[:ro|rw]", s)
	}
	v := Volume{Source: parts[0], Target: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			v.ReadOnly = true
		case "rw":
		default:
			return Volume{}, fmt.Errorf("%q: mode %q: want ro or rw", s, parts[2])
		}
	}
	if strings.HasPrefix(v.Source, "/") {
		if err := spec.CheckAbsPath(v.Source); err != nil {
			return Volume{}, fmt.Errorf("%q: source %w", s, err)
		}
	} else {
		if !volumeNameRE.MatchString(v.Source) {
			return Volume{}, fmt.Errorf("%q: source %q is neither an absolute path nor a volume name", s, v.Source)
		}
		v.Named = true
	}
	if err := spec.CheckAbsPath(v.Target); err != nil {
		return Volume{}, fmt.Errorf("%q: target %w", s, err)
	}
	return v, nil
}

// checkTmpfs accepts "path" or "path:options".
func checkTmpfs(s string) error {
	p, opts, hasOpts := strings.Cut(s, ":")
	if err := spec.CheckAbsPath(p); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if hasOpts && opts == "" {
		return fmt.Errorf("%q: empty options", s)
	}
	return nil
}

// checkDevice accepts "/dev/x", "/dev/x:/dev/y" and "/dev/x:/dev/y:rwm".
func checkDevice(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return fmt.Errorf("%q: want HOST[:CONTAINER[:PERMISSIONS]]", s)
	}
	for i, p := range parts[:min(len(parts), 2)] {
		if err := spec.CheckAbsPath(p); err != nil {
			return fmt.Errorf("%q: %s %w", s, [...]string{"host path", "container path"}[i], err)
		}
	}
	if len(parts) == 3 {
		perm := parts[2]
		seen := map[rune]bool{}
		for _, r := range perm {
			if !strings.ContainsRune("rwm", r) || seen[r] {
				perm = ""
				break
			}
			seen[r] = true
		}
		if perm == "" {
			return fmt.Errorf("%q: permissions %q: want some of r, w and m", s, parts[2])
		}
	}
	return nil
}

var restartRE = regexp.MustCompile(`^(no|always|unless-stopped|on-failure(:[0-9]+)?)$`)

var capRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

var signalRE = regexp.MustCompile(`^(SIG)?[A-Z][A-Z0-9+-]*$|^[0-9]{1,2}$`)

var memoryRE = regexp.MustCompile(`^([0-9]+)([bkmgt]?)b?$`)

// parseMemory parses "512m", "1g", "1024k" or a number of bytes; units are
// powers of 1024, as in Docker.
func parseMemory(s string) (int64, error) {
	m := memoryRE.FindStringSubmatch(strings.ToLower(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size such as \"512m\" or \"1g\"", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	shift := map[string]uint{"": 0, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m[2]]
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("%q must be more than zero", s)
	}
	return n << shift, nil
}

func validIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// checkPorts reports two containers that publish the same host port and
// protocol on overlapping addresses when both can apply to one host.
func checkPorts(ch *spec.Checker) {
	type use struct {
		r    *spec.Resource
		port Port
	}
	byPort := map[string][]use{}
	for _, r := range ch.Resources() {
		c := Of(r)
		for i, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			key := fmt.Sprintf("%d/%s", p.HostPort, p.Protocol)
			for _, u := range byPort[key] {
				if u.r != r && overlaps(u.port.HostIP, p.HostIP) && ch.Collide(u.r, r) {
					ch.Errorf(ch.Marks(r)[i], "ports: host port %s is also published by %s, declared at %s", key, u.r.ID, u.r.Pos)
					break
				}
			}
			byPort[key] = append(byPort[key], use{r, p})
		}
	}
}

// overlaps reports whether two host addresses of a published port can
// clash: an empty or unspecified address binds them all.
func overlaps(a, b string) bool {
	any := func(s string) bool { return s == "" || s == "0.0.0.0" || s == "::" }
	return a == b || any(a) || any(b)
}
