package spec

import "strings"

// Action is what converging one resource does, or would do.
type Action string

// The actions of a plan.
const (
	ActionNone   Action = "none"
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// Change is what a driver found, and did when it was asked to apply: the
// shared vocabulary of the engine and the drivers.
type Change struct {
	Action Action `json:"action"`
	// Fields names what differs, with old and new values where they are
	// not secret: "content", "mode 0644 -> 0640", "env".
	Fields []string `json:"fields,omitempty"`
	// Before is what the driver found on the host, for a diff when the
	// change is printed: set only when content differs, so that a pass
	// with nothing to change reads nothing more. It is never encoded: it
	// may hold secrets.
	Before *Before `json:"-"`
}

// Before is the content that a driver found on the host for a change.
type Before struct {
	// Content is the object's content; nil when it was too large to keep
	// (then Size and Sum stand for it) or when there was none.
	Content []byte
	Size    int64
	Sum     string // hex SHA-256 of the whole content, when Content is nil
	// Dropins are a unit's drop-ins as found, by file name.
	Dropins map[string][]byte
}

// Changed reports whether the change does anything.
func (c Change) Changed() bool { return c.Action != ActionNone && c.Action != "" }

func (c Change) String() string {
	if len(c.Fields) == 0 {
		return string(c.Action)
	}
	return string(c.Action) + " (" + strings.Join(c.Fields, ", ") + ")"
}
