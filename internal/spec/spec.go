// Package spec owns Outpost's manifest model: parsing the YAML documents of an
// environment repository, validating them without I/O beyond the repository's
// own tree, selecting what applies to a host through fleet.yaml, rendering
// templates per host, and hashing the result.
//
// spec imports no other Outpost package. Everything else imports it.
package spec

import (
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// Kind is a resource kind.
type Kind string

// The resource kinds, in the order the engine applies them.
const (
	KindFile      Kind = "file"
	KindUnit      Kind = "unit"
	KindContainer Kind = "container"
)

// Kinds lists every kind in apply order.
var Kinds = []Kind{KindFile, KindUnit, KindContainer}

// ID names one resource: its kind and its name (a file's absolute path, a
// unit's name, a container's name).
type ID struct {
	Kind Kind
	Name string
}

// String formats the ID as "kind:name", the form used in after and restart_on.
func (id ID) String() string { return string(id.Kind) + ":" + id.Name }

// ParseID parses "kind:name".
func ParseID(s string) (ID, error) {
	k, n, ok := strings.Cut(s, ":")
	if !ok || n == "" {
		return ID{}, fmt.Errorf("reference %q: want kind:name", s)
	}
	if err := checkPrintable(n); err != nil {
		return ID{}, fmt.Errorf("reference: %w", err)
	}
	switch Kind(k) {
	case KindFile, KindUnit, KindContainer:
		return ID{Kind: Kind(k), Name: n}, nil
	}
	return ID{}, fmt.Errorf("reference %q: unknown kind %q", s, k)
}

// Pos is a position in a manifest, relative to the repository root.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return Quote(p.File)
	}
	return fmt.Sprintf("%s:%d:%d", Quote(p.File), p.Line, p.Col)
}

// DriftMode says what the agent does when a managed object changes by hand.
type DriftMode string

// The drift modes. The zero value means DriftRevert.
const (
	DriftRevert DriftMode = "revert"
	DriftWarn   DriftMode = "warn"
	DriftIgnore DriftMode = "ignore"
)

// Host is what a desired state is rendered for.
type Host struct {
	Name   string
	Labels map[string]string
}

// Resource is one validated, rendered resource: exactly one of File, Unit and
// Container is set, according to ID.Kind.
type Resource struct {
	ID  ID
	Pos Pos // where the resource is declared

	// Prune is false when the manifest says prune: false.
	Prune bool
	Drift DriftMode
	// Adopt is adopt: true: an object at this resource's name that Outpost
	// did not create is taken over (its original kept, and restored when
	// the resource leaves Git) instead of being reported as a conflict.
	Adopt bool
	// Force is force: true: state: absent removes the object even when
	// Outpost does not own it.
	Force bool
	// After lists resources that must converge before this one.
	After []ID
	// RestartOn lists files whose change restarts this resource.
	RestartOn []ID

	File      *File
	Unit      *Unit
	Container *Container
}

// File is a managed file.
type File struct {
	Path string // absolute and clean
	// Content is the rendered content: from content:, source: or a template.
	Content []byte
	Mode    fs.FileMode // default 0644
	Owner   string      // user name or numeric id; empty leaves it as created (root)
	Group   string
	// Absent is true for state: absent: the file must not exist.
	Absent bool
}

// UnitState is the desired run state of a unit.
type UnitState string

// Unit states. The zero value leaves the run state alone.
const (
	UnitRunning UnitState = "running"
	UnitStopped UnitState = "stopped"
)

// Unit is a managed systemd unit.
type Unit struct {
	Name    string // e.g. web-backup.timer
	Content []byte
	// Dropins maps a drop-in file name (ending in .conf) to its content,
	// written under NAME.d/.
	Dropins map[string][]byte
	Enabled *bool // nil leaves it alone
	State   UnitState
	// Reload is true when a changed unit is reloaded rather than restarted
	// (on_change: reload).
	Reload bool
	// Override is override: true: the unit may shadow a unit of the same
	// name that the host's packages install (/usr/lib/systemd/system).
	// It changes nothing that the unit puts on the host, so it is not
	// hashed.
	Override bool `json:"-"`
}

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

// State is the desired state of one host: a repository rendered for it.
type State struct {
	// Resources in a stable order: by kind in apply order, then by name.
	Resources []*Resource
	// AllowMassPrune is fleet.yaml's allow_mass_prune.
	AllowMassPrune bool
}

// Lookup returns the resource with the given ID, or nil.
func (s *State) Lookup(id ID) *Resource {
	for _, r := range s.Resources {
		if r.ID == id {
			return r
		}
	}
	return nil
}
