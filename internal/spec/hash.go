package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// hashVersion changes whenever the canonical encoding does, so that a hash
// never matches one computed from a different encoding.
const hashVersion = "outpost.resource.v1"

// Hash is the state's inventory hash. It returns the hex SHA-256 of a canonical encoding of what the resource
// puts on the host: its ID and its kind's object (content, mode, unit
// drop-ins, container settings with the resolved tag and digest), in the
// form that the kind's Canonical gives. Where it is declared (Pos), prune,
// drift, after, restart_on and a container's update policy are not part of
// it: changing them changes nothing on the host. A new encoding only makes
// each resource look changed once, which its driver then finds is not.
func (r *Resource) Hash() string {
	// The bytes are {"v":...,"id":...,"KIND":OBJECT} and a newline, as
	// encoding/json's Encoder writes a struct; the object's Canonical
	// makes empty and nil the same.
	head, _ := json.Marshal(struct {
		V  string `json:"v"`
		ID string `json:"id"`
	}{hashVersion, r.ID.String()})
	h := sha256.New()
	h.Write(head[:len(head)-1])
	if r.Object != nil {
		key, _ := json.Marshal(string(r.ID.Kind))
		obj, err := json.Marshal(r.Object.Canonical())
		if err != nil {
			// Only a non-finite number can fail, and Load refuses it.
			obj = []byte(err.Error())
		}
		h.Write([]byte{','})
		h.Write(key)
		h.Write([]byte{':'})
		h.Write(obj)
	}
	h.Write([]byte("}\n"))
	return hex.EncodeToString(h.Sum(nil))
}
