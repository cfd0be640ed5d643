package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// hashVersion changes whenever the canonical encoding does, so that a hash
// never matches one computed from a different encoding.
const hashVersion = "outpost.resource.v1"

// canonical is the encoding that Hash digests. encoding/json writes struct
// fields in declaration order and map keys sorted, so it is stable across
// runs and map orders.
type canonical struct {
	V         string     `json:"v"`
	ID        string     `json:"id"`
	File      *File      `json:"file,omitempty"`
	Unit      *Unit      `json:"unit,omitempty"`
	Container *Container `json:"container,omitempty"`
}

// Hash is the state's inventory hash; the docker target's label on each
// container is a different function (docker's specHash) on purpose: that
// label's value is already on running containers and must stay the same
// for an unchanged spec, while this encoding is versioned (hashVersion) and
// may change with only a new inventory to show for it.
//
// Hash returns the hex SHA-256 of a canonical encoding of what the resource
// puts on the host: its ID and its kind's object (content, mode, unit
// drop-ins, container settings with the resolved tag and digest). Where it
// is declared (Pos), prune, drift, after, restart_on and a container's update
// policy are not part of it: changing them changes nothing on the host.
func (r *Resource) Hash() string {
	// Empty and nil are the same on the host, so they hash the same.
	c := canonical{V: hashVersion, ID: r.ID.String()}
	if r.File != nil {
		f := *r.File
		f.Content = nilIfEmpty(f.Content)
		c.File = &f
	}
	if r.Unit != nil {
		u := *r.Unit
		u.Content = nilIfEmpty(u.Content)
		if len(u.Dropins) == 0 {
			u.Dropins = nil
		}
		c.Unit = &u
	}
	if r.Container != nil {
		k := *r.Container
		k.Update = nil
		k.Command = nilIfEmpty(k.Command)
		k.Entrypoint = nilIfEmpty(k.Entrypoint)
		k.Ports = nilIfEmpty(k.Ports)
		k.Volumes = nilIfEmpty(k.Volumes)
		k.Tmpfs = nilIfEmpty(k.Tmpfs)
		k.Networks = nilIfEmpty(k.Networks)
		k.Devices = nilIfEmpty(k.Devices)
		k.CapAdd = nilIfEmpty(k.CapAdd)
		k.CapDrop = nilIfEmpty(k.CapDrop)
		if len(k.Env) == 0 {
			k.Env = nil
		}
		if len(k.Labels) == 0 {
			k.Labels = nil
		}
		c.Container = &k
	}
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(c); err != nil {
		// Only a non-finite CPUs value can fail, and Load refuses it.
		h.Write([]byte(err.Error()))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}
