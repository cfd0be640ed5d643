package docker

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr error
	}{
		{in: "nginx -g 'daemon off;'", want: []string{"nginx", "-g", "daemon off;"}},
		{in: `sh -c "echo \"hi\" \$HOME"`, want: []string{"sh", "-c", `echo "hi" $HOME`}},
		{in: `echo $HOME ~ *`, want: []string{"echo", "$HOME", "~", "*"}},
		{in: "  a\tb\nc  ", want: []string{"a", "b", "c"}},
		{in: `a\ b c`, want: []string{"a b", "c"}},
		{in: `'' ""`, want: []string{"", ""}},
		{in: `a"b"'c'd`, want: []string{"abcd"}},
		{in: `"a\nb"`, want: []string{`a\nb`}},
		{in: "a\\\nb", want: []string{"ab"}},
		{in: `'a\'`, want: []string{`a\`}},
		{in: `trailing\`, want: []string{`trailing\`}},
		{in: `"open`, wantErr: errUnterminated},
		{in: `'open`, wantErr: errUnterminated},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := splitWords(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("splitWords(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("splitWords(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	for _, in := range []string{"", "   "} {
		if got, err := splitWords(in); err == nil {
			t.Errorf("splitWords(%q) = %q, want an error", in, got)
		}
	}
}

// loadContainer loads one container manifest and renders it for a host.
func loadContainer(t *testing.T, manifest string) *spec.Resource {
	t.Helper()
	fsys := fstest.MapFS{"web.yaml": {Data: []byte(manifest)}}
	repo, err := spec.Load(fsys, spec.Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	st, err := repo.Render(spec.Host{Name: "h"})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if len(st.Resources) != 1 {
		t.Fatalf("Render = %d resources, want 1", len(st.Resources))
	}
	return st.Resources[0]
}

// TestComposeFormsOnTheEngine runs a container written as Compose writes
// it (a tag inside image, command as one string, env as a list), checks
// what the engine runs, and finds nothing to do for the same container in
// Outpost's own forms: the two are one desired state.
func TestComposeFormsOnTheEngine(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	name := uniqueName(t, "compose")
	port := freePort(t)
	compose := loadContainer(t, fmt.Sprintf(`kind: container
name: %s
image: %s:1
command: -p '8080' -h /www
env:
  - GREETING=hello world
  - LITERAL=$HOME
ports:
  - {target: 8080, published: "%d", host_ip: 127.0.0.1}
volumes:
  - type: tmpfs
    target: /scratch
    tmpfs: {size: 1m}
`, name, reg.Repo("web"), port))
	if ch := apply(t, d, compose); ch.Action != spec.ActionCreate {
		t.Fatalf("CheckApply(apply) = %v, want create", ch)
	}
	in := inspect(t, cli, name)
	if want := []string{"-p", "8080", "-h", "/www"}; !slices.Equal(in.Config.Cmd, want) {
		t.Errorf("Cmd = %q, want %q", in.Config.Cmd, want)
	}
	for _, e := range []string{"GREETING=hello world", "LITERAL=$HOME", "IMAGE_ENV=1"} {
		if !slices.Contains(in.Config.Env, e) {
			t.Errorf("Env = %q, want it to hold %q", in.Config.Env, e)
		}
	}
	if got, want := in.Config.Labels[LabelImageDigest], digests["web:1"]; got != want {
		t.Errorf("image digest label = %q, want %q (web:1)", got, want)
	}
	if got := get(t, port); got != "v1" {
		t.Errorf("GET on the long-syntax port = %q, want v1", got)
	}
	if got := in.HostConfig.Tmpfs["/scratch"]; got != "size=1048576" {
		t.Errorf("tmpfs /scratch options = %q, want size=1048576", got)
	}

	own := loadContainer(t, fmt.Sprintf(`kind: container
name: %s
image: %s
tag: "1"
command: ["-p", "8080", "-h", "/www"]
env: {GREETING: hello world, LITERAL: $HOME}
ports: ["127.0.0.1:%d:8080"]
tmpfs: ["/scratch:size=1048576"]
`, name, reg.Repo("web"), port))
	noop(t, d, own)
	if own.Hash() != compose.Hash() {
		t.Errorf("the hash of the Compose forms differs from Outpost's own")
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []Port
		wantErr bool
	}{
		{in: "80", want: []Port{{ContainerPort: 80, Protocol: "tcp"}}},
		{in: "9000-9001", want: []Port{{ContainerPort: 9000, Protocol: "tcp"}, {ContainerPort: 9001, Protocol: "tcp"}}},
		{in: "8000-8001:80-81/udp", want: []Port{{HostPort: 8000, ContainerPort: 80, Protocol: "udp"}, {HostPort: 8001, ContainerPort: 81, Protocol: "udp"}}},
		{in: "127.0.0.1:8000-8001:80-81", want: []Port{
			{HostIP: "127.0.0.1", HostPort: 8000, ContainerPort: 80, Protocol: "tcp"},
			{HostIP: "127.0.0.1", HostPort: 8001, ContainerPort: 81, Protocol: "tcp"}}},
		{in: "[::1]:53-54:53-54", want: []Port{
			{HostIP: "::1", HostPort: 53, ContainerPort: 53, Protocol: "tcp"},
			{HostIP: "::1", HostPort: 54, ContainerPort: 54, Protocol: "tcp"}}},
		{in: "8000-8010:80", wantErr: true},
		{in: "8000-8001:80-82", wantErr: true},
		{in: "1-2000", wantErr: true},
		{in: "80-70", wantErr: true},
		{in: "0-1", wantErr: true},
		{in: "1-65536", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePorts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePorts(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
				t.Errorf("parsePorts(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
