package spec

import (
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the syntax checks of single values: paths, names, ports,
// volumes, sizes. Each returns an error whose text completes "field: ".

// IsControl reports whether r is a control character: C0 (below 0x20),
// DEL, or C1 (0x80 to 0x9f), which a terminal may act on when printed.
func IsControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f)
}

// Printable reports whether s is valid UTF-8 without control characters,
// and so prints as what it is.
func Printable(s string) bool {
	for i, r := range s {
		if IsControl(r) || (r == utf8.RuneError && isBadByte(s, i)) {
			return false
		}
	}
	return true
}

func isBadByte(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// Quote returns s as it is when it is Printable, and quoted with Go's
// escapes otherwise, so that a name from a repository, the host or a state
// file cannot forge a line of output or drive the terminal.
func Quote(s string) string {
	if Printable(s) {
		return s
	}
	return strconv.Quote(s)
}

// checkPrintable refuses a name or path with a control character or that is
// not UTF-8.
func checkPrintable(s string) error {
	for i, r := range s {
		if IsControl(r) {
			return fmt.Errorf("%q contains the control character %U at byte %d", s, r, i)
		}
		if r == utf8.RuneError && isBadByte(s, i) {
			return fmt.Errorf("%q is not valid UTF-8 (byte %d)", s, i)
		}
	}
	return nil
}

// checkAbsPath accepts an absolute, clean path other than the root.
func checkAbsPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("must not be empty")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("must not contain a NUL byte")
	case checkPrintable(p) != nil:
		return checkPrintable(p)
	case !path.IsAbs(p):
		return fmt.Errorf("%q must be an absolute path", p)
	case path.Clean(p) != p:
		return fmt.Errorf("%q must be a clean path (%q)", p, path.Clean(p))
	case p == "/":
		return fmt.Errorf("must not be the root directory")
	}
	return nil
}

var unitTypes = map[string]bool{
	"service": true, "socket": true, "timer": true, "path": true, "mount": true,
	"automount": true, "target": true, "slice": true, "scope": true, "swap": true, "device": true,
}

var unitPrefixRE = regexp.MustCompile(`^[a-zA-Z0-9:_.\\-]+(@[a-zA-Z0-9:_.\\-]*)?$`)

// checkUnitName accepts a systemd unit name with a known type suffix.
func checkUnitName(n string) error {
	if strings.Contains(n, "/") {
		return fmt.Errorf("%q must be a unit name, not a path", n)
	}
	if len(n) > 255 {
		return fmt.Errorf("%q is longer than 255 characters", n)
	}
	dot := strings.LastIndexByte(n, '.')
	if dot < 0 || !unitTypes[n[dot+1:]] {
		return fmt.Errorf("%q must end in a unit type (.service, .socket, .timer, .path, .mount, .automount, .target, .slice, .scope, .swap, .device)", n)
	}
	prefix := n[:dot]
	if prefix == "" || !unitPrefixRE.MatchString(prefix) || strings.HasPrefix(prefix, "@") {
		return fmt.Errorf("%q is not a valid unit name (letters, digits, \":_.\\-\" and one \"@\")", n)
	}
	return nil
}

// isTemplateUnit reports whether n is a template such as foo@.service.
func isTemplateUnit(n string) bool {
	return strings.Contains(n, "@.")
}

var dropinRE = regexp.MustCompile(`^[a-zA-Z0-9_.@-]+\.conf$`)

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
func splitImage(ref string) (repo, digest string, err error) {
	repo, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest && !digestRE.MatchString(digest) {
		return "", "", fmt.Errorf("%q: the digest must be sha256: and 64 lower-case hex digits", ref)
	}
	last := repo[strings.LastIndexByte(repo, '/')+1:]
	if strings.Contains(last, ":") {
		return "", "", fmt.Errorf("%q must not carry a tag: put it in tag, or follow the registry with update", ref)
	}
	if len(repo) > 255 || !imageRE.MatchString(repo) {
		return "", "", fmt.Errorf("%q is not a valid image reference", ref)
	}
	return repo, digest, nil
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
		if err := checkAbsPath(v.Source); err != nil {
			return Volume{}, fmt.Errorf("%q: source %w", s, err)
		}
	} else {
		if !volumeNameRE.MatchString(v.Source) {
			return Volume{}, fmt.Errorf("%q: source %q is neither an absolute path nor a volume name", s, v.Source)
		}
		v.Named = true
	}
	if err := checkAbsPath(v.Target); err != nil {
		return Volume{}, fmt.Errorf("%q: target %w", s, err)
	}
	return v, nil
}

// checkTmpfs accepts "path" or "path:options".
func checkTmpfs(s string) error {
	p, opts, hasOpts := strings.Cut(s, ":")
	if err := checkAbsPath(p); err != nil {
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
		if err := checkAbsPath(p); err != nil {
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

var modeRE = regexp.MustCompile(`^[0-7]{3,4}$`)

// parseMode parses an octal mode such as "0640" or "4755".
func parseMode(s string) (fs.FileMode, error) {
	if !modeRE.MatchString(s) {
		return 0, fmt.Errorf("%q is not an octal mode such as \"0644\"", s)
	}
	n, _ := strconv.ParseUint(s, 8, 32)
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

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

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"10s\" or \"1m30s\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q must not be negative", s)
	}
	return d, nil
}

var ownerRE = regexp.MustCompile(`^([a-z_][a-zA-Z0-9_.-]*\$?|[0-9]+)$`)

// MaxID is the largest user or group id that a file's owner or group may
// name: 2^32-1 is (uid_t)-1, which chown reads as "leave unchanged".
const MaxID = 1<<32 - 2

// validID reports whether s, when it is a numeric id, is within 0..MaxID.
// A name is always valid here.
func validID(s string) bool {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n <= MaxID
}

func validIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}
