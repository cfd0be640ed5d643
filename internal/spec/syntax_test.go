package spec_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	. "github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in      string
		want    ID
		wantErr bool
	}{
		{in: "file:/etc/a", want: ID{file.Kind, "/etc/a"}},
		{in: "unit:a.service", want: ID{systemd.Kind, "a.service"}},
		{in: "container:web", want: ID{docker.Kind, "web"}},
		{in: "container:", wantErr: true},
		{in: "web", wantErr: true},
		{in: "pod:web", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseID(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseID(%q) = %v, %v, want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestResolve follows symlinks inside an fs.ReadLinkFS and refuses those
// that leave it.
func TestResolve(t *testing.T) {
	link := func(target string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink}
	}
	fsys := fstest.MapFS{
		"a/file":      {Data: []byte("x")},
		"x":           {Data: []byte("inside")},
		"b/inside":    link("../x"),
		"a/rel":       link("file"),
		"a/up":        link("../a"),
		"a/chain":     link("rel"),
		"b/dir":       link("../a"),
		"b/abs":       link("/etc/passwd"),
		"b/out":       link("../../x"),
		"b/loop":      link("loop"),
		"b/dot":       link("."),
		"b/outviadot": link("dot/../../x"),
	}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "a/file", want: "a/file"},
		{in: "a/rel", want: "a/file"},
		{in: "a/chain", want: "a/file"},
		{in: "a/up/file", want: "a/file"},
		{in: "b/dir/rel", want: "a/file"},
		{in: "b/dot/dir/file", want: "a/file"},
		{in: "b/inside", want: "x"},
		{in: "b/dir/../x", want: "x"},
		{in: "b/abs", wantErr: true},
		{in: "b/out", wantErr: true},
		{in: "b/loop", wantErr: true},
		{in: "b/outviadot", wantErr: true},
		{in: "a/missing", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Resolve(fsys, tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("resolve(%q) = %q, %v, want %q (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	known := FieldSet(CommonFields, KindFields(docker.Kind))
	tests := []struct{ in, want string }{
		{"environment", "env"},
		{"container_name", "name"},
		{"imgae", "image"},
		{"port", "ports"},
		{"colour", ""},
		{"xyz", ""},
		{"a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Suggest(tt.in, known); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestDocsCoverEveryField checks that docs/manifests.md names every field
// that the parser knows, so that the reference cannot fall behind.
func TestDocsCoverEveryField(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "manifests.md"))
	if err != nil {
		t.Fatalf("read the reference: %v", err)
	}
	doc := string(data)
	var fields []string
	fields = append(fields, CommonFields...)
	for _, k := range Kinds() {
		fields = append(fields, KindFields(k)...)
	}
	fields = append(fields, "policy", "range", "order", "filter", "exclude", "interval", "timeout",
		"start_period", "retries", "driver", "options", "targets", "selector", "labels", "names", "allow_mass_prune")
	// Code spans, left to right: `f`, `f: x`, `{a, f}`, `x.f`.
	spans := strings.Join(regexp.MustCompile("`[^`\n]+`").FindAllString(doc, -1), "\n")
	for _, f := range fields {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(f) + `\b`).MatchString(spans) {
			t.Errorf("docs/manifests.md does not name the field %q", f)
		}
	}
	if regexp.MustCompile(`\bno_such_field\b`).MatchString(spans) {
		t.Errorf("the check finds a field that the reference does not name")
	}
}
