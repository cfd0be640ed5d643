package spec

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    Port
		wantErr bool
	}{
		{in: "80", want: Port{ContainerPort: 80, Protocol: "tcp"}},
		{in: "8080:80", want: Port{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		{in: "127.0.0.1:8080:80/udp", want: Port{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "udp"}},
		{in: "127.0.0.1::80", want: Port{HostIP: "127.0.0.1", ContainerPort: 80, Protocol: "tcp"}},
		{in: "[::1]:53:53/sctp", want: Port{HostIP: "::1", HostPort: 53, ContainerPort: 53, Protocol: "sctp"}},
		{in: "65535:1", want: Port{HostPort: 65535, ContainerPort: 1, Protocol: "tcp"}},
		{in: "", wantErr: true},
		{in: "0", wantErr: true},
		{in: "65536", wantErr: true},
		{in: ":80", wantErr: true},
		{in: "80/icmp", wantErr: true},
		{in: "80-81", wantErr: true},
		{in: "a:b:c:d", wantErr: true},
		{in: "999.0.0.1:80:80", wantErr: true},
		{in: "[::1]80:80", wantErr: true},
		{in: "[::1]:1:2:3", wantErr: true},
		{in: ":8080:80", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePort(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePort(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
				t.Errorf("parsePort(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    Volume
		wantErr bool
	}{
		{in: "/srv:/data", want: Volume{Source: "/srv", Target: "/data"}},
		{in: "/srv:/data:ro", want: Volume{Source: "/srv", Target: "/data", ReadOnly: true}},
		{in: "/srv:/data:rw", want: Volume{Source: "/srv", Target: "/data"}},
		{in: "cache:/cache", want: Volume{Source: "cache", Target: "/cache", Named: true}},
		{in: "cache_1.v:/cache:ro", want: Volume{Source: "cache_1.v", Target: "/cache", ReadOnly: true, Named: true}},
		{in: "/data", wantErr: true},
		{in: "srv/x:/data", wantErr: true},
		{in: "/srv/:/data", wantErr: true},
		{in: "/srv:data", wantErr: true},
		{in: "/srv:/data:z", wantErr: true},
		{in: "/srv:/", wantErr: true},
		{in: ":/data", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseVolume(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseVolume(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
				t.Errorf("parseVolume(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "1024", want: 1024},
		{in: "512m", want: 512 << 20},
		{in: "512M", want: 512 << 20},
		{in: "1g", want: 1 << 30},
		{in: "1gb", want: 1 << 30},
		{in: "64k", want: 64 << 10},
		{in: "2t", want: 2 << 40},
		{in: "0", wantErr: true},
		{in: "1.5g", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "1x", wantErr: true},
		{in: "99999999999g", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseMemory(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want && !tt.wantErr {
				t.Errorf("parseMemory(%q) = %d, %v, want %d (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    fs.FileMode
		wantErr bool
	}{
		{in: "0644", want: 0o644},
		{in: "640", want: 0o640},
		{in: "0000", want: 0},
		{in: "4755", want: fs.ModeSetuid | 0o755},
		{in: "2750", want: fs.ModeSetgid | 0o750},
		{in: "1777", want: fs.ModeSticky | 0o777},
		{in: "0888", wantErr: true},
		{in: "64", wantErr: true},
		{in: "10644", wantErr: true},
		{in: "rw-r--r--", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseMode(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want && !tt.wantErr {
				t.Errorf("parseMode(%q) = %v, %v, want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCheckUnitName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"web.service", true},
		{"web-backup.timer", true},
		{"worker@.service", true},
		{"worker@1.service", true},
		{"srv-data.mount", true},
		{"dev-sda.device", true},
		{`system-getty\x2d.slice`, true},
		{"a.socket", true},
		{"web", false},
		{"web.conf", false},
		{".service", false},
		{"@.service", false},
		{"../web.service", false},
		{"sub/web.service", false},
		{"we b.service", false},
		{"a@b@c.service", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if err := checkUnitName(tt.in); (err == nil) != tt.ok {
				t.Errorf("checkUnitName(%q) = %v, want ok %v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestSplitImage(t *testing.T) {
	const dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in, repo, digest string
		wantErr          bool
	}{
		{in: "busybox", repo: "busybox"},
		{in: "library/busybox", repo: "library/busybox"},
		{in: "registry.example.com/acme/web", repo: "registry.example.com/acme/web"},
		{in: "localhost:5000/web", repo: "localhost:5000/web"},
		{in: "127.0.0.1:5000/a/b-c_d.e", repo: "127.0.0.1:5000/a/b-c_d.e"},
		{in: "web@" + dg, repo: "web", digest: dg},
		{in: "web:1.0", wantErr: true},
		{in: "localhost:5000/web:1", wantErr: true},
		{in: "Web", wantErr: true},
		{in: "web@sha256:abc", wantErr: true},
		{in: "", wantErr: true},
		{in: "/web", wantErr: true},
		{in: "web/", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			repo, digest, err := splitImage(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("splitImage(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && (repo != tt.repo || digest != tt.digest) {
				t.Errorf("splitImage(%q) = %q, %q, want %q, %q", tt.in, repo, digest, tt.repo, tt.digest)
			}
		})
	}
}

func TestCheckDevice(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"/dev/sda", true},
		{"/dev/sda:/dev/xvda", true},
		{"/dev/sda:/dev/xvda:r", true},
		{"/dev/sda:/dev/xvda:rwm", true},
		{"dev/sda", false},
		{"/dev/sda:xvda", false},
		{"/dev/sda:/dev/xvda:rr", false},
		{"/dev/sda:/dev/xvda:x", false},
		{"/dev/sda:/dev/xvda:", false},
		{"/a:/b:r:w", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if err := checkDevice(tt.in); (err == nil) != tt.ok {
				t.Errorf("checkDevice(%q) = %v, want ok %v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		in      string
		want    ID
		wantErr bool
	}{
		{in: "file:/etc/a", want: ID{KindFile, "/etc/a"}},
		{in: "unit:a.service", want: ID{KindUnit, "a.service"}},
		{in: "container:web", want: ID{KindContainer, "web"}},
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
			got, err := resolve(fsys, tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("resolve(%q) = %q, %v, want %q (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	known := fieldSet(commonFields, kindFields[KindContainer])
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
			if got := suggest(tt.in, known); got != tt.want {
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
	fields = append(fields, commonFields...)
	for _, k := range Kinds {
		fields = append(fields, kindFields[k]...)
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
