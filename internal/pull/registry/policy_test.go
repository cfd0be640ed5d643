package registry

import (
	"errors"
	"fmt"
	"path"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// issueTags is the tag table that every policy is checked against.
var issueTags = []string{
	"1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest", "v1.3.0", "build-20261101",
	"sha256-3f1d5a7c0b9e2d4f6a8c0e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f.sig",
}

func TestPolicyLatest(t *testing.T) {
	tests := []struct {
		name    string
		policy  docker.UpdatePolicy
		want    string
		wantErr error
	}{
		{"semver any", docker.UpdatePolicy{Policy: "semver"}, "2.0.0", nil},
		{"semver star", docker.UpdatePolicy{Policy: "semver", Range: "*"}, "2.0.0", nil},
		{"semver caret 1 accepts v prefix", docker.UpdatePolicy{Policy: "semver", Range: "^1.0"}, "v1.3.0", nil},
		{"semver tilde 1.1", docker.UpdatePolicy{Policy: "semver", Range: "~1.1"}, "1.1.0", nil},
		{"semver below 1.1", docker.UpdatePolicy{Policy: "semver", Range: "<1.1.0"}, "1.0.0", nil},
		{"semver no pre-release unless asked", docker.UpdatePolicy{Policy: "semver", Range: "~1.2"}, "", ErrNoCandidate},
		{"semver pre-release asked", docker.UpdatePolicy{Policy: "semver", Range: "~1.2.0-0"}, "1.2.0-rc.1", nil},
		{"semver pre-release range still prefers release", docker.UpdatePolicy{Policy: "semver", Range: ">=1.2.0-0 <2"}, "v1.3.0", nil},
		{"semver nothing in range", docker.UpdatePolicy{Policy: "semver", Range: ">=3"}, "", ErrNoCandidate},
		{"semver filter v tags only", docker.UpdatePolicy{Policy: "semver", Filter: `^v(?P<extract>.+)$`}, "v1.3.0", nil},
		{"semver strict refuses a build date", docker.UpdatePolicy{Policy: "semver", Filter: `^build-(?P<extract>\d+)$`}, "", ErrNoCandidate},
		{"semver loose reads a build date", docker.UpdatePolicy{Policy: "semver", Loose: true, Filter: `^build-(?P<extract>\d+)$`}, "build-20261101", nil},
		{"semver filter without extract group", docker.UpdatePolicy{Policy: "semver", Filter: `^1\.`}, "1.1.0", nil},
		{"numerical plain tags", docker.UpdatePolicy{Policy: "numerical"}, "", ErrNoCandidate},
		{"numerical build number", docker.UpdatePolicy{Policy: "numerical", Filter: `^build-(?P<extract>\d+)$`}, "build-20261101", nil},
		{"numerical major asc", docker.UpdatePolicy{Policy: "numerical", Filter: `^(?P<extract>\d+)\.\d+\.\d+$`}, "2.0.0", nil},
		{"numerical major desc", docker.UpdatePolicy{Policy: "numerical", Order: "desc", Filter: `^(?P<extract>\d+)\.\d+\.\d+$`}, "1.1.0", nil},
		{"alphabetical asc", docker.UpdatePolicy{Policy: "alphabetical"}, "v1.3.0", nil},
		{"alphabetical asc explicit", docker.UpdatePolicy{Policy: "alphabetical", Order: "asc"}, "v1.3.0", nil},
		{"alphabetical desc", docker.UpdatePolicy{Policy: "alphabetical", Order: "desc"}, "1.0.0", nil},
		{"alphabetical filter", docker.UpdatePolicy{Policy: "alphabetical", Filter: `^build-`}, "build-20261101", nil},
		{"alphabetical extract", docker.UpdatePolicy{Policy: "alphabetical", Filter: `^(?P<extract>[0-9.]+)$`}, "2.0.0", nil},
		{"exclude replaces the defaults", docker.UpdatePolicy{Policy: "alphabetical", Exclude: []string{"v*"}},
			"sha256-3f1d5a7c0b9e2d4f6a8c0e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f.sig", nil},
		{"exclude removes the best", docker.UpdatePolicy{Policy: "semver", Exclude: []string{"2.*", "*.sig"}}, "v1.3.0", nil},
		{"digest follows latest by default", docker.UpdatePolicy{Policy: "digest"}, "latest", nil},
		{"digest missing tag", docker.UpdatePolicy{Policy: "digest", Tag: "stable"}, "", ErrNoCandidate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(&tt.policy)
			if err != nil {
				t.Fatalf("NewPolicy(%+v) = %v", tt.policy, err)
			}
			got, err := p.Latest(issueTags)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Latest(%+v) error = %v, want %v", tt.policy, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Latest(%+v) = %q, want %q", tt.policy, got, tt.want)
			}
		})
	}
}

func TestPolicyCandidates(t *testing.T) {
	tests := []struct {
		policy docker.UpdatePolicy
		want   []string
	}{
		{docker.UpdatePolicy{Policy: "semver"}, []string{"2.0.0", "v1.3.0", "1.1.0", "1.0.0"}},
		{docker.UpdatePolicy{Policy: "semver", Range: "^1.0.0-0"}, []string{"v1.3.0", "1.2.0-rc.1", "1.1.0", "1.0.0"}},
		{docker.UpdatePolicy{Policy: "alphabetical", Order: "desc", Filter: `^\d`},
			[]string{"1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0"}},
		{docker.UpdatePolicy{Policy: "digest", Tag: "latest"}, []string{"latest"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tt.policy.Policy, tt.policy.Range, tt.policy.Filter), func(t *testing.T) {
			p, err := NewPolicy(&tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Candidates(issueTags)); diff != "" {
				t.Errorf("Candidates(%+v) (-want +got):\n%s", tt.policy, diff)
			}
		})
	}
}

// TestPolicyOrderIndependent checks that the registry's listing order does
// not change the choice, even between equal versions.
func TestPolicyOrderIndependent(t *testing.T) {
	p, err := NewPolicy(&docker.UpdatePolicy{Policy: "semver"})
	if err != nil {
		t.Fatal(err)
	}
	a := []string{"1.3.0", "v1.3.0", "1.0.0"}
	b := []string{"1.0.0", "v1.3.0", "1.3.0"}
	ga, gb := p.Candidates(a), p.Candidates(b)
	if diff := cmp.Diff(ga, gb); diff != "" {
		t.Errorf("Candidates depends on input order (-a +b):\n%s", diff)
	}
}

// TestSemverStrictLoose checks the tags that are versions only when a policy
// is loose.
func TestSemverStrictLoose(t *testing.T) {
	tests := []struct {
		name  string
		tags  []string
		rng   string
		loose bool
		want  []string
	}{
		{"strict ignores a date", []string{"1.2.3", "20261101"}, "", false, []string{"1.2.3"}},
		{"loose reads a date as a major", []string{"1.2.3", "20261101"}, "", true, []string{"20261101", "1.2.3"}},
		{"strict ignores short forms", []string{"v1", "v1.0", "v1.2-5", "0.9.0"}, "", false, []string{"0.9.0"}},
		{"loose completes short forms", []string{"v1", "v1.0", "v1.2-5", "0.9.0"}, ">=0.1.0-0", true, []string{"v1.2-5", "v1.0", "v1", "0.9.0"}},
		{"strict takes a v and pre-release and build", []string{"v2.0.0", "2.1.0-rc.1", "1.0.0+build.5"}, ">=1.0.0-0", false, []string{"2.1.0-rc.1", "v2.0.0", "1.0.0+build.5"}},
		{"strict refuses leading zeros", []string{"01.2.3", "1.02.3", "1.2.3"}, "", false, []string{"1.2.3"}},
		{"strict refuses a capital V and spaces", []string{"V1.2.3", " 1.2.3", "1.2.3 "}, "", false, []string{}},
		{"strict refuses four parts", []string{"1.2.3.4", "1.2.4"}, "", false, []string{"1.2.4"}},
		{"loose reads four parts nowhere", []string{"1.2.3.4", "1.2.4"}, "", true, []string{"1.2.4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(&docker.UpdatePolicy{Policy: "semver", Range: tt.rng, Loose: tt.loose})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Candidates(tt.tags)); diff != "" {
				t.Errorf("Candidates(%q) loose=%v (-want +got):\n%s", tt.tags, tt.loose, diff)
			}
		})
	}
}

// TestPolicyTieBreak checks the documented rule for tags whose compared
// values are equal: the tag last in byte order wins, whatever the order of
// the listing.
func TestPolicyTieBreak(t *testing.T) {
	tests := []struct {
		name   string
		policy docker.UpdatePolicy
		tags   []string
		want   string
	}{
		{"semver v prefix", docker.UpdatePolicy{Policy: "semver"}, []string{"1.3.0", "v1.3.0"}, "v1.3.0"},
		{"semver build metadata", docker.UpdatePolicy{Policy: "semver"}, []string{"1.0.0+b", "1.0.0+a", "1.0.0+c"}, "1.0.0+c"},
		{"numerical leading zeros", docker.UpdatePolicy{Policy: "numerical", Filter: `^build-(?P<extract>\d+)$`},
			[]string{"build-7", "build-007", "build-07"}, "build-7"},
		{"numerical same value", docker.UpdatePolicy{Policy: "numerical", Filter: `^(?P<extract>\d+)-`},
			[]string{"5-beta", "5-alpha", "4-zeta"}, "5-beta"},
		{"alphabetical same extract", docker.UpdatePolicy{Policy: "alphabetical", Filter: `^(?P<extract>[a-z]+)-`},
			[]string{"main-2", "main-10", "dev-9"}, "main-2"},
		{"numerical desc same value", docker.UpdatePolicy{Policy: "numerical", Order: "desc", Filter: `^(?P<extract>\d+)-`},
			[]string{"1-b", "1-a", "2-z"}, "1-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(&tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			for _, tags := range [][]string{tt.tags, reversed(tt.tags)} {
				if got, err := p.Latest(tags); err != nil || got != tt.want {
					t.Errorf("Latest(%q) = %q, %v; want %q", tags, got, err, tt.want)
				}
			}
		})
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestNewPolicyInvalid(t *testing.T) {
	tests := []struct {
		name   string
		policy *docker.UpdatePolicy
	}{
		{"nil", nil},
		{"unknown policy", &docker.UpdatePolicy{Policy: "newest"}},
		{"bad range", &docker.UpdatePolicy{Policy: "semver", Range: "^^1"}},
		{"bad filter", &docker.UpdatePolicy{Policy: "semver", Filter: "("}},
		{"bad order", &docker.UpdatePolicy{Policy: "alphabetical", Order: "sideways"}},
		{"bad exclude", &docker.UpdatePolicy{Policy: "numerical", Exclude: []string{"["}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPolicy(tt.policy)
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("NewPolicy(%+v) = %v, want %v", tt.policy, err, ErrInvalidPolicy)
			}
		})
	}
}

func BenchmarkPolicy1000Tags(b *testing.B) {
	tags := make([]string, 0, 1000)
	for i := range 1000 {
		switch i % 4 {
		case 0:
			tags = append(tags, fmt.Sprintf("%d.%d.%d", i/100, i/10%10, i%10))
		case 1:
			tags = append(tags, fmt.Sprintf("v%d.%d.%d-rc.%d", i/100, i/10%10, i%10, i%3))
		case 2:
			tags = append(tags, fmt.Sprintf("build-%08d", 20260000+i))
		default:
			tags = append(tags, fmt.Sprintf("sha256-%064x.sig", i))
		}
	}
	policies := []docker.UpdatePolicy{
		{Policy: "semver", Range: "^5.0"},
		{Policy: "semver", Range: ">=1.0.0-0"},
		{Policy: "numerical", Filter: `^build-(?P<extract>\d+)$`},
		{Policy: "alphabetical"},
	}
	for _, sp := range policies {
		b.Run(sp.Policy+" "+sp.Range+sp.Filter, func(b *testing.B) {
			p, err := NewPolicy(&sp)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Latest(tags); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, tag string
		want         bool
	}{
		{"*.sig", "sha256-abc.sig", true},
		{"*.sig", "sha256-abc.sig2", false},
		{"*.sig", "signature", false},
		{"*", "anything", true},
		{"dev-*", "dev-1", true},
		{"dev-*", "1-dev-", false},
		{"latest", "latest", true},
		{"latest", "latest2", false},
		{"1.?.0", "1.2.0", true},
		{"*-rc*", "1.0.0-rc.1", true},
		{"*/x", "a/x", true}, // path.Match's * stops at a slash; tags have none
		{"[0-9]*", "1.0", true},
		{"[0-9]*", "v1.0", false},
	}
	for _, tt := range tests {
		m, err := glob(tt.pattern)
		if err != nil {
			t.Fatalf("glob(%q) = %v", tt.pattern, err)
		}
		want, _ := path.Match(tt.pattern, tt.tag)
		if got := m(tt.tag); got != tt.want || got != want {
			t.Errorf("glob(%q)(%q) = %v, want %v (path.Match says %v)", tt.pattern, tt.tag, got, tt.want, want)
		}
	}
}
