// Package state owns what this host has applied and owns: one versioned JSON
// document (state.json) in the state directory, written atomically, and the
// lock that keeps one agent per state directory.
//
// state imports spec and atomicfile only. It never imports the engine, a
// target or the agent.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// Schema is the version of the state document that this build writes.
const Schema = 1

// FileName is the state document's name in the state directory.
const FileName = "state.json"

// ErrCorrupt is matched by errors.Is when the state document exists but
// cannot be read as one. It is never treated as an empty state: an agent that
// forgot what it owns could neither prune nor protect.
var ErrCorrupt = errors.New("corrupt state")

// State is what this host has applied and owns.
//
// New fields are added as other parts need them; a top-level field that this
// build does not know (written by a newer one) is kept as it was and written
// back. Unknown fields inside inventory entries are dropped.
type State struct {
	Schema int `json:"schema"`
	// Commit is the commit last applied (fully or not).
	Commit string `json:"commit,omitempty"`
	// LastGood is the last commit that applied and became healthy.
	LastGood string `json:"last_good,omitempty"`
	// Inventory is every object that Outpost owns on this host.
	Inventory Inventory `json:"inventory"`
	// Failed lists the commits that failed on this host, by commit: they
	// are not applied again until a newer commit arrives or an operator
	// asks for a retry.
	Failed map[string]Failure `json:"failed,omitempty"`
	// Suspended is true while an operator has paused changes on this host.
	Suspended bool `json:"suspended,omitempty"`
	// RolledBack is the commit that the last pass rolled back from, to
	// LastGood; empty once a commit applies. outpost status names it.
	RolledBack string `json:"rolled_back,omitempty"`
	// Held is the newer commit that this host holds back (its rollout
	// wave waits, or a maintenance window is closed), and since when:
	// hosts that wrote no note for a rollout's alive time stop counting
	// only once the commit has waited that long. Replaced, never changed
	// in place.
	Held *Held `json:"held,omitempty"`

	// unknown holds the top-level fields of the document that this build
	// does not know, so that a save does not lose them.
	unknown map[string]json.RawMessage
}

// Held is a commit held back, when this host first held it, and why.
type Held struct {
	Commit string    `json:"commit"`
	Since  time.Time `json:"since"`
	// Wave is this host's rollout wave ("" without a rollout); State is
	// waiting, halted or window (status.Hold's states).
	Wave   string `json:"wave,omitempty"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	// NextWindow is when this host's next maintenance window opens, when
	// it has windows.
	NextWindow time.Time `json:"next_window,omitzero"`
}

// Failure is why a commit was refused or rolled back on this host.
type Failure struct {
	// Result is invalid, unverified, failed or rolled-back.
	Result string    `json:"result"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Inventory is the set of owned objects, keyed by the string form of their
// spec.ID ("kind:name").
type Inventory map[string]Entry

// Entry is one owned object and what was applied to it.
type Entry struct {
	Kind spec.Kind `json:"kind"`
	Name string    `json:"name"`
	// Hash identifies the desired resource that was last applied.
	Hash      string    `json:"hash"`
	AppliedAt time.Time `json:"applied_at"`
	// NoPrune is true when the resource said prune: false: when it leaves
	// the desired state it is left on the host and forgotten.
	NoPrune bool `json:"no_prune,omitempty"`
}

// ID returns the entry's resource ID.
func (e Entry) ID() spec.ID { return spec.ID{Kind: e.Kind, Name: e.Name} }

// Set records e under its ID.
func (inv Inventory) Set(e Entry) { inv[e.ID().String()] = e }

// Get returns the entry of id.
func (inv Inventory) Get(id spec.ID) (Entry, bool) {
	e, ok := inv[id.String()]
	return e, ok
}

// IDs returns the IDs of every entry, sorted by kind in apply order and then
// by name.
func (inv Inventory) IDs() []spec.ID {
	ids := make([]spec.ID, 0, len(inv))
	for _, e := range inv {
		ids = append(ids, e.ID())
	}
	sort.Slice(ids, func(i, j int) bool {
		ki, kj := kindIndex(ids[i].Kind), kindIndex(ids[j].Kind)
		if ki != kj {
			return ki < kj
		}
		return ids[i].Name < ids[j].Name
	})
	return ids
}

// Clone returns a copy of inv that can be changed independently.
func (inv Inventory) Clone() Inventory {
	out := make(Inventory, len(inv))
	for k, v := range inv {
		out[k] = v
	}
	return out
}

func kindIndex(k spec.Kind) int { return spec.Rank(k) }

type plainState State

// knownKeys are the JSON names of State's fields.
var knownKeys = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[plainState]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = true
	}
	return m
}()

// UnmarshalJSON reads the document and keeps the fields it does not know.
func (s *State) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	var p plainState
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	for k, v := range raw {
		if knownKeys[k] {
			continue
		}
		if p.unknown == nil {
			p.unknown = map[string]json.RawMessage{}
		}
		p.unknown[k] = v
	}
	*s = State(p)
	return nil
}

// MarshalJSON writes the document with the fields it kept from reading.
func (s State) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(plainState(s))
	if err != nil || len(s.unknown) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range s.unknown {
		if _, ok := m[k]; !ok && !knownKeys[k] {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// Store reads and writes the state document of one state directory.
type Store struct {
	dir string
}

// New returns the store of the state directory dir. Nothing is read or
// created until Load or Save.
func New(dir string) *Store { return &Store{dir: dir} }

// Dir returns the state directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the state document's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Load reads the state document. When it does not exist, Load returns an
// empty State of the current schema. A document that exists but cannot be
// read is an error that matches ErrCorrupt.
func (s *Store) Load() (*State, error) {
	b, err := os.ReadFile(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Schema: Schema, Inventory: Inventory{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("read state %s: %w: %w", s.Path(), ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("read state %s: %w: trailing data after the document", s.Path(), ErrCorrupt)
	}
	if st.Schema < 1 {
		return nil, fmt.Errorf("read state %s: %w: schema %d", s.Path(), ErrCorrupt, st.Schema)
	}
	if st.Inventory == nil {
		st.Inventory = Inventory{}
	}
	for k, e := range st.Inventory {
		if k != e.ID().String() {
			return nil, fmt.Errorf("read state %s: %w: inventory key %q names %s", s.Path(), ErrCorrupt, k, e.ID())
		}
	}
	return &st, nil
}

// Save writes st atomically: the directory is created 0700 when missing and
// the document is written 0600. A State read from a newer schema keeps its
// schema number and its unknown fields.
func (s *Store) Save(st *State) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	out := *st
	if out.Schema < Schema {
		out.Schema = Schema
	}
	if out.Inventory == nil {
		out.Inventory = Inventory{}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	b = append(b, '\n')
	if err := atomicfile.WriteFile(s.Path(), b, 0o600, atomicfile.Options{}); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
