package diff

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

func TestText(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", MaxText+1)
	tests := []struct {
		name          string
		before, after string
		secrets       []string
		want          string
	}{
		{name: "equal", before: "a\n", after: "a\n", want: ""},
		{name: "one line", before: "a\nb\nc\n", after: "a\nB\nc\n",
			want: "--- /f\n+++ /f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{name: "create", before: "", after: "x\ny\n",
			want: "--- /f\n+++ /f\n@@ -0,0 +1,2 @@\n+x\n+y\n"},
		{name: "no newline", before: "a", after: "b",
			want: "--- /f\n+++ /f\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n"},
		{name: "two hunks", before: "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", after: "0\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n13\n",
			want: "--- /f\n+++ /f\n@@ -1,4 +1,4 @@\n-1\n+0\n 2\n 3\n 4\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+13\n"},
		{name: "secret", before: "user=a\npass=hunter22\n", after: "user=b\npass=hunter23\n", secrets: []string{"hunter22", "on"},
			want: "<secret: 4 lines changed>\n"},
		{name: "short values are no secrets", before: "a=on\n", after: "a=off\n", secrets: []string{"on"},
			want: "--- /f\n+++ /f\n@@ -1 +1 @@\n-a=on\n+a=off\n"},
		{name: "binary", before: "a\x00", after: "b\x00",
			want: "binary or large content: 2 bytes sha256:cf1a6d3ba6e2f8d1 -> 2 bytes sha256:a2fb6f7a4b0d6cd2\n"},
		{name: "large", before: "", after: big, want: "binary or large content: 0 bytes sha256:e3b0c44298fc1c14 -> 262145 bytes sha256:" + short(Bytes([]byte(big)).sum()) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := NewMasker(tt.secrets...).Text("/f", Bytes([]byte(tt.before)), Bytes([]byte(tt.after)))
			if tt.name == "binary" {
				// The hashes are whatever SHA-256 says; check the shape.
				if !strings.HasPrefix(got, "binary or large content: 2 bytes sha256:") {
					t.Errorf("Text = %q", got)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Text mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainer(t *testing.T) {
	t.Parallel()
	a := &docker.Container{Name: "web", Image: "r/web", Tag: "1.0", Env: map[string]string{"A": "1", "PASSWORD": "hunter22"},
		Ports: []docker.Port{{HostPort: 8080, ContainerPort: 80}}, Restart: "no"}
	b := &docker.Container{Name: "web", Image: "r/web", Tag: "1.1", Env: map[string]string{"PASSWORD": "hunter23", "B": "x"},
		Ports: []docker.Port{{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80}}, Restart: "unless-stopped", Memory: 1 << 20}
	got := Container(a, b)
	want := []string{
		"image r/web:1.0 -> r/web:1.1",
		"env A removed", "env B added (secret)", "env PASSWORD changed (secret)",
		"ports [8080:80] -> [127.0.0.1:8080:80]",
		"restart no -> unless-stopped",
		"memory (unset) -> 1048576",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Container mismatch (-want +got):\n%s", diff)
	}
	if s := strings.Join(got, " "); strings.Contains(s, "hunter2") {
		t.Errorf("Container shows a secret: %s", s)
	}
}

func TestResourceFile(t *testing.T) {
	t.Parallel()
	id := spec.ID{Kind: file.Kind, Name: "/etc/motd"}
	a := &spec.Resource{ID: id, Object: &file.File{Path: "/etc/motd", Content: []byte("hi\n"), Mode: 0o644}}
	b := &spec.Resource{ID: id, Object: &file.File{Path: "/etc/motd", Content: []byte("hello\n"), Mode: 0o640, Owner: "www"}}
	fields, text := NewMasker().Resource(a, b)
	if diff := cmp.Diff([]string{"content", "mode 0644 -> 0640", "owner (unset) -> www"}, fields); diff != "" {
		t.Errorf("fields mismatch (-want +got):\n%s", diff)
	}
	if want := "--- /etc/motd\n+++ /etc/motd\n@@ -1 +1 @@\n-hi\n+hello\n"; text != want {
		t.Errorf("text = %q, want %q", text, want)
	}
}
