package registry

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// FuzzPolicy builds a tag policy from fuzzed fields and ranks fuzzed tags
// (one per line). Whatever the input: no panic; an invalid policy is
// ErrInvalidPolicy; every candidate is one of the tags and not excluded;
// Latest is the first candidate, or ErrNoCandidate when there is none; and
// ranking is repeatable. Seeds: testdata/fuzz/FuzzPolicy.
func FuzzPolicy(f *testing.F) {
	f.Add("semver", "^1.4", "", "", "*.sig", "1.4.2\n1.5.0\n2.0.0-rc1\nlatest\n1.5.0.sig")
	f.Add("numerical", "", "desc", `^build-(?P<extract>\d+)$`, "", "build-10\nbuild-9\nbuild-x")
	f.Add("alphabetical", "", "asc", "", "", "2026-01-02\n2026-11-30\n2025-12-31")
	f.Add("digest", "", "", "", "", "stable\nlatest")
	f.Fuzz(func(t *testing.T, policy, rng, order, filter, exclude, tags string) {
		if len(tags) > 1<<12 || len(filter) > 256 || len(rng) > 256 {
			return // bounded like a registry's answer and a manifest's fields
		}
		p := &docker.UpdatePolicy{Policy: policy, Range: rng, Order: order, Filter: filter, Tag: "latest"}
		if exclude != "" {
			p.Exclude = strings.Split(exclude, "\n")
		}
		r, err := NewPolicy(p)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("NewPolicy() = %v, want ErrInvalidPolicy", err)
			}
			return
		}
		list := strings.Split(tags, "\n")
		cands := r.Candidates(list)
		for _, c := range cands {
			if !slices.Contains(list, c) {
				t.Errorf("candidate %q is not one of the tags", c)
			}
			for _, pat := range p.Exclude {
				if m, err := glob(pat); err == nil && m(c) && policy != PolicyDigest {
					t.Errorf("candidate %q matches the exclude pattern %q", c, pat)
				}
			}
		}
		latest, err := r.Latest(list)
		switch {
		case len(cands) == 0 && !errors.Is(err, ErrNoCandidate):
			t.Errorf("Latest() = %q, %v with no candidates, want ErrNoCandidate", latest, err)
		case len(cands) > 0 && (err != nil || latest != cands[0]):
			t.Errorf("Latest() = %q, %v, want the first candidate %q", latest, err, cands[0])
		}
		if again := r.Candidates(list); !slices.Equal(again, cands) {
			t.Errorf("Candidates() = %q then %q, want the same", cands, again)
		}
	})
}
