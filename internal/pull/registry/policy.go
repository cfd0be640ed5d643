// Package registry owns following container registries: listing a
// repository's tags, the tag policies that pick the newest allowed tag,
// checking that a tag has an image for the host's platform, pacing polls per
// registry, and remembering (in the state directory) what was resolved and
// which tags failed on this host.
//
// registry imports spec (and atomicfile for its state file) and no other
// Outpost package: it never imports the engine, a target or the agent.
package registry

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// The policy names of docker.UpdatePolicy.Policy.
const (
	PolicySemver       = "semver"
	PolicyNumerical    = "numerical"
	PolicyAlphabetical = "alphabetical"
	PolicyDigest       = "digest"
)

// The orders of the numerical and alphabetical policies.
const (
	OrderAsc  = "asc"
	OrderDesc = "desc"
)

// DefaultExclude is the exclude list when a policy sets none: the tags that
// cosign and other tools push for signatures, attestations and SBOMs.
var DefaultExclude = []string{"*.sig", "*.att", "*.sbom"}

// ErrNoCandidate is matched by errors.Is when no tag is allowed by a policy.
var ErrNoCandidate = errors.New("no tag matches the policy")

// ErrInvalidPolicy is matched by errors.Is when an update policy is wrong.
var ErrInvalidPolicy = errors.New("invalid update policy")

// Policy picks the newest tag that it allows from a repository's tags.
type Policy interface {
	Latest(tags []string) (string, error)
}

// Ranker is a Policy that can also order every allowed tag, best first, so
// that a caller can walk down from the best until one passes its own checks
// (the host's platform, the bad-tag list). Every policy that NewPolicy
// returns is a Ranker.
type Ranker interface {
	Policy
	Candidates(tags []string) []string
}

// NewPolicy builds the policy that p describes. It returns an error wrapping
// ErrInvalidPolicy when p names an unknown policy or order, or carries a
// range, filter or exclude pattern that does not compile.
func NewPolicy(p *docker.UpdatePolicy) (Ranker, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: no update policy", ErrInvalidPolicy)
	}
	f, err := newFilter(p)
	if err != nil {
		return nil, err
	}
	switch p.Policy {
	case PolicySemver:
		r := p.Range
		if r == "" {
			r = "*"
		}
		c, err := semver.NewConstraint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: range %q: %v", ErrInvalidPolicy, p.Range, err)
		}
		return &semverPolicy{filter: f, constraint: c, loose: p.Loose}, nil
	case PolicyNumerical, PolicyAlphabetical:
		desc := false
		switch p.Order {
		case "", OrderAsc:
		case OrderDesc:
			desc = true
		default:
			return nil, fmt.Errorf("%w: order %q: want asc or desc", ErrInvalidPolicy, p.Order)
		}
		if p.Policy == PolicyNumerical {
			return &numericalPolicy{filter: f, desc: desc}, nil
		}
		return &alphabeticalPolicy{filter: f, desc: desc}, nil
	case PolicyDigest:
		tag := p.Tag
		if tag == "" {
			tag = "latest"
		}
		return &digestPolicy{tag: tag}, nil
	}
	return nil, fmt.Errorf("%w: policy %q: want semver, numerical, alphabetical or digest", ErrInvalidPolicy, p.Policy)
}

// filter selects the tags that a policy considers and what it compares of
// each: the whole tag, or the regular expression's group named extract.
type filter struct {
	re      *regexp.Regexp
	extract int // index of the extract group, or -1
	exclude []func(string) bool
}

func newFilter(p *docker.UpdatePolicy) (*filter, error) {
	f := &filter{extract: -1}
	globs := DefaultExclude
	if p.Exclude != nil {
		globs = p.Exclude
	}
	for _, g := range globs {
		m, err := glob(g)
		if err != nil {
			return nil, fmt.Errorf("%w: exclude %q: %v", ErrInvalidPolicy, g, err)
		}
		f.exclude = append(f.exclude, m)
	}
	if p.Filter != "" {
		re, err := regexp.Compile(p.Filter)
		if err != nil {
			return nil, fmt.Errorf("%w: filter %q: %v", ErrInvalidPolicy, p.Filter, err)
		}
		f.re = re
		f.extract = re.SubexpIndex("extract")
	}
	return f, nil
}

// value returns what is compared of tag, and false when the tag is excluded
// or does not match the filter.
func (f *filter) value(tag string) (string, bool) {
	for _, excluded := range f.exclude {
		if excluded(tag) {
			return "", false
		}
	}
	if f.re == nil {
		return tag, true
	}
	m := f.re.FindStringSubmatch(tag)
	if m == nil {
		return "", false
	}
	if f.extract < 0 {
		return tag, true
	}
	return m[f.extract], true
}

// glob compiles a path.Match pattern. The usual "*.sig" and "prefix*"
// forms become plain suffix and prefix tests: path.Match dominates the cost
// of a policy over a long tag list otherwise.
func glob(pattern string) (func(string) bool, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	const meta = `*?[\`
	switch {
	case !strings.ContainsAny(pattern, meta):
		return func(s string) bool { return s == pattern }, nil
	case strings.HasPrefix(pattern, "*") && !strings.ContainsAny(pattern[1:], meta):
		suffix := pattern[1:]
		return func(s string) bool { return strings.HasSuffix(s, suffix) }, nil
	case strings.HasSuffix(pattern, "*") && !strings.ContainsAny(pattern[:len(pattern)-1], meta):
		prefix := pattern[:len(pattern)-1]
		return func(s string) bool { return strings.HasPrefix(s, prefix) }, nil
	}
	return func(s string) bool {
		ok, _ := path.Match(pattern, s)
		return ok
	}, nil
}

// ranked is one allowed tag and the key it is ordered by.
type ranked[K any] struct {
	tag string
	key K
}

// order sorts the allowed tags best first by cmp (which orders keys from
// worst to best). Two tags with equal keys (1.3.0 and v1.3.0, 1.0.0+a and
// 1.0.0+b, build-7 and build-007 under one extract group) tie; the one
// last in byte order wins, so that the result never depends on the
// registry's listing order.
func order[K any](rs []ranked[K], cmp func(a, b K) int) []string {
	slices.SortStableFunc(rs, func(a, b ranked[K]) int {
		if c := cmp(b.key, a.key); c != 0 {
			return c
		}
		return strings.Compare(b.tag, a.tag)
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.tag
	}
	return out
}

func first(cands []string) (string, error) {
	if len(cands) == 0 {
		return "", ErrNoCandidate
	}
	return cands[0], nil
}

type semverPolicy struct {
	filter     *filter
	constraint *semver.Constraints
	loose      bool
}

func (p *semverPolicy) Latest(tags []string) (string, error) { return first(p.Candidates(tags)) }

// Candidates returns the tags whose version is in the range, highest first.
// A version is strict by default: major.minor.patch with an optional
// pre-release and build, and an optional leading "v"; with loose it may
// also be "1", "v1.2", "1.2-5" or "20261101", completed with zeros.
// Pre-releases are allowed only when the range names one, as Masterminds
// constraints do.
func (p *semverPolicy) Candidates(tags []string) []string {
	var rs []ranked[*semver.Version]
	for _, t := range tags {
		s, ok := p.filter.value(t)
		if !ok {
			continue
		}
		v, err := parseVersion(s, p.loose)
		if err != nil || !p.constraint.Check(v) {
			continue
		}
		rs = append(rs, ranked[*semver.Version]{t, v})
	}
	return order(rs, (*semver.Version).Compare)
}

// parseVersion reads a tag's version: strictly (SemVer 2.0 with an optional
// leading "v") unless loose.
func parseVersion(s string, loose bool) (*semver.Version, error) {
	if loose {
		return semver.NewVersion(s)
	}
	return semver.StrictNewVersion(strings.TrimPrefix(s, "v"))
}

type numericalPolicy struct {
	filter *filter
	desc   bool
}

func (p *numericalPolicy) Latest(tags []string) (string, error) { return first(p.Candidates(tags)) }

// Candidates returns the tags whose compared value is a number, highest
// first (lowest first with order desc).
func (p *numericalPolicy) Candidates(tags []string) []string {
	var rs []ranked[float64]
	for _, t := range tags {
		s, ok := p.filter.value(t)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			continue
		}
		rs = append(rs, ranked[float64]{t, n})
	}
	cmp := func(a, b float64) int {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	if p.desc {
		return order(rs, func(a, b float64) int { return cmp(b, a) })
	}
	return order(rs, cmp)
}

type alphabeticalPolicy struct {
	filter *filter
	desc   bool
}

func (p *alphabeticalPolicy) Latest(tags []string) (string, error) { return first(p.Candidates(tags)) }

// Candidates returns the allowed tags, the last in byte order first (the
// first with order desc).
func (p *alphabeticalPolicy) Candidates(tags []string) []string {
	var rs []ranked[string]
	for _, t := range tags {
		s, ok := p.filter.value(t)
		if !ok || s == "" {
			continue
		}
		rs = append(rs, ranked[string]{t, s})
	}
	if p.desc {
		return order(rs, func(a, b string) int { return strings.Compare(b, a) })
	}
	return order(rs, strings.Compare)
}

// digestPolicy follows one mutable tag: its only candidate is that tag, and
// what changes is the digest the tag points to.
type digestPolicy struct {
	tag string
}

func (p *digestPolicy) Latest(tags []string) (string, error) { return first(p.Candidates(tags)) }

func (p *digestPolicy) Candidates(tags []string) []string {
	if slices.Contains(tags, p.tag) {
		return []string{p.tag}
	}
	return nil
}

var (
	_ Ranker = (*semverPolicy)(nil)
	_ Ranker = (*numericalPolicy)(nil)
	_ Ranker = (*alphabeticalPolicy)(nil)
	_ Ranker = (*digestPolicy)(nil)
)
