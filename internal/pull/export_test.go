package pull

import (
	"bufio"
	"io"
)

// SetMaxPacks changes the pack count above which a fetch merges the packs,
// and returns a function that restores it.
func SetMaxPacks(n int) (restore func()) {
	old := maxPacks
	maxPacks = n
	return func() { maxPacks = old }
}

// MergeSteps are the steps of a pack merge, in order.
var MergeSteps = mergeSteps

// StopMergeAfter makes pack merges stop after step as if the process died
// there (nothing is cleaned up), and returns a function that restores them.
func StopMergeAfter(step string) (restore func()) {
	stopMerge = func(s string) bool { return s == step }
	return func() { stopMerge = nil }
}

// CheckPack checks a pack stream as a fetch does, refusing objects larger
// than max.
func CheckPack(r io.Reader, max int64) error { return checkPack(bufio.NewReader(r), max) }
