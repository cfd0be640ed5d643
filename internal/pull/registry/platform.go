package registry

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
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

// ParsePlatform parses "os/arch" or "os/arch/variant". On arm, arm64 and
// amd64, whose variants are ordered, a variant that is not a version
// (v7, v8.2) is refused.
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
		if _, _, err := variantVersion(p.Architecture, p.Variant); err != nil {
			return Platform{}, fmt.Errorf("platform %q: %w", s, err)
		}
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

// ordered reports whether arch's variants are versions of its instruction
// set, of which a newer one runs the images of an older one.
func ordered(arch string) bool {
	return arch == "arm" || arch == "arm64" || arch == "amd64"
}

// variantVersion reads a variant of an ordered architecture as numbers:
// "v7" is 7.0 and "v8.2" is 8.2. An empty variant is 0.0 (any). Anything
// else is an error, so that an index entry with a variant that no host
// knows ("invalid", "v7l") is never taken to run.
func variantVersion(arch, variant string) (major, minor int, err error) {
	if variant == "" || !ordered(arch) {
		return 0, 0, nil
	}
	bad := fmt.Errorf("%s variant %q: want v<number> or v<number>.<number>", arch, variant)
	rest, ok := strings.CutPrefix(variant, "v")
	if !ok {
		return 0, 0, bad
	}
	maj, min, dotted := strings.Cut(rest, ".")
	if major, err = variantNumber(maj); err != nil {
		return 0, 0, bad
	}
	if dotted {
		if minor, err = variantNumber(min); err != nil {
			return 0, 0, bad
		}
	}
	return major, minor, nil
}

// variantNumber reads 0 to 99 written without a leading zero.
func variantNumber(s string) (int, error) {
	if s == "" || len(s) > 2 || (len(s) > 1 && s[0] == '0') {
		return 0, strconv.ErrSyntax
	}
	return strconv.Atoi(s)
}

// Runs reports whether an image built for img runs on host p: the same OS and
// architecture, and on arm, arm64 and amd64 a variant no newer than the
// host's, compared as numbers (an arm/v7 host runs v6 and v5 images, an
// arm64/v8.2 host v8 images, an amd64/v3 host v2 images). An image whose
// variant is not a version never runs there. On other architectures a
// variant on either side that is not stated matches any.
func (p Platform) Runs(img Platform) bool {
	if img.OS != p.OS || img.Architecture != p.Architecture {
		return false
	}
	hv, iv := normalVariant(p.Architecture, p.Variant), normalVariant(img.Architecture, img.Variant)
	if ordered(p.Architecture) {
		hmaj, hmin, herr := variantVersion(p.Architecture, hv)
		imaj, imin, ierr := variantVersion(img.Architecture, iv)
		if herr != nil || ierr != nil {
			return false
		}
		if hv == "" { // an amd64 host that does not say runs any level
			return true
		}
		return imaj < hmaj || (imaj == hmaj && imin <= hmin)
	}
	return hv == "" || iv == "" || hv == iv
}
