package docker

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// Kind is the container kind: a Docker container, its image and settings.
const Kind spec.Kind = "container"

func init() {
	converge.Register(converge.Kind{KindDef: spec.KindDef{
		Name:  Kind,
		Order: 30,
		Fields: []string{"name", "image", "tag", "update", "command", "entrypoint", "env", "ports",
			"volumes", "tmpfs", "restart", "labels", "user", "workdir", "network_mode", "networks",
			"devices", "cap_add", "cap_drop", "privileged", "health", "log", "memory", "cpus",
			"stop_timeout", "stop_signal", "remove_volumes",
			"hostname", "extra_hosts", "dns", "read_only", "init", "tty",
			"security_opt", "group_add", "pids_limit", "sysctls", "cpuset", "env_secrets", "secret_files",
			"shm_size", "ulimits", "expose", "project", "env_file"},
		Hints:       []string{"containers", "docker"},
		Decode:      decode,
		Restartable: true,
		Check:       checkPorts,
	}, NewDriver: func(ctx context.Context, env converge.Env) (converge.Driver, error) {
		return New(ctx, Options{Logger: env.Logger})
	}})
}

// Of returns r's container, or nil when r is not a container.
func Of(r *spec.Resource) *Container {
	c, _ := r.Object.(*Container)
	return c
}

// Resource wraps c in a resource, as a manifest would declare it.
func Resource(c *Container) *spec.Resource {
	return &spec.Resource{ID: spec.ID{Kind: Kind, Name: c.Name}, Prune: true, Drift: spec.DriftRevert, Object: c}
}

// Clone implements spec.Object.
func (c *Container) Clone() spec.Object {
	k := *c
	k.Command = slices.Clone(k.Command)
	k.Entrypoint = slices.Clone(k.Entrypoint)
	k.Env = maps.Clone(k.Env)
	k.Ports = slices.Clone(k.Ports)
	k.Volumes = slices.Clone(k.Volumes)
	k.SecretFiles = slices.Clone(k.SecretFiles)
	k.SecretEnv = maps.Clone(k.SecretEnv)
	k.SecretEnvDigests = maps.Clone(k.SecretEnvDigests)
	k.Tmpfs = slices.Clone(k.Tmpfs)
	k.Labels = maps.Clone(k.Labels)
	k.Networks = slices.Clone(k.Networks)
	k.Devices = slices.Clone(k.Devices)
	k.CapAdd = slices.Clone(k.CapAdd)
	k.CapDrop = slices.Clone(k.CapDrop)
	k.ExtraHosts = slices.Clone(k.ExtraHosts)
	k.DNS = slices.Clone(k.DNS)
	k.SecurityOpt = slices.Clone(k.SecurityOpt)
	k.GroupAdd = slices.Clone(k.GroupAdd)
	k.Sysctls = maps.Clone(k.Sysctls)
	k.Ulimits = slices.Clone(k.Ulimits)
	k.Expose = slices.Clone(k.Expose)
	k.Endpoints = maps.Clone(k.Endpoints)
	if k.Update != nil {
		u := *k.Update
		u.Exclude = slices.Clone(u.Exclude)
		k.Update = &u
	}
	if k.Health != nil {
		h := *k.Health
		h.Cmd = slices.Clone(h.Cmd)
		k.Health = &h
	}
	if k.Log != nil {
		lg := *k.Log
		lg.Options = maps.Clone(lg.Options)
		k.Log = &lg
	}
	if k.StopTimeout != nil {
		t := *k.StopTimeout
		k.StopTimeout = &t
	}
	return &k
}

// Canonical implements spec.Object: the normalized container, as specHash
// digests it for the label on the container.
func (c *Container) Canonical() any { return c.normalized() }

// Container is a managed Docker container.
type Container struct {
	Name  string
	Image string // repository, without tag
	Tag   string // pinned tag; empty when Update is set and nothing is resolved yet
	// Digest pins the image digest when known (resolved by a registry policy).
	Digest string
	Update *UpdatePolicy

	Command    []string
	Entrypoint []string
	Env        map[string]string
	Ports      []Port
	Volumes    []Volume
	Tmpfs      []string // "path" or "path:options"
	Restart    string   // no | always | on-failure[:N] | unless-stopped
	Labels     map[string]string
	User       string
	Workdir    string
	// NetworkMode is bridge (default), host, none, or container:NAME.
	NetworkMode string
	Networks    []string
	Devices     []string // host[:container[:perms]]
	CapAdd      []string
	CapDrop     []string
	Privileged  bool
	Health      *Health
	Log         *Log
	Memory      int64   // bytes; 0 is no limit
	CPUs        float64 // 0 is no limit
	StopTimeout *time.Duration
	StopSignal  string
	// RemoveVolumes removes the container's named volumes when it is pruned.
	RemoveVolumes bool
	// SecretFiles are files that the container reads its secrets from,
	// their content decrypted at render (secret_files:); the agent writes
	// them under its run directory and binds them read-only. Never in the
	// JSON: SecretsDigest, their keyed hash, stands for them.
	SecretFiles   []SecretFile `json:"-"`
	SecretsDigest string       `json:",omitempty"`
	// SecretEnv names the variables of Env that came from secrets
	// (env_secrets); SecretEnvDigests holds their keyed hashes, which
	// stand for them in the spec hash.
	SecretEnv        map[string]bool   `json:"-"`
	SecretEnvDigests map[string]string `json:",omitempty"`

	// Fields that Compose users write. Left out of the hash when unset, so
	// that a container declared before they existed keeps its hash and is
	// not recreated.
	Hostname   string   `json:",omitempty"`
	ExtraHosts []string `json:",omitempty"` // "name:address", sorted
	DNS        []string `json:",omitempty"` // resolver addresses, in order
	ReadOnly   bool     `json:",omitempty"` // a read-only root filesystem
	Init       bool     `json:",omitempty"` // an init process as PID 1
	TTY        bool     `json:",omitempty"`

	SecurityOpt []string          `json:",omitempty"` // "no-new-privileges", "seccomp=unconfined"...
	GroupAdd    []string          `json:",omitempty"` // supplementary groups, names or IDs
	PidsLimit   int64             `json:",omitempty"` // 0 is no limit
	Sysctls     map[string]string `json:",omitempty"`
	Cpuset      string            `json:",omitempty"` // CPUs the container may run on: "0-1,3"
	ShmSize     int64             `json:",omitempty"` // bytes of /dev/shm; 0 is the engine's default
	Ulimits     []Ulimit          `json:",omitempty"` // sorted by name
	// Expose lists the ports the container declares without publishing
	// them, one "PORT/PROTO" each (ranges expanded), sorted.
	Expose []string `json:",omitempty"`
	// Endpoints holds a network's aliases and static addresses, by the
	// network's name (networks: written as a mapping).
	Endpoints map[string]Endpoint `json:",omitempty"`
	// EnvFileErr is why an env_file could not be read at render; the
	// resource fails with it and the host keeps what it runs.
	EnvFileErr string `json:"-"`
	// Project is the Compose project the container is a service of; its
	// labels, default network and aliases are in the fields above.
	Project string `json:",omitempty"`
}

// Endpoint is how the container joins one network: the other names it
// answers to there, and its static addresses.
type Endpoint struct {
	Aliases    []string `json:",omitempty"` // sorted
	IPv4, IPv6 string   `json:",omitempty"`
}

// Ulimit is one resource limit of the container's processes; -1 is
// unlimited.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// Ref returns image:tag, image:tag@digest or image@digest, whichever parts
// are set, and image:latest when neither is.
func (c *Container) Ref() string {
	tag := c.Tag
	if tag == "" && c.Digest == "" {
		tag = "latest"
	}
	return Reference(c.Image, tag, c.Digest)
}

// Reference is the one way Outpost writes an image reference: the
// repository, ":tag" when there is a tag and "@digest" when there is a
// digest. Without a repository it is "tag" or "tag@digest", as notes and
// reports print what a container runs.
func Reference(image, tag, digest string) string {
	ref := image
	if tag != "" {
		if ref != "" {
			ref += ":"
		}
		ref += tag
	}
	if digest != "" {
		ref += "@" + digest
	}
	return ref
}

// UpdatePolicy says how a container follows its registry.
type UpdatePolicy struct {
	Policy string // semver | numerical | alphabetical | digest
	Range  string // semver range (Masterminds syntax)
	Order  string // asc | desc, for numerical and alphabetical
	Filter string // regular expression; its named group "extract" is compared
	// Exclude lists glob patterns of tags never considered; default
	// *.sig, *.att, *.sbom.
	Exclude []string
	Tag     string // for policy digest: the mutable tag followed
	// Loose, for policy semver, also reads versions that are not strict
	// SemVer ("v1", "1.2", "1.2-5", "20261101") as versions.
	Loose bool
	// Mode is who resolves the policy: ModeHost (the host polls its
	// registry) or ModeGit (the host runs the tag written in Git, which
	// `outpost images update` rewrites). Empty until SetUpdateMode gives
	// it fleet.yaml's default.
	Mode string
}

// Port is one published port.
type Port struct {
	HostIP        string
	HostPort      uint16 // 0: any
	ContainerPort uint16
	Protocol      string // tcp (default) | udp | sctp
}

// Volume is a bind mount or a named volume.
type Volume struct {
	Source   string // absolute host path for a bind, or a volume name
	Target   string
	ReadOnly bool
	Named    bool
	// Secret marks the bind of a secret file that the agent wrote.
	Secret bool `json:",omitempty"`
}

// SecretFile is a secret's plaintext and where the container reads it.
type SecretFile struct {
	Target  string
	Content []byte
}

// Seal sets SecretsDigest, the keyed hash of the secret files, and the
// keyed hash of each secret variable, with mac.
func (c *Container) Seal(mac func([]byte) []byte) {
	for name := range c.SecretEnv {
		if c.SecretEnvDigests == nil {
			c.SecretEnvDigests = map[string]string{}
		}
		c.SecretEnvDigests[name] = hex.EncodeToString(mac([]byte(name + "=" + c.Env[name])))
	}
	if len(c.SecretFiles) == 0 {
		return
	}
	var b bytes.Buffer
	for _, f := range c.SecretFiles {
		b.WriteString(f.Target)
		b.WriteByte(0)
		b.Write(f.Content)
		b.WriteByte(0)
	}
	c.SecretsDigest = hex.EncodeToString(mac(b.Bytes()))
}

// Health is a container healthcheck.
type Health struct {
	Cmd         []string
	Interval    time.Duration
	Timeout     time.Duration
	StartPeriod time.Duration
	Retries     int
}

// Log is a container's log driver.
type Log struct {
	Driver  string
	Options map[string]string
}

// ReservedLabelPrefix starts the container labels with which Outpost marks
// what it owns; a manifest may not set them.
const ReservedLabelPrefix = "io.outpost."

var policies = map[string]bool{"semver": true, "numerical": true, "alphabetical": true, "digest": true}

// DefaultExclude lists the tags that an update policy never considers unless
// the manifest says otherwise: signatures, attestations and SBOMs.
var DefaultExclude = []string{"*.sig", "*.att", "*.sbom"}

// decode reads a container declaration.
func decode(d *spec.Decoder, f map[string]spec.Field) bool {
	c := &Container{}
	d.Resource().Object = c
	n, ok := d.Name("name", checkContainerName)
	if !ok {
		return false
	}
	c.Name = n
	decodeImage(d, f, c)
	decodeProcess(d, c)
	decodeNetwork(d, f, c)
	decodeMounts(d, f, c)
	decodeLimits(d, f, c)
	decodeHostSettings(d, f, c)
	decodeProject(d, f, c)
	return true
}

// decodeImage reads the image, and exactly one of tag and update unless a
// digest pins it, or both in update mode git. Whether a container whose
// update names no mode may have a tag is known once fleet.yaml's default
// is: SetUpdateMode checks it.
func decodeImage(d *spec.Decoder, f map[string]spec.Field, c *Container) {
	root := d.Root()
	imageOK := false
	if g, ok := f["image"]; !ok {
		d.Errorf(root, "container: missing field \"image\"")
	} else if s, ok := d.Str(g, "image"); ok {
		repo, tag, digest, err := splitImage(s)
		switch {
		case err != nil:
			d.Errorf(g.At, "image: %v", err)
		case tag != "" && d.Has("tag"):
			d.Errorf(g.At, "image: %q carries a tag and tag is set too: keep one", s)
		default:
			c.Image, c.Tag, c.Digest, imageOK = repo, tag, digest, true
		}
	}
	d.String("tag", &c.Tag, checkTag)
	if g, ok := f["update"]; ok {
		c.Update = decodeUpdate(d, g)
	}
	_, hasTag := f["tag"]
	hasTag = hasTag || c.Tag != ""
	_, hasUpdate := f["update"]
	mode := ""
	if c.Update != nil {
		mode = c.Update.Mode
	}
	switch {
	case hasTag && hasUpdate && mode == ModeHost:
		d.Errorf(f["update"].Key, "update: tag and update are exclusive in mode host: pin a tag or follow the registry (mode git runs the tag written in Git)")
	case !hasTag && hasUpdate && mode == ModeGit:
		d.Errorf(f["update"].Key, "update: mode git runs the tag written in Git: missing field \"tag\"")
	case hasUpdate && c.Digest != "":
		d.Errorf(f["update"].Key, "update: an image pinned by digest cannot follow the registry")
	case !hasTag && !hasUpdate && c.Digest == "" && imageOK:
		d.Errorf(root, "container: missing field \"tag\" or \"update\" (Outpost never assumes \"latest\")")
	}
}

// decodeEnvSecrets reads env_secrets: variables whose values Render
// decrypts from the repository's encrypted files (docs/secrets.md).
func decodeEnvSecrets(d *spec.Decoder, c *Container) {
	g, ok := d.Field("env_secrets")
	if !ok {
		return
	}
	items, _ := d.StrMap(g, "env_secrets")
	for _, it := range items {
		name := it.Key
		if err := checkEnvName(name); err != nil {
			d.Errorf(it.At, "env_secrets: %v", err)
			continue
		}
		if _, dup := c.Env[name]; dup {
			d.Errorf(it.At, "env_secrets: %s is in env too: keep one", name)
			continue
		}
		d.SecretRef(it.At, "env_secrets."+name, it.Val, func(o spec.Object, v []byte) {
			c := o.(*Container)
			if c.Env == nil {
				c.Env = map[string]string{}
			}
			if c.SecretEnv == nil {
				c.SecretEnv = map[string]bool{}
			}
			c.Env[name] = string(v)
			c.SecretEnv[name] = true
		})
	}
}

// decodeSecretFiles reads secret_files: paths in the container, each read
// from a secret (FILE or FILE#KEY) that Render decrypts.
func decodeSecretFiles(d *spec.Decoder, c *Container) {
	g, ok := d.Field("secret_files")
	if !ok {
		return
	}
	items, _ := d.StrMap(g, "secret_files")
	for _, it := range items {
		target := it.Key
		if err := spec.CheckAbsPath(target); err != nil {
			d.Errorf(it.At, "secret_files: %v", err)
			continue
		}
		d.SecretRef(it.At, "secret_files."+target, it.Val, func(o spec.Object, v []byte) {
			c := o.(*Container)
			c.SecretFiles = append(c.SecretFiles, SecretFile{Target: target, Content: v})
		})
	}
}

// decodeProcess reads what the container runs, and as whom.
func decodeProcess(d *spec.Decoder, c *Container) {
	c.Command = decodeArgs(d, "command")
	c.Entrypoint = decodeArgs(d, "entrypoint")
	c.Env = decodeEnv(d)
	decodeEnvFiles(d, c)
	decodeEnvSecrets(d, c)
	decodeSecretFiles(d, c)
	d.String("restart", &c.Restart, func(s string) error {
		if !restartRE.MatchString(s) {
			return fmt.Errorf("%q: want no, always, on-failure[:N] or unless-stopped", s)
		}
		return nil
	})
	c.Labels = d.Map("labels", CheckLabel)
	d.String("user", &c.User, func(s string) error {
		if s == "" || strings.ContainsAny(s, " \t\n\x00") {
			return fmt.Errorf("%q is not a user", s)
		}
		return nil
	})
	d.String("workdir", &c.Workdir, spec.CheckAbsPath)
	capCheck := func(s string) error {
		if !capRE.MatchString(s) {
			return fmt.Errorf("%q is not a capability such as NET_ADMIN", s)
		}
		return nil
	}
	c.CapAdd = d.List("cap_add", capCheck)
	c.CapDrop = d.List("cap_drop", capCheck)
	d.Boolean("privileged", &c.Privileged)
	d.String("stop_signal", &c.StopSignal, func(s string) error {
		if !signalRE.MatchString(s) {
			return fmt.Errorf("%q is not a signal such as SIGTERM", s)
		}
		return nil
	})
}

// decodeNetwork reads the published ports and the networks, which exclude
// each other with some network modes.
func decodeNetwork(d *spec.Decoder, f map[string]spec.Field, c *Container) {
	if g, ok := f["ports"]; ok {
		c.Ports = decodePorts(d, g)
	}
	d.String("network_mode", &c.NetworkMode, func(s string) error {
		switch s {
		case "bridge", "host", "none":
			return nil
		}
		if other, ok := strings.CutPrefix(s, "container:"); ok {
			return checkContainerName(other)
		}
		return fmt.Errorf("%q: want bridge, host, none or container:NAME", s)
	})
	if g, ok := f["networks"]; ok && g.Val != nil && g.Val.Kind == yaml.MappingNode {
		c.Networks, c.Endpoints = decodeEndpoints(d, g)
	} else {
		c.Networks = d.List("networks", checkNetworkName)
	}
	if len(c.Networks) > 0 && c.NetworkMode != "" && c.NetworkMode != "bridge" {
		d.Errorf(f["networks"].Key, "networks: not allowed with network_mode: %s", c.NetworkMode)
	}
	if len(c.Ports) > 0 && (c.NetworkMode == "host" || c.NetworkMode == "none" || strings.HasPrefix(c.NetworkMode, "container:")) {
		d.Errorf(f["ports"].Key, "ports: not allowed with network_mode: %s", c.NetworkMode)
	}
}

// decodeMounts reads what the container sees of the host: volumes, tmpfs
// and devices.
func decodeMounts(d *spec.Decoder, f map[string]spec.Field, c *Container) {
	if g, ok := f["volumes"]; ok {
		decodeVolumes(d, g, c) // a tmpfs of the long syntax joins Tmpfs
	}
	c.Tmpfs = append(c.Tmpfs, d.List("tmpfs", checkTmpfs)...)
	c.Devices = d.List("devices", checkDevice)
	d.Boolean("remove_volumes", &c.RemoveVolumes)
}

// decodeLimits reads the health check, logging, resources and stopping.
func decodeLimits(d *spec.Decoder, f map[string]spec.Field, c *Container) {
	if g, ok := f["health"]; ok {
		c.Health = decodeHealth(d, g)
	}
	if g, ok := f["log"]; ok {
		c.Log = decodeLog(d, g)
	}
	if g, ok := f["memory"]; ok {
		c.Memory, _ = decodeSize(d, g)
	}
	if g, ok := f["cpus"]; ok {
		if v, ok := d.Number(g, "cpus"); ok {
			if v <= 0 || v > 1024 {
				d.Errorf(g.At, "cpus: %v must be more than 0 and at most 1024", v)
			}
			c.CPUs = v
		}
	}
	if g, ok := f["stop_timeout"]; ok {
		if s, ok := d.Str(g, "stop_timeout"); ok {
			if v, err := spec.ParseDuration(s); err != nil {
				d.Errorf(g.At, "stop_timeout: %v", err)
			} else {
				c.StopTimeout = &v
			}
		}
	}
}

// decodeSize reads a size in bytes: a number, or a string such as "512m".
func decodeSize(d *spec.Decoder, g spec.Field) (int64, bool) {
	if g.Val != nil && g.Val.Kind == yaml.ScalarNode && g.Val.ShortTag() == "!!int" {
		n, ok := d.Int(g, g.Name)
		if ok && n <= 0 {
			d.Errorf(g.At, "%s: must be more than zero", g.Name)
			return 0, false
		}
		return n, ok
	}
	s, ok := d.Str(g, g.Name)
	if !ok {
		return 0, false
	}
	n, err := parseMemory(s)
	if err != nil {
		d.Errorf(g.At, "%s: %v", g.Name, err)
		return 0, false
	}
	return n, true
}

func decodeUpdate(d *spec.Decoder, g spec.Field) *UpdatePolicy {
	f, ok := d.Fields(g.At, "update", spec.FieldSet([]string{"policy", "range", "order", "filter", "exclude", "tag", "loose", "mode"}))
	if !ok {
		return nil
	}
	u := &UpdatePolicy{}
	pf, ok := f["policy"]
	if !ok {
		d.Errorf(g.At, "update: missing field \"policy\" (semver, numerical, alphabetical or digest)")
		return u
	}
	if s, ok := d.Str(pf, "update.policy"); ok {
		if !policies[s] {
			d.Errorf(pf.At, "update.policy: %q: want semver, numerical, alphabetical or digest", s)
			return u
		}
		u.Policy = s
	}
	if h, ok := f["range"]; ok {
		if s, ok := d.Str(h, "update.range"); ok {
			if u.Policy != "semver" {
				d.Errorf(h.Key, "update.range: only for policy semver")
			} else if _, err := semver.NewConstraint(s); err != nil {
				d.Errorf(h.At, "update.range: %q: %v", s, err)
			}
			u.Range = s
		}
	}
	if h, ok := f["mode"]; ok {
		if s, ok := d.Str(h, "update.mode"); ok {
			if s != ModeHost && s != ModeGit {
				d.Errorf(h.At, "update.mode: %q: want host or git", s)
			}
			u.Mode = s
		}
	}
	if h, ok := f["loose"]; ok {
		if b, ok := d.Bool(h, "update.loose"); ok {
			if u.Policy != "semver" {
				d.Errorf(h.Key, "update.loose: only for policy semver")
			}
			u.Loose = b
		}
	}
	if h, ok := f["order"]; ok {
		if s, ok := d.Str(h, "update.order"); ok {
			switch {
			case u.Policy != "numerical" && u.Policy != "alphabetical":
				d.Errorf(h.Key, "update.order: only for policy numerical or alphabetical")
			case s != "asc" && s != "desc":
				d.Errorf(h.At, "update.order: %q: want asc or desc", s)
			}
			u.Order = s
		}
	} else if u.Policy == "numerical" || u.Policy == "alphabetical" {
		u.Order = "asc"
	}
	decodeUpdateTags(d, g, f, u)
	return u
}

// decodeUpdate's second half: which tags the policy looks at (filter,
// exclude) and, for policy digest, the tag it follows.
func decodeUpdateTags(d *spec.Decoder, g spec.Field, f map[string]spec.Field, u *UpdatePolicy) {
	if h, ok := f["filter"]; ok {
		if s, ok := d.Str(h, "update.filter"); ok {
			if _, err := regexp.Compile(s); err != nil {
				d.Errorf(h.At, "update.filter: %v", err)
			}
			u.Filter = s
		}
	}
	u.Exclude = append([]string(nil), DefaultExclude...)
	if h, ok := f["exclude"]; ok {
		items, _ := d.StrList(h, "update.exclude")
		u.Exclude = []string{}
		for _, it := range items {
			if _, err := path.Match(it.Val, ""); err != nil {
				d.Errorf(it.At, "update.exclude: %q is not a glob pattern", it.Val)
				continue
			}
			u.Exclude = append(u.Exclude, it.Val)
		}
	}
	if h, ok := f["tag"]; ok {
		if s, ok := d.Str(h, "update.tag"); ok {
			if u.Policy != "digest" {
				d.Errorf(h.Key, "update.tag: only for policy digest")
			} else if err := checkTag(s); err != nil {
				d.Errorf(h.At, "update.tag: %v", err)
			}
			u.Tag = s
		}
	} else if u.Policy == "digest" {
		d.Errorf(g.At, "update: policy digest needs the tag it follows (update.tag)")
	}
}

func decodeHealth(d *spec.Decoder, g spec.Field) *Health {
	f, ok := d.Fields(g.At, "health", spec.FieldSet([]string{"cmd", "interval", "timeout", "start_period", "retries"}))
	if !ok {
		return nil
	}
	h := &Health{}
	if c, ok := f["cmd"]; ok {
		items, _ := d.StrList(c, "health.cmd")
		for _, it := range items {
			h.Cmd = append(h.Cmd, it.Val)
		}
		if len(items) == 0 && c.Val != nil && c.Val.Kind == yaml.SequenceNode {
			d.Errorf(c.At, "health.cmd: must not be empty")
		}
	} else {
		d.Errorf(g.At, "health: missing field \"cmd\"")
	}
	for _, x := range []struct {
		name string
		set  *time.Duration
	}{{"interval", &h.Interval}, {"timeout", &h.Timeout}, {"start_period", &h.StartPeriod}} {
		c, ok := f[x.name]
		if !ok {
			continue
		}
		if s, ok := d.Str(c, "health."+x.name); ok {
			if v, err := spec.ParseDuration(s); err != nil {
				d.Errorf(c.At, "health.%s: %v", x.name, err)
			} else {
				*x.set = v
			}
		}
	}
	if c, ok := f["retries"]; ok {
		if n, ok := d.Int(c, "health.retries"); ok {
			if n < 0 || n > 1000 {
				d.Errorf(c.At, "health.retries: %d: want 0 to 1000", n)
			} else {
				h.Retries = int(n)
			}
		}
	}
	return h
}

func decodeLog(d *spec.Decoder, g spec.Field) *Log {
	f, ok := d.Fields(g.At, "log", spec.FieldSet([]string{"driver", "options"}))
	if !ok {
		return nil
	}
	l := &Log{}
	if c, ok := f["driver"]; ok {
		if s, ok := d.Str(c, "log.driver"); ok {
			if !networkNameRE.MatchString(s) {
				d.Errorf(c.At, "log.driver: %q is not a log driver name", s)
			}
			l.Driver = s
		}
	} else {
		d.Errorf(g.At, "log: missing field \"driver\"")
	}
	if c, ok := f["options"]; ok {
		items, _ := d.StrMap(c, "log.options")
		l.Options = make(map[string]string, len(items))
		for _, it := range items {
			l.Options[it.Key] = it.Val
		}
	}
	return l
}
