package pull

import (
	"bufio"
	"io"
)

// WithMaxPacks returns cfg with n as the pack count above which a fetch
// merges the packs.
func WithMaxPacks(cfg Config, n int) Config {
	cfg.maxPacks = n
	return cfg
}

// MergeSteps are the steps of a pack merge, in order.
var MergeSteps = mergeSteps

// WithMergeStop returns cfg whose pack merges stop after step as if the
// process died there (nothing is cleaned up).
func WithMergeStop(cfg Config, step string) Config {
	cfg.stopMerge = func(s string) bool { return s == step }
	return cfg
}

// CheckPack checks a pack stream as a fetch does, refusing objects larger
// than max.
func CheckPack(r io.Reader, max int64) error { return checkPack(bufio.NewReader(r), max) }
