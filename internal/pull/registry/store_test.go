package registry

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatalf("OpenStore(%s) = %v", dir, err)
	}
	at := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return at }
	return s
}

func TestStoreSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := openTestStore(t, dir)
	c := following("web", "registry.example.com/acme/web", docker.UpdatePolicy{Policy: "semver", Range: "^1"})
	skipped := []Skip{{Tag: "2.0.0", Reason: "no image for linux/arm/v7"}}
	changed, err := s.Record(c, Resolution{Tag: "1.1.0", Digest: "sha256:aa", Skipped: skipped}, nil)
	if err != nil || !changed {
		t.Fatalf("Record = %v, %v; want true, nil", changed, err)
	}
	if err := s.MarkBad("web", "1.2.0", "sha256:bb", "unhealthy"); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(filepath.Join(dir, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode = %v, want 0600", StoreFile, fi.Mode().Perm())
	}

	s2 := openTestStore(t, dir)
	got, ok := s2.Entry("web")
	if !ok {
		t.Fatal("Entry(web) after reopening = missing")
	}
	at := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	want := Entry{
		Image:   "registry.example.com/acme/web",
		Policy:  "semver ^1",
		Current: &Ref{Tag: "1.1.0", Digest: "sha256:aa", At: at},
		Check:   &Check{At: at, Best: "1.1.0@sha256:aa", Skipped: skipped},
		Bad:     []BadTag{{Tag: "1.2.0", Digest: "sha256:bb", Reason: "unhealthy", At: at}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Entry(web) after reopening (-want +got):\n%s", diff)
	}

	pinned := following("web", "registry.example.com/acme/web", docker.UpdatePolicy{Policy: "semver", Range: "^1"})
	if !s2.Pin(pinned) || pinned.Ref() != "registry.example.com/acme/web:1.1.0@sha256:aa" {
		t.Errorf("Pin after reopening = %s, want registry.example.com/acme/web:1.1.0@sha256:aa", pinned.Ref())
	}
}

func TestStoreRecordFailureKeepsCurrent(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	c := following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver"})
	if _, err := s.Record(c, Resolution{Tag: "1.0.0", Digest: "sha256:aa"}, nil); err != nil {
		t.Fatal(err)
	}
	down := errors.New("connection refused")
	changed, err := s.Record(c, Resolution{}, down)
	if err != nil || changed {
		t.Fatalf("Record(failure) = %v, %v; want false, nil", changed, err)
	}
	e, _ := s.Entry("web")
	if e.Current.String() != "1.0.0@sha256:aa" || e.Check.Error != down.Error() {
		t.Errorf("after a failed check: current %s, error %q; want 1.0.0@sha256:aa, %q", e.Current, e.Check.Error, down)
	}
}

func TestStorePin(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	c := following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver", Range: "^1"})
	if _, err := s.Record(c, Resolution{Tag: "1.4.0", Digest: "sha256:aa"}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    *docker.Container
		want bool
	}{
		{"same image and policy", following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver", Range: "^1"}), true},
		{"image changed in Git", following("web", "r.example/web2", docker.UpdatePolicy{Policy: "semver", Range: "^1"}), false},
		{"policy changed in Git", following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver", Range: "^2"}), false},
		{"another container", following("api", "r.example/web", docker.UpdatePolicy{Policy: "semver", Range: "^1"}), false},
		{"pinned tag", &docker.Container{Name: "web", Image: "r.example/web", Tag: "0.1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Pin(tt.c); got != tt.want {
				t.Errorf("Pin(%s %s) = %v, want %v", tt.c.Image, Describe(tt.c.Update), got, tt.want)
			}
		})
	}
}

func TestStoreMarkBadFallsBack(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	c := following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver"})
	for _, r := range []Resolution{{Tag: "1.0.0", Digest: "sha256:a0"}, {Tag: "1.1.0", Digest: "sha256:a1"}, {Tag: "1.2.0", Digest: "sha256:a2"}} {
		if _, err := s.Record(c, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkBad("web", "1.2.0", "sha256:a2", "healthcheck failed"); err != nil {
		t.Fatal(err)
	}
	e, _ := s.Entry("web")
	if e.Current.String() != "1.1.0@sha256:a1" {
		t.Errorf("current after MarkBad(1.2.0) = %s, want 1.1.0@sha256:a1", e.Current)
	}
	pinned := following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver"})
	if !s.Pin(pinned) || pinned.Tag != "1.1.0" {
		t.Errorf("Pin after MarkBad = %s, want tag 1.1.0", pinned.Ref())
	}

	tests := []struct {
		tag, digest string
		want        bool
	}{
		{"1.2.0", "sha256:a2", true},
		{"1.2.0", "sha256:ff", false}, // re-pushed: a new image
		{"1.2.0", "", false},          // marked at a digest only
		{"1.1.0", "sha256:a1", false},
	}
	for _, tt := range tests {
		if got := s.IsBad("web", tt.tag, tt.digest); got != tt.want {
			t.Errorf("IsBad(web, %s, %s) = %v, want %v", tt.tag, tt.digest, got, tt.want)
		}
	}

	if err := s.MarkBad("web", "1.3.0", "", "operator"); err != nil {
		t.Fatal(err)
	}
	if !s.IsBad("web", "1.3.0", "") || !s.IsBad("web", "1.3.0", "sha256:any") {
		t.Error("IsBad(1.3.0) = false after MarkBad without a digest, want true at any digest")
	}
	if err := s.ClearBad("web", "1.2.0"); err != nil {
		t.Fatal(err)
	}
	if s.IsBad("web", "1.2.0", "sha256:a2") || !s.IsBad("web", "1.3.0", "") {
		t.Error("ClearBad(1.2.0) did not clear exactly 1.2.0")
	}
	if err := s.ClearBad("web", ""); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Entry("web"); len(e.Bad) != 0 {
		t.Errorf("bad tags after ClearBad(all) = %v, want none", e.Bad)
	}
}

func TestStoreForget(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	for _, n := range []string{"a", "b"} {
		if _, err := s.Record(following(n, "r.example/"+n, docker.UpdatePolicy{Policy: "semver"}), Resolution{Tag: "1"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Forget([]string{"b"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Entry("a"); ok {
		t.Error("Entry(a) after Forget([b]) exists, want it gone")
	}
	if _, ok := s.Entry("b"); !ok {
		t.Error("Entry(b) after Forget([b]) is gone, want it kept")
	}
}

func TestOpenStoreCorrupt(t *testing.T) {
	tests := []struct{ name, content string }{
		{"not json", "{"},
		{"newer schema", `{"schema": 99, "containers": {}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, StoreFile), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenStore(dir); !errors.Is(err, ErrCorrupt) {
				t.Errorf("OpenStore(%q) = %v, want %v", tt.content, err, ErrCorrupt)
			}
		})
	}
}

func TestStorePinState(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	web := following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver"})
	if _, err := s.Record(web, Resolution{Tag: "1.0.0", Digest: "sha256:aa"}, nil); err != nil {
		t.Fatal(err)
	}
	st := &spec.State{Resources: []*spec.Resource{
		{ID: spec.ID{Kind: file.Kind, Name: "/etc/x"}, Object: &file.File{Path: "/etc/x"}},
		{ID: spec.ID{Kind: docker.Kind, Name: "web"}, Object: following("web", "r.example/web", docker.UpdatePolicy{Policy: "semver"})},
		{ID: spec.ID{Kind: docker.Kind, Name: "api"}, Object: following("api", "r.example/api", docker.UpdatePolicy{Policy: "semver"})},
		{ID: spec.ID{Kind: docker.Kind, Name: "db"}, Object: &docker.Container{Name: "db", Image: "postgres", Tag: "16"}},
	}}
	got := s.PinState(st)
	if diff := cmp.Diff([]string{"api"}, got); diff != "" {
		t.Errorf("PinState unresolved (-want +got):\n%s", diff)
	}
	if ref := docker.Of(st.Resources[1]).Ref(); ref != "r.example/web:1.0.0@sha256:aa" {
		t.Errorf("web after PinState = %s, want r.example/web:1.0.0@sha256:aa", ref)
	}
	if ref := docker.Of(st.Resources[3]).Ref(); ref != "postgres:16" {
		t.Errorf("pinned db after PinState = %s, want postgres:16", ref)
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		p    *docker.UpdatePolicy
		want string
	}{
		{nil, ""},
		{&docker.UpdatePolicy{Policy: "semver", Range: "^1.4", Exclude: []string{"*.sig", "*.att", "*.sbom"}}, "semver ^1.4"},
		{&docker.UpdatePolicy{Policy: "semver"}, "semver"},
		{&docker.UpdatePolicy{Policy: "numerical", Order: "asc", Filter: `^b-(?P<extract>\d+)$`}, `numerical asc filter=^b-(?P<extract>\d+)$`},
		{&docker.UpdatePolicy{Policy: "alphabetical", Exclude: []string{"*-debug"}}, "alphabetical exclude=*-debug"},
		{&docker.UpdatePolicy{Policy: "digest"}, "digest latest"},
	}
	for _, tt := range tests {
		if got := Describe(tt.p); got != tt.want {
			t.Errorf("Describe(%+v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}
