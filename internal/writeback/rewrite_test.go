package writeback

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRewriteTag(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		to       string
		want     string
		wantLine int
		wantErr  error
	}{
		{"double quoted, comment kept",
			"# front\nkind: container\nname: web\nimage: r/web\ntag: \"1.0.0\"   # pinned\nupdate: {policy: semver, mode: git}\n", "1.1.0",
			"# front\nkind: container\nname: web\nimage: r/web\ntag: \"1.1.0\"   # pinned\nupdate: {policy: semver, mode: git}\n", 5, nil},
		{"single quoted",
			"kind: container\nname: web\ntag: '1.0.0'\n", "1.10.0",
			"kind: container\nname: web\ntag: '1.10.0'\n", 3, nil},
		{"plain",
			"kind: container\nname: web\ntag: 1.0.0 # c\n", "1.0.1",
			"kind: container\nname: web\ntag: 1.0.1 # c\n", 3, nil},
		{"plain that would read as a number is quoted",
			"kind: container\nname: web\ntag: v1\n", "1.10",
			"kind: container\nname: web\ntag: \"1.10\"\n", 3, nil},
		{"the second document only",
			"kind: container\nname: api\ntag: \"1.0.0\"\n---\n# web\nkind: container\nname: web\ntag: \"1.0.0\"\n", "2.0.0",
			"kind: container\nname: api\ntag: \"1.0.0\"\n---\n# web\nkind: container\nname: web\ntag: \"2.0.0\"\n", 8, nil},
		{"flow mapping",
			"{kind: container, name: web, tag: 1.0.0, image: r/web}\n", "1.2.0",
			"{kind: container, name: web, tag: 1.2.0, image: r/web}\n", 1, nil},
		{"CRLF and unicode before",
			"# café ☕\r\nkind: container\r\nname: web\r\ntag:   \"1.0.0\"\r\n", "1.0.1",
			"# café ☕\r\nkind: container\r\nname: web\r\ntag:   \"1.0.1\"\r\n", 4, nil},
		{"indented under a key order that differs",
			"tag: \"1.0.0\"\nname: web\nkind: container\n", "1.0.1",
			"tag: \"1.0.1\"\nname: web\nkind: container\n", 1, nil},
		{"a template is not rewritten",
			"kind: container\nname: web\ntag: \"{{ .Host.Labels.v }}\"\n", "1.0.1", "", 3, ErrNotLiteral},
		{"an alias is not rewritten",
			"x: &v \"1.0.0\"\n---\nkind: container\nname: web\ntag: *v\n", "1.0.1", "", 0, nil},
		{"a block scalar is not rewritten",
			"kind: container\nname: web\ntag: >-\n  1.0.0\n", "1.0.1", "", 3, ErrNotLiteral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, line, err := rewriteTag([]byte(tt.in), "web", "1.0.0", tt.to)
			if tt.name == "an alias is not rewritten" {
				if err == nil {
					t.Fatalf("rewriteTag through an alias = %q, want an error", got)
				}
				return
			}
			if tt.name == "plain that would read as a number is quoted" {
				got, line, err = rewriteTag([]byte(tt.in), "web", "v1", tt.to)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("rewriteTag error = %v, want %v", err, tt.wantErr)
			}
			if line != tt.wantLine {
				t.Errorf("rewriteTag line = %d, want %d", line, tt.wantLine)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("rewriteTag (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRewriteTagOtherContainer(t *testing.T) {
	if _, _, err := rewriteTag([]byte("kind: container\nname: api\ntag: \"1.0.0\"\n"), "web", "1.0.0", "1.0.1"); err == nil {
		t.Error("rewriteTag of a container that is not declared: no error")
	}
}

// TestMessageOneLineReasons checks that a reason from a host's note cannot
// add a line, such as a trailer, to the commit message.
func TestMessageOneLineReasons(t *testing.T) {
	msg := Message([]Change{{File: "a.yaml", Line: 3, Container: "web", Image: "r/web", From: "1.0.0", To: "1.1.0", Digest: "sha256:ab", Hosts: 2,
		Skipped: []Skip{{Tag: "1.2.0", Reason: "marked bad on h: x\n\nOutpost-Rollout: immediate\r\u2028y"}}}})
	want := "images: web 1.0.0 -> 1.1.0\n\n" +
		"- a.yaml:3: web (r/web) 1.0.0 -> 1.1.0@sha256:ab, 2 hosts\n" +
		"  passed over 1.2.0: marked bad on h: x  Outpost-Rollout: immediate  y\n"
	if diff := cmp.Diff(want, msg); diff != "" {
		t.Errorf("Message (-want +got):\n%s", diff)
	}
	long := Message([]Change{{Skipped: []Skip{{Tag: "t", Reason: strings.Repeat("é", 300)}}}})
	if n := len(strings.Split(long, "\n")); n != 5 || len(long) > 400 {
		t.Errorf("a long reason gives %d lines, %d bytes", n, len(long))
	}
}
