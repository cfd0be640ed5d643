package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Schema is the version of the note document that this package writes.
const Schema = 1

// Result is the outcome of one apply on a host.
type Result string

// The results a note records.
const (
	// Applied: the commit converged and its changed resources became healthy.
	Applied Result = "applied"
	// Failed: one or more resources could not be converged.
	Failed Result = "failed"
	// RolledBack: the commit did not become healthy and the host went back
	// to its last good commit.
	RolledBack Result = "rolled-back"
	// Invalid: the commit's manifests did not validate for this host.
	Invalid Result = "invalid"
	// Unverified: the commit is not signed by a trusted key.
	Unverified Result = "unverified"
)

// Results lists every result this schema knows.
var Results = []Result{Applied, Failed, RolledBack, Invalid, Unverified}

// Known reports whether r is one of Results.
func (r Result) Known() bool { return slices.Contains(Results, r) }

// Failure reports whether r counts as a failure for a fleet's exit status:
// every result but Applied.
func (r Result) Failure() bool { return r != Applied }

// Failure is one resource that did not converge.
type Failure struct {
	// Resource is the resource's "kind:name".
	Resource string `json:"resource"`
	// Error is the redacted error text.
	Error string `json:"error"`
}

// Note is one status note: what a host did with one commit. Its JSON form is
// the document stored in Git; docs/status.md describes every field.
type Note struct {
	Schema       int               `json:"schema"`
	Host         string            `json:"host"`
	Labels       map[string]string `json:"labels"`
	AgentVersion string            `json:"agent_version"`
	// Commit is the full hash of the commit the note is about.
	Commit string `json:"commit"`
	// Digest is the manifest digest ("sha256:...") of the OCI artifact
	// that the host applied, packed from Commit; absent for a host on a
	// Git source.
	Digest string `json:"digest,omitempty"`
	Result Result `json:"result"`
	// AppliedAt is when the converge of the commit finished (before the
	// health wait).
	AppliedAt time.Time `json:"applied_at"`
	// HealthyAt is when the changed resources became healthy; zero (and
	// absent from the JSON) when they did not.
	HealthyAt time.Time `json:"healthy_at,omitzero"`
	// Images maps a container's name to the "tag@digest" it runs.
	Images map[string]string `json:"images"`
	// Failed lists the resources that did not converge, sorted by resource.
	Failed []Failure `json:"failed"`
	// DriftRepairs counts the drift repairs since the previous note.
	DriftRepairs int    `json:"drift_repairs"`
	Message      string `json:"message,omitempty"`

	// Platform is the platform the host runs images for (linux/arm/v7):
	// `outpost images update` resolves tags that run on it.
	Platform string `json:"platform,omitempty"`
	// BadImages lists the tags that failed on the host, which `outpost
	// images update` never writes back.
	BadImages []BadImage `json:"bad_images,omitempty"`

	// Recipients are the public keys that this host decrypts the
	// repository's secrets with (age1..., or an SSH public key), so that
	// the fleet's recipients can be read from Git.
	Recipients []string `json:"recipients,omitempty"`

	// ReportedAt is when a note that holds back a commit (Rollout) was
	// written: such a host writes its note again now and then, so that
	// the rollout's other hosts know it is alive (docs/rollout.md).
	ReportedAt time.Time `json:"reported_at,omitzero"`
	// Rollout says that the host holds back a newer commit than Commit,
	// and why; nil when it does not.
	Rollout *Hold `json:"rollout,omitempty"`
}

// Hold is a newer commit that a host holds back: its wave waits for an
// earlier one, the commit was halted, or the host is outside its
// maintenance windows.
type Hold struct {
	Commit string `json:"commit"`
	// Wave is the host's wave ("" without a rollout).
	Wave string `json:"wave,omitempty"`
	// State is waiting, halted or window.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// The states of a Hold.
const (
	HoldWaiting = "waiting"
	HoldHalted  = "halted"
	HoldWindow  = "window"
)

// BadImage is a tag that failed on a host, at its digest when the host
// knew it ("" for any digest).
type BadImage struct {
	Container string `json:"container"`
	Tag       string `json:"tag"`
	Digest    string `json:"digest,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// New returns a note of the current schema about commit on host. The
// remaining fields are plain values that the caller sets.
func New(host, commit string, result Result, appliedAt time.Time) Note {
	return Note{
		Schema:    Schema,
		Host:      host,
		Commit:    commit,
		Result:    result,
		AppliedAt: appliedAt.UTC().Truncate(time.Second),
	}
}

// ErrInvalidNote is matched by errors.Is for a note that cannot be read or
// that lacks a required field.
var ErrInvalidNote = errors.New("invalid status note")

// SchemaError reports a note written with a newer schema than this package
// knows. Parse still returns the fields it could read beside it.
type SchemaError struct {
	Version int
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("status note has schema %d, newer than %d: upgrade outpost to read every field", e.Version, Schema)
}

// Validate reports the first missing or malformed required field, wrapping
// ErrInvalidNote.
func (n Note) Validate() error {
	switch {
	case n.Schema < 1:
		return fmt.Errorf("%w: schema %d", ErrInvalidNote, n.Schema)
	case n.Host == "":
		return fmt.Errorf("%w: no host", ErrInvalidNote)
	case !isHash(n.Commit):
		return fmt.Errorf("%w: commit %q is not a full hash", ErrInvalidNote, n.Commit)
	case n.Digest != "" && !isDigest(n.Digest):
		return fmt.Errorf("%w: digest %q is not sha256:HEX", ErrInvalidNote, n.Digest)
	case n.Schema <= Schema && !n.Result.Known():
		return fmt.Errorf("%w: unknown result %q", ErrInvalidNote, n.Result)
	case n.AppliedAt.IsZero():
		return fmt.Errorf("%w: no applied_at", ErrInvalidNote)
	case n.DriftRepairs < 0:
		return fmt.Errorf("%w: negative drift_repairs", ErrInvalidNote)
	}
	return nil
}

// isDigest reports whether s is a manifest digest: sha256: and 64 lower
// case hex digits.
func isDigest(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	return ok && len(hex) == 64 && isHash(hex)
}

// IsHash reports whether s is a full SHA-1 or SHA-256 object name in lower
// case hex.
func IsHash(s string) bool { return isHash(s) }

// isHash reports whether s is a full SHA-1 or SHA-256 object name in lower
// case hex.
func isHash(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// normalized returns a copy of n with empty maps and lists instead of nil
// ones, the failures sorted and times in UTC to the second, so that every
// note has the same shape.
func (n Note) normalized() Note {
	n.AppliedAt = n.AppliedAt.UTC().Truncate(time.Second)
	if !n.ReportedAt.IsZero() {
		n.ReportedAt = n.ReportedAt.UTC().Truncate(time.Second)
	}
	if n.Rollout != nil {
		h := *n.Rollout
		n.Rollout = &h
	}
	if !n.HealthyAt.IsZero() {
		n.HealthyAt = n.HealthyAt.UTC().Truncate(time.Second)
	}
	n.Labels = maps.Clone(n.Labels)
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Images = maps.Clone(n.Images)
	if n.Images == nil {
		n.Images = map[string]string{}
	}
	n.Failed = slices.Clone(n.Failed)
	if n.Failed == nil {
		n.Failed = []Failure{}
	}
	slices.SortStableFunc(n.Failed, func(a, b Failure) int {
		if a.Resource < b.Resource {
			return -1
		}
		if a.Resource > b.Resource {
			return 1
		}
		return 0
	})
	return n
}

// Redact returns a copy of n with r applied to every free text: the message
// and the failures.
func (n Note) Redact(r *Redactor) Note {
	n = n.normalized()
	n.Message = r.String(n.Message)
	for i := range n.Failed {
		n.Failed[i].Resource = r.String(n.Failed[i].Resource)
		n.Failed[i].Error = r.String(n.Failed[i].Error)
	}
	n.BadImages = slices.Clone(n.BadImages)
	for i := range n.BadImages {
		n.BadImages[i].Reason = r.String(n.BadImages[i].Reason)
	}
	if n.Rollout != nil {
		n.Rollout.Reason = r.String(n.Rollout.Reason)
	}
	return n
}

// Marshal validates n and returns its JSON document, indented for reading
// in git log.
func (n Note) Marshal() ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(n.normalized(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode status note: %w", err)
	}
	return append(b, '\n'), nil
}

// Parse reads a note. Unknown fields are ignored. A note of a newer schema
// is read as far as its fields are known, and returned with a *SchemaError.
// Anything else that is not a valid note wraps ErrInvalidNote.
func Parse(b []byte) (Note, error) {
	var head struct {
		Schema json.RawMessage `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return Note{}, fmt.Errorf("%w: %v", ErrInvalidNote, err)
	}
	var version int
	if len(head.Schema) == 0 || json.Unmarshal(head.Schema, &version) != nil || version < 1 {
		return Note{}, fmt.Errorf("%w: no schema version", ErrInvalidNote)
	}
	var n Note
	if version <= Schema {
		if err := json.Unmarshal(b, &n); err != nil {
			return Note{}, fmt.Errorf("%w: %v", ErrInvalidNote, err)
		}
		if err := n.Validate(); err != nil {
			return Note{}, err
		}
		return n.normalized(), nil
	}
	// A newer schema may have changed a field's type: keep every field
	// that still reads, so that a fleet view shows what it can.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return Note{}, fmt.Errorf("%w: %v", ErrInvalidNote, err)
	}
	n.Schema = version
	for name, raw := range fields {
		var probe Note
		obj, err := json.Marshal(map[string]json.RawMessage{name: raw})
		if err != nil {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(obj))
		if dec.Decode(&probe) != nil {
			continue
		}
		copyField(&n, probe, name)
	}
	return n.normalized(), &SchemaError{Version: version}
}

// copyField copies the field whose JSON name is name from src to dst.
func copyField(dst *Note, src Note, name string) {
	switch name {
	case "host":
		dst.Host = src.Host
	case "labels":
		dst.Labels = src.Labels
	case "agent_version":
		dst.AgentVersion = src.AgentVersion
	case "commit":
		dst.Commit = src.Commit
	case "digest":
		dst.Digest = src.Digest
	case "result":
		dst.Result = src.Result
	case "applied_at":
		dst.AppliedAt = src.AppliedAt
	case "healthy_at":
		dst.HealthyAt = src.HealthyAt
	case "images":
		dst.Images = src.Images
	case "failed":
		dst.Failed = src.Failed
	case "drift_repairs":
		dst.DriftRepairs = src.DriftRepairs
	case "message":
		dst.Message = src.Message
	case "platform":
		dst.Platform = src.Platform
	case "bad_images":
		dst.BadImages = src.BadImages
	}
}

// sameOutcome reports whether n says the same as prev apart from when it
// was written, the drift repairs, the message and the wording of errors
// (which may carry changing detail): a host whose outcome did not change
// writes no new note.
func (n Note) sameOutcome(prev Note) bool {
	a, b := n.normalized(), prev.normalized()
	return a.Host == b.Host &&
		a.Commit == b.Commit &&
		a.Digest == b.Digest &&
		a.Result == b.Result &&
		a.AgentVersion == b.AgentVersion &&
		maps.Equal(a.Labels, b.Labels) &&
		maps.Equal(a.Images, b.Images) &&
		slices.EqualFunc(a.Failed, b.Failed, func(x, y Failure) bool { return x.Resource == y.Resource }) &&
		a.Platform == b.Platform &&
		slices.EqualFunc(a.BadImages, b.BadImages, func(x, y BadImage) bool {
			return x.Container == y.Container && x.Tag == y.Tag && x.Digest == y.Digest
		}) &&
		holdKey(a.Rollout) == holdKey(b.Rollout) &&
		slices.Equal(a.Recipients, b.Recipients)
}

// holdKey is what of a hold is part of a note's outcome: not its reason,
// whose counts change at every poll.
func holdKey(h *Hold) Hold {
	if h == nil {
		return Hold{}
	}
	return Hold{Commit: h.Commit, Wave: h.Wave, State: h.State}
}
