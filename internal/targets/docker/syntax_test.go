package docker

import (
	"strings"
	"testing"

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

func TestSplitImage(t *testing.T) {
	const dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in, repo, tag, digest string
		wantErr               bool
	}{
		{in: "busybox", repo: "busybox"},
		{in: "library/busybox", repo: "library/busybox"},
		{in: "registry.example.com/acme/web", repo: "registry.example.com/acme/web"},
		{in: "localhost:5000/web", repo: "localhost:5000/web"},
		{in: "127.0.0.1:5000/a/b-c_d.e", repo: "127.0.0.1:5000/a/b-c_d.e"},
		{in: "web@" + dg, repo: "web", digest: dg},
		{in: "web:1.0", repo: "web", tag: "1.0"},
		{in: "localhost:5000/web:1", repo: "localhost:5000/web", tag: "1"},
		{in: "web:1.0@" + dg, repo: "web", tag: "1.0", digest: dg},
		{in: "web:", wantErr: true},
		{in: "web:-x", wantErr: true},
		{in: "localhost:5000/", wantErr: true},
		{in: "Web", wantErr: true},
		{in: "web@sha256:abc", wantErr: true},
		{in: "", wantErr: true},
		{in: "/web", wantErr: true},
		{in: "web/", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			repo, tag, digest, err := splitImage(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("splitImage(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && (repo != tt.repo || tag != tt.tag || digest != tt.digest) {
				t.Errorf("splitImage(%q) = %q, %q, %q, want %q, %q, %q", tt.in, repo, tag, digest, tt.repo, tt.tag, tt.digest)
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

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    [][2]string
		wantErr string
	}{
		{name: "plain", in: "A=1\nB=two words\n", want: [][2]string{{"A", "1"}, {"B", "two words"}}},
		{name: "comments, blanks, export, CRLF", in: "# top\r\n\r\nexport A=1\r\n  B = 2  # trailing\n", want: [][2]string{{"A", "1"}, {"B", "2"}}},
		{name: "double quotes take escapes", in: `A="x\ny \"q\" # not a comment"`, want: [][2]string{{"A", "x\ny \"q\" # not a comment"}}},
		{name: "single quotes are literal", in: `A='$HOME \n'`, want: [][2]string{{"A", `$HOME \n`}}},
		{name: "empty value", in: "A=\nB=''\n", want: [][2]string{{"A", ""}, {"B", ""}}},
		{name: "equals in the value", in: "URL=postgres://u@h/db?sslmode=require", want: [][2]string{{"URL", "postgres://u@h/db?sslmode=require"}}},
		{name: "later wins in order", in: "A=1\nA=2\n", want: [][2]string{{"A", "1"}, {"A", "2"}}},
		{name: "no value", in: "A=1\nHOME\n", wantErr: "line 2: HOME has no value"},
		{name: "bad name", in: "1A=x\n", wantErr: "line 1: not a variable name"},
		{name: "open quote", in: "A=\"secret-value\n", wantErr: "line 1: A: a quote that is not closed on its line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvFile([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr && !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("parseEnvFile = %v, %v; want error %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret-value") {
					t.Errorf("the error %q quotes a value", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseEnvFile (-want +got):\n%s", diff)
			}
		})
	}
}
