package registry

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in      string
		want    Platform
		wantErr bool
	}{
		{"linux/amd64", Platform{OS: "linux", Architecture: "amd64"}, false},
		{"linux/arm/v7", Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, false},
		{"linux", Platform{}, true},
		{"linux/arm/", Platform{}, true},
		{"/amd64", Platform{}, true},
		{"a/b/c/d", Platform{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePlatform(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParsePlatform(%q).String() = %q", tt.in, got)
		}
	}
}

func TestPlatformRuns(t *testing.T) {
	tests := []struct {
		host, img string
		want      bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
		{"linux/amd64/v3", "linux/amd64", true},
		{"linux/arm/v7", "linux/arm/v7", true},
		{"linux/arm/v7", "linux/arm/v6", true},
		{"linux/arm/v7", "linux/arm", true}, // an index without variant means v7
		{"linux/arm/v6", "linux/arm/v7", false},
		{"linux/arm/v6", "linux/arm", false},
		{"linux/arm/v7", "linux/arm64", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
	}
	for _, tt := range tests {
		h, err := ParsePlatform(tt.host)
		if err != nil {
			t.Fatal(err)
		}
		i, err := ParsePlatform(tt.img)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Runs(i); got != tt.want {
			t.Errorf("%s.Runs(%s) = %v, want %v", tt.host, tt.img, got, tt.want)
		}
	}
}

func TestHostPlatform(t *testing.T) {
	got := HostPlatform()
	if got.OS != runtime.GOOS || got.Architecture != runtime.GOARCH {
		t.Errorf("HostPlatform() = %s, want %s/%s", got, runtime.GOOS, runtime.GOARCH)
	}
	if wantVariant := runtime.GOARCH == "arm"; (got.Variant != "") != wantVariant {
		t.Errorf("HostPlatform() = %s: a variant only on arm", got)
	}
}

func TestArmVariant(t *testing.T) {
	tests := []struct{ cpuinfo, want string }{
		{"processor\t: 0\nCPU architecture: 7\nCPU variant\t: 0x0\n", "v7"},
		{"Processor\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 6\n", "v6"},
		{"CPU architecture: 8\n", "v7"},
		{"CPU architecture: 5TEJ\n", "v5"},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), "cpuinfo")
		if err := os.WriteFile(p, []byte(tt.cpuinfo), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := armVariant(p); got != tt.want {
			t.Errorf("armVariant(%q) = %q, want %q", tt.cpuinfo, got, tt.want)
		}
	}
}
