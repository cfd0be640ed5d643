package spec_test

import (
	"testing"
	"time"

	. "github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

func TestHashStable(t *testing.T) {
	timeout := 10 * time.Second
	base := func() *Resource {
		env := map[string]string{}
		for _, k := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
			env[k] = k + "-value"
		}
		return &Resource{
			ID: ID{docker.Kind, "web"}, Prune: true, Drift: DriftRevert,
			Object: &docker.Container{Name: "web", Image: "web", Tag: "1", Env: env,
				Labels: map[string]string{"x": "1", "y": "2"}, StopTimeout: &timeout},
		}
	}
	want := base().Hash()
	if len(want) != 64 {
		t.Fatalf("Hash() = %q, want 64 hex digits", want)
	}
	same := map[string]func(r *Resource){
		"rebuilt maps":        func(r *Resource) {},
		"position":            func(r *Resource) { r.Pos = Pos{File: "other.yaml", Line: 9, Col: 1} },
		"prune":               func(r *Resource) { r.Prune = false },
		"drift":               func(r *Resource) { r.Drift = DriftIgnore },
		"after":               func(r *Resource) { r.After = []ID{{systemd.Kind, "a.service"}} },
		"restart_on":          func(r *Resource) { r.RestartOn = []ID{{file.Kind, "/etc/a"}} },
		"update policy":       func(r *Resource) { docker.Of(r).Update = &docker.UpdatePolicy{Policy: "semver"} },
		"empty ports":         func(r *Resource) { docker.Of(r).Ports = []docker.Port{} },
		"empty tmpfs":         func(r *Resource) { docker.Of(r).Tmpfs = []string{} },
		"empty map is nil":    func(r *Resource) { docker.Of(r).Labels = map[string]string{"x": "1", "y": "2"} },
		"same timeout object": func(r *Resource) { d := 10 * time.Second; docker.Of(r).StopTimeout = &d },
	}
	for name, change := range same {
		t.Run(name, func(t *testing.T) {
			r := base()
			change(r)
			if got := r.Hash(); got != want {
				t.Errorf("Hash() after %s = %s, want %s", name, got, want)
			}
		})
	}
	differ := map[string]func(r *Resource){
		"tag":          func(r *Resource) { docker.Of(r).Tag = "2" },
		"digest":       func(r *Resource) { docker.Of(r).Digest = "sha256:00" },
		"env value":    func(r *Resource) { docker.Of(r).Env["A"] = "other" },
		"env key":      func(r *Resource) { docker.Of(r).Env["Z"] = "" },
		"stop timeout": func(r *Resource) { d := time.Second; docker.Of(r).StopTimeout = &d },
		"name":         func(r *Resource) { r.ID.Name = "web2" },
		"command":      func(r *Resource) { docker.Of(r).Command = []string{"a"} },
	}
	for name, change := range differ {
		t.Run(name, func(t *testing.T) {
			r := base()
			change(r)
			if got := r.Hash(); got == want {
				t.Errorf("Hash() after %s = %s, want a different hash", name, got)
			}
		})
	}
}

func TestHashFileAndUnit(t *testing.T) {
	f := func(content []byte, mode uint32) *Resource {
		return &Resource{ID: ID{file.Kind, "/etc/a"}, Object: &file.File{Path: "/etc/a", Content: content, Mode: 0o644}}
	}
	if a, b := f(nil, 0).Hash(), f([]byte{}, 0).Hash(); a != b {
		t.Errorf("Hash() of nil and empty content = %s, %s, want equal", a, b)
	}
	if a, b := f([]byte("a"), 0).Hash(), f([]byte("b"), 0).Hash(); a == b {
		t.Errorf("Hash() of different contents = %s for both, want different", a)
	}
	u := func(dropins map[string][]byte) *Resource {
		return &Resource{ID: ID{systemd.Kind, "a.service"}, Object: &systemd.Unit{Name: "a.service", Content: []byte("x"), Dropins: dropins}}
	}
	if a, b := u(nil).Hash(), u(map[string][]byte{}).Hash(); a != b {
		t.Errorf("Hash() of nil and empty drop-ins = %s, %s, want equal", a, b)
	}
	if a, b := u(nil).Hash(), u(map[string][]byte{"a.conf": nil}).Hash(); a == b {
		t.Errorf("Hash() with and without a drop-in = %s for both, want different", a)
	}
	// A file and a unit of the same content and name never share a hash.
	file := &Resource{ID: ID{file.Kind, "a.service"}, Object: &file.File{Content: []byte("x")}}
	if file.Hash() == u(nil).Hash() {
		t.Errorf("Hash() of a file and a unit are equal, want different")
	}
}
