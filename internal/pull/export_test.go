package pull

// SetMaxPacks changes the pack count above which a fetch merges the packs,
// and returns a function that restores it.
func SetMaxPacks(n int) (restore func()) {
	old := maxPacks
	maxPacks = n
	return func() { maxPacks = old }
}
