package spec

// Internals for the tests of package spec_test, which registers the real
// kinds.
var (
	Resolve      = resolve
	Suggest      = suggest
	CommonFields = commonFields
	PosLess      = posLess
)

// KindFields lists the fields of the registered kind k.
func KindFields(k Kind) []string { return lookup(k).Fields }
