package registry

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Platform is the OS, architecture and variant that an image must run on,
// in the form of an image index: linux/amd64, linux/arm/v7.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform parses "os/arch" or "os/arch/variant".
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch or os/arch/variant", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		if parts[2] == "" {
			return Platform{}, fmt.Errorf("platform %q: empty variant", s)
		}
		p.Variant = parts[2]
	}
	return p, nil
}

// HostPlatform returns the platform this binary runs on. On 32-bit ARM the
// variant comes from /proc/cpuinfo (the CPU's architecture, so that an armv6
// binary on a Raspberry Pi 3 still picks v7 images), else from the GOARM the
// binary was built with.
func HostPlatform() Platform {
	p := Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = armVariant("/proc/cpuinfo")
	}
	return p
}

func armVariant(cpuinfo string) string {
	if f, err := os.Open(cpuinfo); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.TrimSpace(k) != "CPU architecture" {
				continue
			}
			switch v = strings.TrimSpace(v); v {
			case "5", "6", "7":
				return "v" + v
			case "8", "AArch64":
				// A 64-bit CPU running a 32-bit userland runs v7 images.
				return "v7"
			}
			if strings.HasPrefix(v, "5TE") {
				return "v5"
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" {
				return "v" + strings.SplitN(s.Value, ",", 2)[0]
			}
		}
	}
	return "v7"
}

// normalVariant fills in the variant an image index leaves out: an arm image
// without one is v7 and an arm64 image v8, as Docker assumes.
func normalVariant(arch, variant string) string {
	if variant != "" {
		return variant
	}
	switch arch {
	case "arm":
		return "v7"
	case "arm64":
		return "v8"
	}
	return ""
}

// Runs reports whether an image built for img runs on host p: the same OS and
// architecture, and a variant no newer than the host's (an arm/v7 host runs
// v6 and v5 images too). On other architectures a variant on either side
// that is not stated matches any.
func (p Platform) Runs(img Platform) bool {
	if img.OS != p.OS || img.Architecture != p.Architecture {
		return false
	}
	hv, iv := normalVariant(p.Architecture, p.Variant), normalVariant(img.Architecture, img.Variant)
	switch p.Architecture {
	case "arm", "arm64":
		// Variants order as strings: v5 < v6 < v7 < v8 < v8.1.
		return iv <= hv
	}
	return hv == "" || iv == "" || hv == iv
}
