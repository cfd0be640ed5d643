package spec

import (
	"errors"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestLoadRenderSmall(t *testing.T) {
	fsys := fstest.MapFS{
		"fleet.yaml": {Data: []byte("targets:\n  - path: common\n  - path: gw\n    selector: {labels: {role: gateway}}\n")},
		"common/files.yaml": {Data: []byte(`kind: file
path: /etc/motd
content: "hello {{ .Host.Name }}"
template: true
`)},
		"gw/web.yaml": {Data: []byte(`kind: container
name: web
image: registry.example.com/web
tag: "1.0"
restart_on: ["file:/etc/motd"]
`)},
	}
	repo, err := Load(fsys, Options{})
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	tests := []struct {
		host Host
		want []string
	}{
		{Host{Name: "a"}, []string{"file:/etc/motd"}},
		{Host{Name: "b", Labels: map[string]string{"role": "gateway"}}, []string{"file:/etc/motd", "container:web"}},
	}
	for _, tt := range tests {
		t.Run(tt.host.Name, func(t *testing.T) {
			st, err := repo.Render(tt.host)
			if err != nil {
				t.Fatalf("Render(%v) = %v", tt.host, err)
			}
			var got []string
			for _, r := range st.Resources {
				got = append(got, r.ID.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Render(%v) IDs (-want +got):\n%s", tt.host, diff)
			}
			if c := string(st.Resources[0].File.Content); c != "hello "+tt.host.Name {
				t.Errorf("Render(%v) content = %q, want %q", tt.host, c, "hello "+tt.host.Name)
			}
		})
	}
}

func TestLoadInvalidIsErrors(t *testing.T) {
	fsys := fstest.MapFS{"a.yaml": {Data: []byte("kind: file\npath: etc/x\ncontent: x\n")}}
	_, err := Load(fsys, Options{})
	var es Errors
	if !errors.As(err, &es) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load() = %v, want Errors matching ErrInvalid", err)
	}
	want := `a.yaml:2:7: path: "etc/x" must be an absolute path`
	if got := es.Error(); got != want {
		t.Errorf("Load() = %q, want %q", got, want)
	}
}
