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
}

// Changed reports whether the change does anything.
func (c Change) Changed() bool { return c.Action != ActionNone && c.Action != "" }

func (c Change) String() string {
	if len(c.Fields) == 0 {
		return string(c.Action)
	}
	return string(c.Action) + " (" + strings.Join(c.Fields, ", ") + ")"
}
