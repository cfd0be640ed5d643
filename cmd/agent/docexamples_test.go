package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// manifestFence opens a fenced block that docs mark as a whole manifest:
// "```yaml manifest". Other yaml blocks (agent.yaml, fragments of a
// resource) are left alone. docs/manifests.md says so for writers.
const manifestFence = "```yaml manifest"

// docExample is one manifest block of a page.
type docExample struct {
	file string
	line int
	text string
}

// manifestExamples returns every block marked as a manifest in path.
func manifestExamples(t *testing.T, path string) []docExample {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []docExample
	var cur *docExample
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == manifestFence:
			cur = &docExample{file: path, line: n}
		case cur != nil && strings.HasPrefix(line, "```"):
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Errorf("%s:%d: manifest block is not closed", path, cur.line)
	}
	return out
}

// TestDocManifestsValidate runs outpost validate over every manifest
// example of docs/*.md and README.md, each as a repository of its own. A
// file that the example names as a source is made with placeholder content
// when the page does not show it: the example is about the manifest.
func TestDocManifestsValidate(t *testing.T) {
	t.Parallel()
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "../../README.md")
	var all []docExample
	for _, p := range pages {
		all = append(all, manifestExamples(t, p)...)
	}
	// The pages that must keep their marked examples: a marker dropped by
	// mistake would make the test pass on nothing.
	for _, want := range []string{"manifests.md", "systemd.md", "images.md"} {
		found := false
		for _, ex := range all {
			found = found || filepath.Base(ex.file) == want
		}
		if !found {
			t.Errorf("docs/%s has no %q block", want, manifestFence)
		}
	}
	for _, ex := range all {
		name := strings.TrimPrefix(ex.file, "../../") + ":" + strconv.Itoa(ex.line)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "example.yaml"), []byte(ex.text), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, src := range exampleSources(t, ex.text) {
				p := filepath.Join(dir, filepath.FromSlash(src))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("placeholder\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"validate", dir}, &stdout, &stderr); code != 0 {
				t.Errorf("outpost validate over the example at %s exits %d:\n%s%s", name, code, stdout.String(), docPositions(stderr.String(), dir, ex))
			}
		})
	}
}

// secretCall finds the files of a template's secret calls.
var secretCall = regexp.MustCompile(`secret "([^"]+)"`)

// exampleSources returns the source: paths of every resource and drop-in
// of a manifest's documents.
func exampleSources(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode the example: %v", err)
		}
		if s, ok := doc["source"].(string); ok {
			out = append(out, s)
		}
		for _, field := range []string{"env_secrets", "secret_files"} {
			e, _ := doc[field].(map[string]any)
			for _, v := range e {
				if s, ok := v.(string); ok {
					file, _, _ := strings.Cut(s, "#")
					out = append(out, file)
				}
			}
		}
		if c, ok := doc["content"].(string); ok {
			for _, m := range secretCall.FindAllStringSubmatch(c, -1) {
				out = append(out, m[1])
			}
		}
		if d, ok := doc["dropins"].(map[string]any); ok {
			for _, v := range d {
				if m, ok := v.(map[string]any); ok {
					if s, ok := m["source"].(string); ok {
						out = append(out, s)
					}
				}
			}
		}
	}
}

// docPositions rewrites validate's positions in the example's file into the
// page's: example.yaml:3:7 becomes docs/page.md:LINE:7.
func docPositions(out, dir string, ex docExample) string {
	re := regexp.MustCompile(regexp.QuoteMeta(filepath.Join(dir, "example.yaml")) + `:(\d+)`)
	page := strings.TrimPrefix(ex.file, "../../")
	return re.ReplaceAllStringFunc(out, func(m string) string {
		n, _ := strconv.Atoi(re.FindStringSubmatch(m)[1])
		return page + ":" + strconv.Itoa(ex.line+n)
	})
}
