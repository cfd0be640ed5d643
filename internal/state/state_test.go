package state_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

func TestLoadMissing(t *testing.T) {
	st, err := state.New(filepath.Join(t.TempDir(), "none")).Load()
	if err != nil {
		t.Fatalf("Load() error = %v, want nil", err)
	}
	want := &state.State{Schema: state.Schema, Inventory: state.Inventory{}}
	if diff := cmp.Diff(want, st, cmpopts.IgnoreUnexported(state.State{})); diff != "" {
		t.Errorf("Load() mismatch (-want +got):\n%s", diff)
	}
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := state.New(dir)
	at := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	st := &state.State{Commit: "abc", LastGood: "def", Inventory: state.Inventory{}}
	st.Inventory.Set(state.Entry{Kind: file.Kind, Name: "/etc/a", Hash: "h1", AppliedAt: at})
	st.Inventory.Set(state.Entry{Kind: docker.Kind, Name: "web", Hash: "h2", AppliedAt: at, NoPrune: true})
	if err := s.Save(st); err != nil {
		t.Fatalf("Save() error = %v", err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	want := *st
	want.Schema = state.Schema
	if diff := cmp.Diff(&want, got, cmpopts.IgnoreUnexported(state.State{})); diff != "" {
		t.Errorf("Load() after Save() mismatch (-want +got):\n%s", diff)
	}
	if st.Schema != 0 {
		t.Errorf("Save() changed its argument's Schema to %d", st.Schema)
	}

	for _, c := range []struct {
		path string
		perm os.FileMode
	}{{dir, 0o700}, {s.Path(), 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.perm {
			t.Errorf("mode of %s = %v, want %v", c.path, fi.Mode().Perm(), c.perm)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != state.FileName {
		t.Errorf("state directory holds %v, want only %s", entries, state.FileName)
	}
}

func TestUnknownFieldsKept(t *testing.T) {
	dir := t.TempDir()
	doc := `{"schema": 7, "commit": "c1", "future": {"x": [1, 2]},
		"inventory": {"file:/etc/a": {"kind": "file", "name": "/etc/a", "hash": "h", "applied_at": "2026-11-26T15:00:00Z", "later": true}}}`
	if err := os.WriteFile(filepath.Join(dir, state.FileName), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	s := state.New(dir)
	st, err := s.Load()
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if st.Schema != 7 || st.Commit != "c1" || st.Inventory["file:/etc/a"].Hash != "h" {
		t.Errorf("Load() = %+v, want schema 7, commit c1 and the entry of /etc/a", st)
	}
	st.Commit = "c2"
	if err := s.Save(st); err != nil {
		t.Fatalf("Save() error = %v", err)
	}
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"x": []any{1.0, 2.0}}
	if diff := cmp.Diff(want, m["future"]); diff != "" {
		t.Errorf("saved future field mismatch (-want +got):\n%s", diff)
	}
	if m["commit"] != "c2" || m["schema"] != 7.0 {
		t.Errorf("saved commit, schema = %v, %v, want c2, 7", m["commit"], m["schema"])
	}
}

func TestLoadCorrupt(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"empty", ""},
		{"truncated", `{"schema": 1, "inventory": {`},
		{"not an object", `[1, 2]`},
		{"no schema", `{"inventory": {}}`},
		{"trailing data", `{"schema": 1} {"schema": 1}`},
		{"wrong type", `{"schema": "one"}`},
		{"key does not match entry", `{"schema": 1, "inventory": {"file:/a": {"kind": "file", "name": "/b"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, state.FileName), []byte(tt.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := state.New(dir).Load()
			if !errors.Is(err, state.ErrCorrupt) {
				t.Errorf("Load(%q) = %+v, %v, want an error matching ErrCorrupt", tt.doc, st, err)
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the document should be: it exists but is not a file.
	if err := os.Mkdir(filepath.Join(dir, state.FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if st, err := state.New(dir).Load(); err == nil {
		t.Errorf("Load() = %+v, nil, want an error", st)
	}
}

func TestInventoryIDs(t *testing.T) {
	inv := state.Inventory{}
	for _, id := range []spec.ID{
		{Kind: docker.Kind, Name: "a"},
		{Kind: file.Kind, Name: "/z"},
		{Kind: systemd.Kind, Name: "b.service"},
		{Kind: file.Kind, Name: "/a"},
	} {
		inv.Set(state.Entry{Kind: id.Kind, Name: id.Name})
	}
	want := []spec.ID{
		{Kind: file.Kind, Name: "/a"},
		{Kind: file.Kind, Name: "/z"},
		{Kind: systemd.Kind, Name: "b.service"},
		{Kind: docker.Kind, Name: "a"},
	}
	if diff := cmp.Diff(want, inv.IDs()); diff != "" {
		t.Errorf("IDs() mismatch (-want +got):\n%s", diff)
	}
	c := inv.Clone()
	delete(c, "file:/a")
	if _, ok := inv.Get(spec.ID{Kind: file.Kind, Name: "/a"}); !ok {
		t.Errorf("deleting from a Clone changed the original")
	}
}
