package spec_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/outpost-gitops/outpost/internal/spec"
)

// BenchmarkLoadRender1000Files loads and renders a repository of 1,000
// file resources in 20 manifests: a third inline, a third from sources, a
// third templates.
func BenchmarkLoadRender1000Files(b *testing.B) {
	dir := b.TempDir()
	for m := range 20 {
		var sb strings.Builder
		for i := range 50 {
			n := m*50 + i
			fmt.Fprintf(&sb, "---\nkind: file\npath: /etc/bench/f%04d.conf\nmode: \"0640\"\n", n)
			switch n % 3 {
			case 0:
				fmt.Fprintf(&sb, "content: |\n  value=%d\n  other=line\n", n)
			case 1:
				src := fmt.Sprintf("src/f%04d.conf", n)
				if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, src), []byte(strings.Repeat("line of config\n", 40)), 0o644); err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(&sb, "source: %s\n", src)
			case 2:
				fmt.Fprintf(&sb, "template: true\ncontent: |\n  host={{ .Host.Name }}\n  {{- range $k, $v := .Host.Labels }}\n  {{ $k }}={{ $v }}\n  {{- end }}\n")
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("m%02d.yaml", m)), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	fsys := os.DirFS(dir)
	host := Host{Name: "bench", Labels: map[string]string{"role": "web", "site": "berlin"}}
	b.ReportAllocs()
	for b.Loop() {
		repo, err := Load(fsys, Options{})
		if err != nil {
			b.Fatal(err)
		}
		st, err := repo.Render(host)
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Resources) != 1000 {
			b.Fatalf("Render() = %d resources, want 1000", len(st.Resources))
		}
	}
}
