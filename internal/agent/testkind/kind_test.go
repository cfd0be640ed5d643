// Package testkind_test proves the kind contract from outside Outpost's
// own kinds: a kind that exists only in this test registers itself in one
// line, and the agent then loads, converges, hashes and prunes it like any
// other, through the same pass that `outpost apply` runs.
package testkind_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// kind is the test's kind: a marker, a named line of text that the driver
// keeps in ROOT/markers/NAME.
const kind spec.Kind = "marker"

// Marker is the kind's object.
type Marker struct {
	Name string
	Text string
}

func (m *Marker) Clone() spec.Object { c := *m; return &c }
func (m *Marker) Canonical() any     { return m }

func init() {
	converge.Register(converge.Kind{KindDef: spec.KindDef{Name: kind, Order: 40, Fields: []string{"name", "text"}, Decode: decode}, NewDriver: newDriver})
}

// decode reads name (required, a plain word) and text.
func decode(d *spec.Decoder, f map[string]spec.Field) bool {
	m := &Marker{}
	d.Resource().Object = m
	var ok bool
	if m.Name, ok = d.Name("name", func(s string) error {
		if s == "" || strings.ContainsAny(s, "/.") {
			return fmt.Errorf("%q is not a plain word", s)
		}
		return nil
	}); !ok {
		return false
	}
	d.String("text", &m.Text, nil)
	return true
}

// driver keeps each marker in a file under dir.
type driver struct{ dir string }

func newDriver(_ context.Context, env converge.Env) (converge.Driver, error) {
	if env.Root == "" {
		return nil, errors.New("the marker kind only runs under --root")
	}
	return &driver{dir: filepath.Join(env.Root, "markers")}, nil
}

func (d *driver) CheckApply(_ context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	m := r.Object.(*Marker)
	p := filepath.Join(d.dir, m.Name)
	have, err := os.ReadFile(p)
	var ch spec.Change
	switch {
	case errors.Is(err, os.ErrNotExist):
		ch.Action = spec.ActionCreate
	case err != nil:
		return ch, err
	case string(have) != m.Text:
		ch = spec.Change{Action: spec.ActionUpdate, Fields: []string{"text"}}
	default:
		return spec.Change{Action: spec.ActionNone}, nil
	}
	if !apply {
		return ch, nil
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return ch, err
	}
	return ch, os.WriteFile(p, []byte(m.Text), 0o644)
}

func (d *driver) Remove(_ context.Context, id spec.ID, apply bool) (spec.Change, error) {
	p := filepath.Join(d.dir, id.Name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	if apply {
		if err := os.Remove(p); err != nil {
			return spec.Change{Action: spec.ActionDelete}, err
		}
	}
	return spec.Change{Action: spec.ActionDelete}, nil
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if content == "" {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// changes lists a report's changes as "ACTION KIND:NAME".
func changes(rep *agent.Report) []string {
	var out []string
	for _, c := range rep.Changes {
		out = append(out, c.Action+" "+c.Kind+":"+c.Name)
	}
	return out
}

func TestKindOnlyInTests(t *testing.T) {
	ctx := context.Background()
	repo := t.TempDir()
	cfg := agent.Default()
	cfg.Source.URL = repo
	cfg.Root = filepath.Join(t.TempDir(), "root")
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Host = agent.HostConfig{Name: "h1"}
	marker := filepath.Join(cfg.Root, "markers", "greeting")

	write(t, repo, map[string]string{
		"m.yaml": "kind: marker\nname: greeting\ntext: hello\n",
		"f.yaml": "kind: file\npath: /etc/motd\ncontent: hi\n",
	})
	rep, err := agent.Apply(ctx, cfg, nil, agent.ApplyOptions{})
	if err != nil {
		t.Fatalf("Apply() = %v", err)
	}
	// Apply order follows Order: the file kind (10) before the marker (40).
	if diff := cmp.Diff([]string{"create file:/etc/motd", "create marker:greeting"}, changes(rep)); diff != "" {
		t.Errorf("first Apply() changes (-want +got):\n%s", diff)
	}
	if got, err := os.ReadFile(marker); err != nil || string(got) != "hello" {
		t.Errorf("marker after Apply() = %q, %v, want %q", got, err, "hello")
	}

	// A change of text is an update; the same text again is nothing.
	write(t, repo, map[string]string{"m.yaml": "kind: marker\nname: greeting\ntext: bonjour\n"})
	if rep, err = agent.Apply(ctx, cfg, nil, agent.ApplyOptions{}); err != nil {
		t.Fatalf("Apply() = %v", err)
	}
	if diff := cmp.Diff([]string{"update marker:greeting"}, changes(rep)); diff != "" {
		t.Errorf("Apply() after a change (-want +got):\n%s", diff)
	}
	if rep, err = agent.Apply(ctx, cfg, nil, agent.ApplyOptions{}); err != nil || rep.Summary.Changed() {
		t.Errorf("Apply() of the same commit = %+v, %v, want no change", rep.Summary, err)
	}

	// The kind's fields are checked like any other: an unknown field is an
	// error at its line, with a suggestion, and nothing changes.
	write(t, repo, map[string]string{"m.yaml": "kind: marker\nname: greeting\ntxt: hola\n"})
	if rep, err = agent.Apply(ctx, cfg, nil, agent.ApplyOptions{}); err != nil {
		t.Fatalf("Apply() = %v", err)
	}
	want := []agent.Problem{{File: filepath.Join(repo, "m.yaml"), Line: 3, Col: 1, Message: `marker: unknown field "txt" (did you mean "text"?)`}}
	if diff := cmp.Diff(want, rep.Errors); rep.Valid || diff != "" {
		t.Errorf("Apply() with a misspelt field: valid %v, errors (-want +got):\n%s", rep.Valid, diff)
	}
	if got, _ := os.ReadFile(marker); string(got) != "bonjour" {
		t.Errorf("marker after an invalid commit = %q, want %q kept", got, "bonjour")
	}

	// When the marker leaves the repository, the pass prunes it.
	write(t, repo, map[string]string{"m.yaml": ""})
	if rep, err = agent.Apply(ctx, cfg, nil, agent.ApplyOptions{}); err != nil {
		t.Fatalf("Apply() = %v", err)
	}
	if diff := cmp.Diff([]string{"delete marker:greeting"}, changes(rep)); diff != "" {
		t.Errorf("Apply() after removal (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker after removal: stat = %v, want it pruned", err)
	}
}
