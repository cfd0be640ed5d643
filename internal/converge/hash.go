package converge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// hashed is what a resource's hash covers: everything but where it was
// declared.
type hashed struct {
	ID        spec.ID
	Prune     bool
	Drift     spec.DriftMode
	After     []spec.ID
	RestartOn []spec.ID
	File      *spec.File      `json:",omitempty"`
	Unit      *spec.Unit      `json:",omitempty"`
	Container *spec.Container `json:",omitempty"`
}

// Hash returns a digest of the desired resource r, recorded in the inventory
// as what was applied: equal resources have equal hashes, and moving a
// resource to another manifest does not change it.
func Hash(r *spec.Resource) string {
	h := sha256.New()
	h.Write([]byte("outpost-resource-v1\n"))
	// Encoding plain structs of strings, numbers, slices and maps cannot
	// fail; map keys are sorted, so the encoding is canonical.
	_ = json.NewEncoder(h).Encode(hashed{
		ID: r.ID, Prune: r.Prune, Drift: r.Drift, After: r.After, RestartOn: r.RestartOn,
		File: r.File, Unit: r.Unit, Container: r.Container,
	})
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
