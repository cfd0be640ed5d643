package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
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
	// makes empty and nil the same. A pooled buffer and encoder keep a
	// pass over many resources from allocating them for each.
	e := hashEncoders.Get().(*hashEncoder)
	defer hashEncoders.Put(e)
	e.buf.Reset()
	e.buf.WriteString(`{"v":"` + hashVersion + `","id":`)
	e.encode(r.ID.String())
	if r.Object != nil {
		e.buf.WriteString(`,`)
		e.encode(string(r.ID.Kind))
		e.buf.WriteString(`:`)
		e.encode(r.Object.Canonical())
	}
	e.buf.WriteString("}\n")
	sum := sha256.Sum256(e.buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// hashEncoder is a buffer and a JSON encoder that writes into it.
type hashEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var hashEncoders = sync.Pool{New: func() any {
	e := &hashEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	return e
}}

// encode writes v as JSON without the Encoder's newline. Only a non-finite
// number can fail, and Load refuses it; its error is hashed instead.
func (e *hashEncoder) encode(v any) {
	if err := e.enc.Encode(v); err != nil {
		e.buf.WriteString(err.Error())
		return
	}
	e.buf.Truncate(e.buf.Len() - 1)
}
