package docker

import (
	"github.com/outpost-gitops/outpost/internal/spec"
)

// The update modes of UpdatePolicy.Mode.
const (
	// ModeHost: the host polls the registry and runs what the policy picks.
	ModeHost = "host"
	// ModeGit: the host runs the tag written in Git and never polls the
	// registry; `outpost images update` resolves the policy for the fleet
	// and writes the tag back to Git.
	ModeGit = "git"
)

// Follows reports whether the host resolves c's tag from its registry:
// c has an update policy in mode host. A container in mode git runs its tag
// as a pinned one.
func (c *Container) Follows() bool {
	return c.Update != nil && c.Update.Mode != ModeGit
}

// SetUpdateMode gives every container of st whose update policy names no
// mode fleet.yaml's default (st.UpdateMode, else host), and checks what
// the mode asks of the tag: none in mode host, one in mode git. Its error
// is spec.Errors at the containers' declarations.
func SetUpdateMode(st *spec.State) error {
	def := st.UpdateMode
	if def == "" {
		def = ModeHost
	}
	var es spec.Errors
	for _, r := range st.Resources {
		c := Of(r)
		if c == nil || c.Update == nil {
			continue
		}
		if c.Update.Mode == "" {
			c.Update.Mode = def
		}
		switch {
		case c.Update.Mode == ModeHost && c.Tag != "":
			es = append(es, &spec.Error{Pos: r.Pos, Msg: "container " + c.Name + ": tag and update are exclusive in update mode host (fleet.yaml's default): pin a tag, follow the registry, or set update.mode: git"})
		case c.Update.Mode == ModeGit && c.Tag == "":
			es = append(es, &spec.Error{Pos: r.Pos, Msg: "container " + c.Name + ": update mode git (fleet.yaml's default) runs the tag written in Git: missing field \"tag\""})
		}
	}
	if len(es) > 0 {
		return es
	}
	return nil
}
