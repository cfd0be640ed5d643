// Package spec owns Outpost's manifest model, whatever the kind: reading the
// YAML documents of an environment repository with positions, the fields
// every resource has, references between resources, fleet.yaml, content
// and templates rendered per host, and hashing the result. It reads no
// further than the repository's own tree.
//
// Each kind (file, unit, container) lives in its target's package, which
// registers it with Register and reads its own fields through a Decoder.
// spec imports no other Outpost package. Everything else imports it.
package spec

import (
	"fmt"
	"strings"
)

// Kind is a resource kind: a name that a kind's package registers.
type Kind string

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
	if err := CheckPrintable(n); err != nil {
		return ID{}, fmt.Errorf("reference: %w", err)
	}
	if !Known(Kind(k)) {
		return ID{}, fmt.Errorf("reference %q: unknown kind %q", s, k)
	}
	return ID{Kind: Kind(k), Name: n}, nil
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

// Resource is one validated, rendered resource: the fields that every kind
// has, and the kind's Object.
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
	// RestartOn lists resources (files) whose change restarts this one.
	RestartOn []ID

	// Object is what the resource puts on the host, of ID.Kind's type
	// (*file.File, *systemd.Unit, *docker.Container). Each kind's
	// package has an Of function that returns it typed.
	Object Object

	// Secret is set when some of the object's content came from an
	// encrypted file (docs/secrets.md); SecretFiles are those files.
	Secret      bool
	SecretFiles []string
	// Err, set at Render, fails this resource alone when it converges:
	// an encrypted source that this host cannot decrypt.
	Err error
}

// State is the desired state of one host: a repository rendered for it.
type State struct {
	// Resources in a stable order: by kind in apply order, then by name.
	Resources []*Resource
	// AllowMassPrune is fleet.yaml's allow_mass_prune.
	AllowMassPrune bool
	// UpdateMode is fleet.yaml's update.mode: the default of containers'
	// update.mode ("host", "git"), or empty.
	UpdateMode string
	// Windows are the host's maintenance windows (fleet.yaml's windows
	// that select it, and those of its targets).
	Windows []Window
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
