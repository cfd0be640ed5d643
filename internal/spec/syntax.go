package spec

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the syntax checks of single values: paths, names, ports,
// volumes, sizes. Each returns an error whose text completes "field: ".

// IsControl reports whether r is a control character: C0 (below 0x20),
// DEL, or C1 (0x80 to 0x9f), which a terminal may act on when printed.
func IsControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f)
}

// Printable reports whether s is valid UTF-8 without control characters,
// and so prints as what it is.
func Printable(s string) bool {
	for i, r := range s {
		if IsControl(r) || (r == utf8.RuneError && isBadByte(s, i)) {
			return false
		}
	}
	return true
}

func isBadByte(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// Quote returns s as it is when it is Printable, and quoted with Go's
// escapes otherwise, so that a name from a repository, the host or a state
// file cannot forge a line of output or drive the terminal.
func Quote(s string) string {
	if Printable(s) {
		return s
	}
	return strconv.Quote(s)
}

// CheckPrintable refuses a name or path with a control character or that is
// not UTF-8.
func CheckPrintable(s string) error {
	for i, r := range s {
		if IsControl(r) {
			return fmt.Errorf("%q contains the control character %U at byte %d", s, r, i)
		}
		if r == utf8.RuneError && isBadByte(s, i) {
			return fmt.Errorf("%q is not valid UTF-8 (byte %d)", s, i)
		}
	}
	return nil
}

// CheckAbsPath accepts an absolute, clean path other than the root.
func CheckAbsPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("must not be empty")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("must not contain a NUL byte")
	case CheckPrintable(p) != nil:
		return CheckPrintable(p)
	case !path.IsAbs(p):
		return fmt.Errorf("%q must be an absolute path", p)
	case path.Clean(p) != p:
		return fmt.Errorf("%q must be a clean path (%q)", p, path.Clean(p))
	case p == "/":
		return fmt.Errorf("must not be the root directory")
	}
	return nil
}

// ParseDuration parses a duration such as "10s" or "1m30s", not negative.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"10s\" or \"1m30s\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q must not be negative", s)
	}
	return d, nil
}
