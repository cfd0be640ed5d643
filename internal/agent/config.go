package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// DefaultConfigPath is where the agent reads its configuration when no
// --config is given.
const DefaultConfigPath = "/etc/outpost/agent.yaml"

// DefaultStateDir is the state directory when neither the configuration nor
// a flag names one.
const DefaultStateDir = "/var/lib/outpost"

// Config is the agent's configuration: the whole schema of agent.yaml.
type Config struct {
	Source SourceConfig `yaml:"source"`
	Host   HostConfig   `yaml:"host"`
	Status StatusConfig `yaml:"status"`
	Images ImagesConfig `yaml:"images"`
	// StateDir holds what this host has applied and owns.
	StateDir string `yaml:"state_dir"`
	// HealthTimeout is how long changed resources have to become healthy
	// after a new commit is applied.
	HealthTimeout Duration `yaml:"health_timeout"`
	// AllowedPaths confines file resources to these path prefixes; empty
	// allows every path.
	AllowedPaths []string `yaml:"allowed_paths"`
	// Containers restricts what a container resource may ask of the host.
	Containers ContainersConfig `yaml:"containers"`
	// AllowKinds lists the kinds of resource a commit may hold; empty
	// allows every kind. A commit with another kind is refused as a whole.
	AllowKinds []string `yaml:"allow_kinds"`
	// Units restricts which units a commit may manage.
	Units   UnitsConfig   `yaml:"units"`
	Metrics MetricsConfig `yaml:"metrics"`
	// Secrets names the keys that open the repository's encrypted files.
	Secrets SecretsConfig `yaml:"secrets"`

	// Root prefixes every file path (--root); not part of the file.
	Root string `yaml:"-"`
	// AllowEmpty lets a revision render no resource for this host
	// (--allow-empty); without it that is an error: not part of the file.
	AllowEmpty bool `yaml:"-"`
	// File is the path the configuration was read from, empty for the
	// defaults; not part of the file.
	File string `yaml:"-"`
}

// ContainersConfig says what a container resource may ask of the host.
// Each allow_* hands the container the host: a commit that may set them
// may run anything as root on the host. All are off by default. The agent
// decides on what the engine would do: the network the driver asks for,
// and each bind source resolved on this host.
type ContainersConfig struct {
	// AllowPrivileged allows privileged: true, the host's network (by
	// network_mode or networks), network_mode: container:NAME, cap_add,
	// devices, and binds of /, /proc, /sys or of a directory holding a
	// kernel filesystem (proc, sysfs, cgroup, ...).
	AllowPrivileged bool `yaml:"allow_privileged"`
	// AllowDockerSocket allows a bind that hands the container the Docker
	// engine's socket: the socket itself by any path or link, or a
	// directory that holds it.
	AllowDockerSocket bool `yaml:"allow_docker_socket"`
	// AllowSockets allows a bind that hands the container another unix
	// socket (containerd's, D-Bus's, ...), or a directory too large to be
	// checked for one, and log options that address a unix socket.
	AllowSockets bool `yaml:"allow_sockets"`
	// AllowedBinds, when set, confines every bind source, resolved, to
	// these path prefixes.
	AllowedBinds []string `yaml:"allowed_binds"`
}

// UnitsConfig says which units a commit may manage. A unit author is root
// on the host by design (ExecStart runs anything as root): this narrows
// which units a commit may touch, not what a unit may do.
type UnitsConfig struct {
	// AllowedNames are path.Match patterns, such as "web-*.service"; a
	// unit whose name matches none is refused with its commit. Empty
	// allows every name.
	AllowedNames []string `yaml:"allowed_names"`
}

// SourceConfig says where the environment repository comes from.
type SourceConfig struct {
	// URL is an https, ssh or file URL, or a local path. A local path to a
	// plain directory is read as it is.
	URL    string `yaml:"url"`
	Branch string `yaml:"branch"`
	// Interval is how often the daemon polls, at a place in the interval
	// that the host's name decides (splay.go).
	Interval Duration `yaml:"interval"`
	// Timeout bounds each network operation on the source (a ref
	// advertisement, a fetch) over every transport, connect included.
	Timeout Duration     `yaml:"timeout"`
	Auth    AuthConfig   `yaml:"auth"`
	Verify  VerifyConfig `yaml:"verify"`
	// MaxFetchBytes bounds the pack of one fetch, in bytes; 0 means
	// pull.DefaultMaxFetchBytes. A commit whose fetch passes it is
	// recorded invalid.
	MaxFetchBytes int64 `yaml:"max_fetch_bytes"`
}

// The bounds of source.timeout. Below a second a TLS or SSH handshake
// cannot finish. A poll is a ref advertisement and a fetch, each bounded by
// the timeout, while the daemon's loop waits: twice the upper bound stays
// below stallLimit, after which the watchdog restarts the agent.
const (
	minSourceTimeout = time.Second
	maxSourceTimeout = 5 * time.Minute
)

// minFetchBytes is the smallest source.max_fetch_bytes: below it, a
// repository of a few files could not be fetched.
const minFetchBytes = 1 << 20

// AuthConfig holds the paths of the credentials used to fetch; the files are read
// when needed and their contents are never logged.
type AuthConfig struct {
	SSHKeyFile     string `yaml:"ssh_key_file"`
	KnownHostsFile string `yaml:"known_hosts_file"`
	Username       string `yaml:"username"`
	PasswordFile   string `yaml:"password_file"`
	TokenFile      string `yaml:"token_file"`
	CAFile         string `yaml:"ca_file"`
}

// VerifyConfig names the keys a commit must be signed with before it is applied.
type VerifyConfig struct {
	AllowedSigners string `yaml:"allowed_signers"`
	OpenPGPKeyring string `yaml:"openpgp_keyring"`
}

// HostConfig is this host's identity for fleet.yaml selectors and templates.
type HostConfig struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

// StatusConfig configures the notes the host writes into Git.
type StatusConfig struct {
	Push bool `yaml:"push"`
	// Remote is a separate repository for notes; empty uses the source.
	Remote string `yaml:"remote"`
}

// ImagesConfig configures how often followed registries are polled.
type ImagesConfig struct {
	Interval Duration `yaml:"interval"`
}

// MetricsConfig configures the Prometheus endpoint; an empty Listen turns it off.
type MetricsConfig struct {
	Listen string `yaml:"listen"`
}

// Duration is a time.Duration written as "1m30s" in the configuration.
type Duration time.Duration

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Default returns the configuration that applies when agent.yaml says nothing.
// Host.Name is left empty: Resolve fills it in from the hostname.
func Default() *Config {
	return &Config{
		Source: SourceConfig{
			Branch:   "main",
			Interval: Duration(time.Minute),
			Timeout:  Duration(pull.DefaultTimeout),
		},
		Status:        StatusConfig{Push: true},
		Images:        ImagesConfig{Interval: Duration(5 * time.Minute)},
		StateDir:      DefaultStateDir,
		HealthTimeout: Duration(2 * time.Minute),
	}
}

// ErrConfig is matched by errors.Is for every ConfigErrors value.
var ErrConfig = errors.New("invalid configuration")

// ConfigError is one problem in a configuration file.
type ConfigError struct {
	File      string
	Line, Col int
	// Field is the dotted path of the field, such as "source.interval".
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	pos := e.File
	if e.Line > 0 {
		pos = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col)
	}
	if e.Field == "" {
		return pos + ": " + e.Msg
	}
	return pos + ": " + e.Field + ": " + e.Msg
}

// ConfigErrors is every problem of one configuration file, sorted by position.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Is makes errors.Is(err, ErrConfig) true.
func (es ConfigErrors) Is(target error) bool { return target == ErrConfig }

// LoadConfig reads the configuration file at path over the defaults. When
// explicit is false (the path is the default one) a missing file yields the
// defaults; a missing explicit file is an error.
func LoadConfig(path string, explicit bool) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	cfg, err := ParseConfig(path, b)
	if err != nil {
		return nil, err
	}
	cfg.File = path
	return cfg, nil
}

// ParseConfig parses the configuration document b, read from file, over the
// defaults. Unknown fields, values of the wrong type and invalid values are
// all reported, each with its file, line, column and field, as ConfigErrors.
func ParseConfig(file string, b []byte) (*Config, error) {
	cfg := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // an empty file is all defaults
		}
		return nil, ConfigErrors{syntaxError(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, ConfigErrors{syntaxError(file, err)}
		}
		return nil, ConfigErrors{{File: file, Line: line, Col: 1, Msg: "more than one YAML document"}}
	}
	d := &decoder{file: file, yd: spec.NewDecoder(file), pos: map[string]*yaml.Node{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	d.check(cfg)
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool {
			a, b := d.errs[i], d.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, d.errs
	}
	return cfg, nil
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into a
// ConfigError with the line.
func syntaxError(file string, err error) *ConfigError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		_, rest, _ := strings.Cut(msg, ":")
		return &ConfigError{File: file, Line: line, Col: 1, Msg: strings.TrimSpace(rest)}
	}
	return &ConfigError{File: file, Msg: msg}
}

// decoder reads agent.yaml into a Config with spec's Decoder, the one
// reader of positioned YAML: the same type checks, messages and "did you
// mean" as a manifest's. It walks Config's fields by reflection and turns
// each problem into a ConfigError that names the field's dotted path.
type decoder struct {
	file string
	yd   *spec.Decoder
	errs ConfigErrors
	// pos maps a field path to the node of its value, for checks after
	// decoding.
	pos map[string]*yaml.Node
	// moved counts yd's problems already in errs.
	moved int
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &ConfigError{File: d.file, Line: n.Line, Col: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// collect moves what spec's decoder reported into d.errs: each message
// starts with the field's path as it was passed, which becomes the
// ConfigError's Field ("settings", the whole file's, becomes none).
func (d *decoder) collect() {
	errs := d.yd.Errors()
	for _, e := range errs[d.moved:] {
		field, msg, ok := strings.Cut(e.Msg, ": ")
		switch {
		case !ok || strings.ContainsAny(field, " \""):
			field, msg = "", e.Msg
		case field == "settings": // the file as a whole
			field = ""
		}
		// A problem with a key is the key's: "source.auth.ssh_key:
		// unknown field (known: ...)".
		if m := keyProblemRE.FindStringSubmatch(msg); m != nil {
			field = strings.TrimPrefix(field+"."+m[2], ".")
			msg = strings.TrimSpace(strings.TrimPrefix(m[1], "field") + m[3])
		}
		d.errs = append(d.errs, &ConfigError{File: d.file, Line: e.Pos.Line, Col: e.Pos.Col, Field: field, Msg: msg})
	}
	d.moved = len(errs)
}

var (
	durationType = reflect.TypeFor[Duration]()
	keyProblemRE = regexp.MustCompile(`^(unknown field|field) "([^"]+)"(.*)$`)
)

// decode stores n into v, reporting every problem instead of stopping at
// the first, so that an operator fixes a file in one round. It is one
// switch over the kinds of value a configuration holds, each case short.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, field string) {
	defer d.collect()
	if n.Kind == yaml.AliasNode {
		d.errorf(n, field, "aliases are not supported")
		return
	}
	if field != "" {
		d.pos[field] = n
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // key with no value: keep the default
	}
	f := spec.Field{Name: field, Val: n, At: n}
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, field, "must be a duration such as 1m30s, got %s", spec.Describe(n))
			return
		}
		s, ok := d.yd.Str(f, field)
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.errorf(n, field, "invalid duration %q: want a number with a unit such as 30s or 5m", s)
			return
		}
		if dur <= 0 {
			d.errorf(n, field, "must be positive, got %s", s)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.Int64:
		if i, ok := d.yd.Int(f, field); ok {
			if i < 0 {
				d.errorf(n, field, "must not be negative, got %d", i)
				return
			}
			v.SetInt(i)
		}
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, field)
	case v.Kind() == reflect.String:
		if s, ok := d.yd.Str(f, field); ok {
			v.SetString(s)
		}
	case v.Kind() == reflect.Bool:
		if b, ok := d.yd.Bool(f, field); ok {
			v.SetBool(b)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		items, _ := d.yd.StrList(f, field)
		out := reflect.MakeSlice(v.Type(), 0, len(items))
		for i, it := range items {
			d.pos[fmt.Sprintf("%s[%d]", field, i)] = it.At
			out = reflect.Append(out, reflect.ValueOf(it.Val))
		}
		v.Set(out)
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		items, _ := d.yd.StrMap(f, field)
		out := reflect.MakeMapWithSize(v.Type(), len(items))
		for _, it := range items {
			d.pos[field+"."+it.Key] = it.At
			out.SetMapIndex(reflect.ValueOf(it.Key), reflect.ValueOf(it.Val))
		}
		v.Set(out)
	default:
		panic(fmt.Sprintf("agent: config field %s has unsupported type %s", field, v.Type()))
	}
}

// decodeStruct reads a mapping into the struct v, whose yaml tags name the
// known fields.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, field string) {
	known := map[string]bool{}
	index := map[string]int{}
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			known[name], index[name] = true, i
		}
	}
	what := field
	if what == "" {
		what = "settings"
	}
	fields, ok := d.yd.Fields(n, what, known)
	if !ok {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		f := name
		if field != "" {
			f = field + "." + name
		}
		d.decode(fields[name].At, v.Field(index[name]), f)
	}
}

// check validates the values that decoded, at their positions.
func (d *decoder) check(cfg *Config) {
	if cfg.StateDir != "" && !filepath.IsAbs(cfg.StateDir) {
		d.errorf(d.at("state_dir"), "state_dir", "must be an absolute path, got %q", cfg.StateDir)
	}
	if cfg.StateDir == "" {
		d.errorf(d.at("state_dir"), "state_dir", "must not be empty")
	}
	for field, list := range map[string][]string{"allowed_paths": cfg.AllowedPaths, "containers.allowed_binds": cfg.Containers.AllowedBinds} {
		for i, p := range list {
			f := fmt.Sprintf("%s[%d]", field, i)
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				d.errorf(d.at(f), f, "must be an absolute, clean path, got %q", p)
			}
		}
	}
	d.checkPolicy(cfg)
	for k := range cfg.Host.Labels {
		if k == "" || strings.ContainsAny(k, "=, \t\n") {
			f := "host.labels." + k
			d.errorf(d.at(f), f, "invalid label name %q", k)
		}
	}
	for i, p := range append([]string{cfg.Secrets.Key}, cfg.Secrets.Identities...) {
		f := "secrets.key"
		if i > 0 {
			f = fmt.Sprintf("secrets.identities[%d]", i-1)
		}
		if p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p) {
			d.errorf(d.at(f), f, "must be an absolute, clean path, got %q", p)
		}
	}
	if l := cfg.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			d.errorf(d.at("metrics.listen"), "metrics.listen", "want host:port, got %q", l)
		}
	}
	if n := cfg.Source.MaxFetchBytes; n != 0 && n < minFetchBytes {
		d.errorf(d.at("source.max_fetch_bytes"), "source.max_fetch_bytes", "must be 0 (the default, %d) or at least %d, got %d", pull.DefaultMaxFetchBytes, minFetchBytes, n)
	}
	if !spec.Printable(cfg.Host.Name) {
		d.errorf(d.at("host.name"), "host.name", "%q must not hold control characters", cfg.Host.Name)
	}
	for k, v := range cfg.Host.Labels {
		if !spec.Printable(k) || !spec.Printable(v) {
			f := "host.labels." + k
			d.errorf(d.at(f), spec.Quote(f), "%q: %q must not hold control characters", k, v)
		}
	}
	if t := time.Duration(cfg.Source.Timeout); t < minSourceTimeout || t > maxSourceTimeout {
		d.errorf(d.at("source.timeout"), "source.timeout", "must be between %s and %s, got %s", minSourceTimeout, maxSourceTimeout, t)
	}
	if cfg.Source.Verify.AllowedSigners != "" && cfg.Source.Verify.OpenPGPKeyring != "" {
		d.errorf(d.at("source.verify.openpgp_keyring"), "source.verify", "set allowed_signers or openpgp_keyring, not both")
	}
	if _, set := d.pos["status.push"]; set && isOCIURL(cfg.Source.URL) && cfg.Status.Push && cfg.Status.Remote == "" {
		// A registry holds no Git notes. Left at its default, push
		// does nothing for an oci:// source; asked for, it is a mistake.
		d.errorf(d.at("status.push"), "status.push", "an oci:// source has no Git repository for notes: set status.remote to one")
	}
}

// checkPolicy validates allow_kinds and units.allowed_names. An empty list
// is refused rather than read as "nothing allowed" or "all allowed": either
// reading would surprise someone.
func (d *decoder) checkPolicy(cfg *Config) {
	for _, l := range []struct {
		field, what string
		list        []string
	}{{"allow_kinds", "kind", cfg.AllowKinds}, {"units.allowed_names", "unit name", cfg.Units.AllowedNames}} {
		if l.list != nil && len(l.list) == 0 {
			d.errorf(d.at(l.field), l.field, "must not be empty (leave it out to allow every %s)", l.what)
		}
	}
	seen := map[string]bool{}
	for i, k := range cfg.AllowKinds {
		f := fmt.Sprintf("allow_kinds[%d]", i)
		if !spec.Known(spec.Kind(k)) {
			d.errorf(d.at(f), f, "unknown kind %q (want %s)", k, spec.KindList())
		} else if seen[k] {
			d.errorf(d.at(f), f, "%s is listed twice", k)
		}
		seen[k] = true
	}
	for i, p := range cfg.Units.AllowedNames {
		f := fmt.Sprintf("units.allowed_names[%d]", i)
		if _, err := path.Match(p, ""); err != nil || p == "" || strings.Contains(p, "/") {
			d.errorf(d.at(f), f, "invalid pattern %q: want a unit name pattern such as web-*.service (path.Match syntax)", p)
		}
	}
}

// at returns the node of a field's value, or an empty node (no position)
// when the field was not written.
func (d *decoder) at(field string) *yaml.Node {
	if n, ok := d.pos[field]; ok {
		return n
	}
	return &yaml.Node{}
}

// Overrides are the command line's flags that take precedence over the
// configuration file. Empty values leave the file's value alone.
type Overrides struct {
	Source     string
	Host       string
	Labels     map[string]string // merged over host.labels
	StateDir   string
	Root       string
	AllowEmpty bool
}

// Apply sets the overrides on cfg.
func (o Overrides) Apply(cfg *Config) {
	if o.Source != "" {
		cfg.Source.URL = o.Source
	}
	if o.Host != "" {
		cfg.Host.Name = o.Host
	}
	if len(o.Labels) > 0 {
		labels := make(map[string]string, len(cfg.Host.Labels)+len(o.Labels))
		for k, v := range cfg.Host.Labels {
			labels[k] = v
		}
		for k, v := range o.Labels {
			labels[k] = v
		}
		cfg.Host.Labels = labels
	}
	if o.StateDir != "" {
		cfg.StateDir = o.StateDir
	}
	if o.Root != "" {
		cfg.Root = o.Root
	}
	if o.AllowEmpty {
		cfg.AllowEmpty = true
	}
}

// Resolve fills in what the configuration leaves to the machine: the host
// name defaults to the hostname.
func (cfg *Config) Resolve() error {
	if cfg.Host.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("host name: %w (set host.name or --host)", err)
		}
		cfg.Host.Name = h
	}
	// A bare repository is Git, not a plain directory: read as one it
	// holds no manifests. Fetching it as a file:// URL gives its branch.
	if u := cfg.Source.URL; u != "" && !gitURL.MatchString(u) && isBareRepo(u) {
		abs, err := filepath.Abs(u)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		cfg.Source.URL = "file://" + filepath.ToSlash(abs)
	}
	return nil
}

// isBareRepo reports whether dir looks like a bare Git repository: HEAD,
// objects/ and refs/ at its top.
func isBareRepo(dir string) bool {
	head, err := os.Stat(filepath.Join(dir, "HEAD"))
	if err != nil || !head.Mode().IsRegular() {
		return false
	}
	for _, d := range []string{"objects", "refs"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// ParseLabel parses a --label flag's "key=value".
func ParseLabel(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || strings.ContainsAny(k, ", \t\n") {
		return "", "", fmt.Errorf("label %q: want key=value", s)
	}
	return k, v, nil
}
