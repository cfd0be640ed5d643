package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// StoreFile is the name of the images document in the state directory.
const StoreFile = "images.json"

// StoreSchema is the version of the images document that this build writes.
const StoreSchema = 1

// ErrCorrupt is matched by errors.Is when the images document exists but
// cannot be read. It is not treated as empty: that would forget bad tags.
var ErrCorrupt = errors.New("corrupt images state")

// Store keeps, per following container, the tag@digest in use, the one
// before it, the outcome of the last registry check, and the tags that
// failed on this host, in STATE_DIR/images.json (0600, written atomically),
// so that a restarted agent runs what it ran without asking the registry.
// It is safe for concurrent use.
type Store struct {
	path string
	now  func() time.Time

	mu  sync.Mutex
	doc storeDoc
}

type storeDoc struct {
	Schema     int               `json:"schema"`
	Containers map[string]*Entry `json:"containers"`
}

// Entry is what the store knows of one container.
type Entry struct {
	Image string `json:"image"`
	// Policy describes the update policy the entry was resolved with; a
	// changed policy makes Current stale.
	Policy string `json:"policy"`
	// Current is the tag@digest the container is to run.
	Current *Ref `json:"current,omitempty"`
	// Previous is what Current replaced: a tag marked bad falls back to it.
	Previous *Ref     `json:"previous,omitempty"`
	Check    *Check   `json:"last_check,omitempty"`
	Bad      []BadTag `json:"bad,omitempty"`
}

// Ref is a resolved tag and digest.
type Ref struct {
	Tag    string    `json:"tag"`
	Digest string    `json:"digest,omitempty"`
	At     time.Time `json:"at"`
}

func (r *Ref) String() string {
	if r == nil {
		return ""
	}
	return docker.Reference("", r.Tag, r.Digest)
}

// Check is the outcome of the last registry check.
type Check struct {
	At        time.Time `json:"at"`
	Best      string    `json:"best,omitempty"` // tag@digest
	Skipped   []Skip    `json:"skipped,omitempty"`
	Truncated bool      `json:"truncated,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// BadTag is a tag whose deployment failed on this host.
type BadTag struct {
	Tag string `json:"tag"`
	// Digest is what the tag pointed to; empty marks the tag whatever it
	// points to.
	Digest string    `json:"digest,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// OpenStore reads dir/images.json, or starts an empty store when there is
// none. dir is created (0700) when it is missing.
func OpenStore(dir string) (*Store, error) {
	s := &Store{path: filepath.Join(dir, StoreFile), now: time.Now}
	s.doc = storeDoc{Schema: StoreSchema, Containers: map[string]*Entry{}}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("images state: %w", err)
		}
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("images state: %w", err)
	}
	var doc storeDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", s.path, ErrCorrupt, err)
	}
	if doc.Schema > StoreSchema {
		return nil, fmt.Errorf("%s: %w: schema %d is newer than %d", s.path, ErrCorrupt, doc.Schema, StoreSchema)
	}
	if doc.Containers == nil {
		doc.Containers = map[string]*Entry{}
	}
	doc.Schema = StoreSchema
	s.doc = doc
	return s, nil
}

// save writes the document; the caller holds s.mu.
func (s *Store) save() error {
	b, err := json.MarshalIndent(s.doc, "", "  ")
	if err != nil {
		return fmt.Errorf("images state: %w", err)
	}
	return atomicfile.WriteFile(s.path, append(b, '\n'), 0o600, atomicfile.Options{})
}

// Entry returns a copy of what the store knows of container.
func (s *Store) Entry(container string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.doc.Containers[container]
	if !ok {
		return Entry{}, false
	}
	return e.clone(), true
}

func (e *Entry) clone() Entry {
	c := *e
	if e.Current != nil {
		r := *e.Current
		c.Current = &r
	}
	if e.Previous != nil {
		r := *e.Previous
		c.Previous = &r
	}
	if e.Check != nil {
		ch := *e.Check
		ch.Skipped = slices.Clone(ch.Skipped)
		c.Check = &ch
	}
	c.Bad = slices.Clone(e.Bad)
	return c
}

// entry returns c's entry, reset when c's image changed; the caller holds
// s.mu.
func (s *Store) entry(c *docker.Container) *Entry {
	e := s.doc.Containers[c.Name]
	if e == nil || e.Image != c.Image {
		e = &Entry{Image: c.Image}
		s.doc.Containers[c.Name] = e
	}
	return e
}

// Record stores the outcome of resolving c: on success the resolved
// tag@digest becomes Current (and the old one Previous); on failure Current
// stays. It reports whether Current changed.
func (s *Store) Record(c *docker.Container, res Resolution, resErr error) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	e := s.entry(c)
	pol := Describe(c.Update)
	ch := &Check{At: now, Skipped: res.Skipped, Truncated: res.Truncated}
	changed := false
	if resErr != nil {
		ch.Error = resErr.Error()
	} else {
		ch.Best = res.Ref()
		if e.Current == nil || e.Current.Tag != res.Tag || e.Current.Digest != res.Digest || e.Policy != pol {
			changed = e.Current == nil || e.Current.Tag != res.Tag || e.Current.Digest != res.Digest
			if changed {
				e.Previous = e.Current
			}
			e.Current = &Ref{Tag: res.Tag, Digest: res.Digest, At: now}
			e.Policy = pol
		}
	}
	e.Check = ch
	return changed, s.save()
}

// Pin sets c's tag and digest to the stored Current, when c follows its
// registry and the entry was resolved for the same image and policy. It
// reports whether it did; without a pin the caller has nothing to run yet.
func (s *Store) Pin(c *docker.Container) bool {
	if !c.Follows() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.doc.Containers[c.Name]
	if e == nil || e.Current == nil || e.Image != c.Image || e.Policy != Describe(c.Update) {
		return false
	}
	c.Tag, c.Digest = e.Current.Tag, e.Current.Digest
	return true
}

// PinState pins every following container of st (see Pin) and returns the
// names of those that have nothing resolved yet: they cannot be created
// until a poll resolves them, and a running one is best left as it is.
func (s *Store) PinState(st *spec.State) (unresolved []string) {
	for _, r := range st.Resources {
		if c := docker.Of(r); c != nil && c.Follows() && !s.Pin(c) {
			unresolved = append(unresolved, c.Name)
		}
	}
	return unresolved
}

// MarkBad records that tag (at digest, or at any digest when digest is
// empty) failed on this host: the resolver passes it over until an
// operator clears it, and a newer tag is chosen when one appears. When tag
// is the container's Current, Current falls back to Previous.
func (s *Store) MarkBad(container, tag, digest, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.doc.Containers[container]
	if e == nil {
		e = &Entry{}
		s.doc.Containers[container] = e
	}
	e.Bad = slices.DeleteFunc(e.Bad, func(b BadTag) bool { return b.Tag == tag })
	e.Bad = append(e.Bad, BadTag{Tag: tag, Digest: digest, Reason: reason, At: s.now().UTC()})
	if e.Current != nil && e.Current.Tag == tag && (digest == "" || e.Current.Digest == digest) {
		e.Current, e.Previous = e.Previous, nil
	}
	return s.save()
}

// ClearBad forgets that tag failed on this host; an empty tag clears every
// bad tag of container.
func (s *Store) ClearBad(container, tag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.doc.Containers[container]
	if e == nil {
		return nil
	}
	e.Bad = slices.DeleteFunc(e.Bad, func(b BadTag) bool { return tag == "" || b.Tag == tag })
	return s.save()
}

// IsBad reports whether tag at digest is marked bad for container. With an
// empty digest it reports only marks that hold for any digest.
func (s *Store) IsBad(container, tag, digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.doc.Containers[container]
	if e == nil {
		return false
	}
	for _, b := range e.Bad {
		if b.Tag == tag && (b.Digest == "" || b.Digest == digest) {
			return true
		}
	}
	return false
}

// Forget drops the entries of containers not in keep (those that left the
// desired state).
func (s *Store) Forget(keep []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.doc.Containers)
	for name := range s.doc.Containers {
		if !slices.Contains(keep, name) {
			delete(s.doc.Containers, name)
		}
	}
	if n == len(s.doc.Containers) {
		return nil
	}
	return s.save()
}

// Describe formats an update policy on one line: "semver ^1.4",
// "alphabetical desc filter=^main-", "digest stable".
func Describe(p *docker.UpdatePolicy) string {
	if p == nil {
		return ""
	}
	var b bytes.Buffer
	b.WriteString(p.Policy)
	switch p.Policy {
	case PolicySemver:
		if p.Range != "" {
			b.WriteString(" " + p.Range)
		}
		if p.Loose {
			b.WriteString(" loose")
		}
	case PolicyNumerical, PolicyAlphabetical:
		if p.Order != "" {
			b.WriteString(" " + p.Order)
		}
	case PolicyDigest:
		b.WriteString(" " + followedTag(p))
	}
	if p.Filter != "" {
		b.WriteString(" filter=" + p.Filter)
	}
	if p.Exclude != nil && !slices.Equal(p.Exclude, DefaultExclude) {
		b.WriteString(" exclude=" + strings.Join(p.Exclude, ","))
	}
	return b.String()
}

var _ BadTags = (*Store)(nil)
