package status

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that the reader never panics, and that every note it
// accepts writes back to a document it reads the same. Seeds live in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	b, err := sampleNote().Marshal()
	if err != nil {
		f.Fatalf("Marshal() error = %v", err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Parse(b)
		var se *SchemaError
		if err != nil && !errors.As(err, &se) {
			if !errors.Is(err, ErrInvalidNote) {
				t.Fatalf("Parse(%q) error = %v, want ErrInvalidNote or *SchemaError", b, err)
			}
			return
		}
		if se != nil {
			return // a newer note is read as far as possible; it need not be valid for schema 1
		}
		out, err := n.Marshal()
		if err != nil {
			t.Fatalf("Marshal(Parse(%q)) error = %v", b, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))) error = %v", b, err)
		}
		if diff := cmp.Diff(n, again); diff != "" {
			t.Fatalf("Parse(Marshal(Parse(%q))) differs (-first +second):\n%s", b, diff)
		}
	})
}
