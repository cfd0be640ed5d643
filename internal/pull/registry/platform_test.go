package registry

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
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
		{"linux/arm64/v8.2", Platform{OS: "linux", Architecture: "arm64", Variant: "v8.2"}, false},
		{"linux/amd64/v3", Platform{OS: "linux", Architecture: "amd64", Variant: "v3"}, false},
		{"linux/riscv64/rva22", Platform{OS: "linux", Architecture: "riscv64", Variant: "rva22"}, false},
		{"linux/arm/invalid", Platform{}, true},
		{"linux/arm/7", Platform{}, true},
		{"linux/arm/v7l", Platform{}, true},
		{"linux/arm/v07", Platform{}, true},
		{"linux/arm64/v8.", Platform{}, true},
		{"linux/amd64/v", Platform{}, true},
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
		// Variants compare as numbers: v10 is newer than v8.
		{"linux/arm/v8", "linux/arm/v10", false},
		{"linux/arm/v10", "linux/arm/v8", true},
		{"linux/arm64/v8.2", "linux/arm64/v8.1", true},
		{"linux/arm64/v8.2", "linux/arm64/v8.10", false},
		{"linux/arm64/v8.10", "linux/arm64/v8.2", true},
		{"linux/arm64/v8.2", "linux/arm64/v9", false},
		{"linux/arm64/v9", "linux/arm64/v8.9", true},
		{"linux/arm64", "linux/arm64/v8.0", true},
		{"linux/amd64/v2", "linux/amd64/v3", false},
		{"linux/amd64/v3", "linux/amd64/v2", true},
		{"linux/amd64", "linux/amd64/v4", true},
		// A variant that is not a version never runs.
		{"linux/arm/v7", "linux/arm/invalid", false},
		{"linux/arm64/v8", "linux/arm64/8", false},
		{"linux/amd64/v3", "linux/amd64/x86-64-v2", false},
		// Elsewhere variants are names.
		{"linux/riscv64/rva22", "linux/riscv64/rva22", true},
		{"linux/riscv64/rva22", "linux/riscv64/rva20", false},
		{"linux/riscv64", "linux/riscv64/rva20", true},
	}
	for _, tt := range tests {
		h, err := ParsePlatform(tt.host)
		if err != nil {
			t.Fatal(err)
		}
		// Images come from index entries, which are not checked on the
		// way in.
		i := platformOf(tt.img)
		if got := h.Runs(i); got != tt.want {
			t.Errorf("%s.Runs(%s) = %v, want %v", tt.host, tt.img, got, tt.want)
		}
	}
}

func platformOf(s string) Platform {
	parts := append(strings.Split(s, "/"), "")
	return Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
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
