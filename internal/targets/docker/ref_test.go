package docker

import (
	"testing"
)

func TestReference(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name               string
		image, tag, digest string
		want, wantRef      string
	}{
		{"tag", "reg:5000/acme/web", "1.4.2", "", "reg:5000/acme/web:1.4.2", "reg:5000/acme/web:1.4.2"},
		{"tag and digest", "acme/web", "1.4.2", d, "acme/web:1.4.2@" + d, "acme/web:1.4.2@" + d},
		{"digest", "acme/web", "", d, "acme/web@" + d, "acme/web@" + d},
		{"neither", "acme/web", "", "", "acme/web", "acme/web:latest"},
		{"no image, tag", "", "1.0.0", "", "1.0.0", "1.0.0"},
		{"no image, tag and digest", "", "1.0.0", d, "1.0.0@" + d, "1.0.0@" + d},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Reference(tt.image, tt.tag, tt.digest); got != tt.want {
				t.Errorf("Reference(%q, %q, %q) = %q, want %q", tt.image, tt.tag, tt.digest, got, tt.want)
			}
			c := &Container{Image: tt.image, Tag: tt.tag, Digest: tt.digest}
			if got := c.Ref(); got != tt.wantRef {
				t.Errorf("Container{%q, %q, %q}.Ref() = %q, want %q", tt.image, tt.tag, tt.digest, got, tt.wantRef)
			}
		})
	}
}
