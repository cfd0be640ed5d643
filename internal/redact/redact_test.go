package redact_test

import (
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/redact"
)

func TestURLs(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"password", "https://u:secret@git.example.com/env.git", "https://git.example.com/env.git"},
		{"token as user", "https://token@git.example.com/env.git", "https://git.example.com/env.git"},
		{"raw at in password", "https://user:p@ss@host/x.git", "https://host/x.git"},
		{"two raw ats", "https://user:a@b@c@host/x.git", "https://host/x.git"},
		{"raw colon in password", "https://user:a:b@host/x.git", "https://host/x.git"},
		{"percent-encoded at", "https://user:p%40ss@host/x.git", "https://host/x.git"},
		{"ssh user", "ssh://git@git.example.com:2222/env.git", "ssh://git.example.com:2222/env.git"},
		{"ssh password", "ssh://user:pw@host/env.git", "ssh://host/env.git"},
		{"no user info", "https://git.example.com/env.git", "https://git.example.com/env.git"},
		{"at in path", "https://git.example.com/a@b/env.git", "https://git.example.com/a@b/env.git"},
		{"at in query", "https://host/x?a=b@c", "https://host/x?a=b@c"},
		{"at in fragment", "https://host#a@b", "https://host#a@b"},
		{"quoted", `get "https://u:p@h/x.git/info/refs": EOF`, `get "https://h/x.git/info/refs": EOF`},
		{"single quotes", `remote 'https://u:p@ss@h/x.git' failed`, `remote 'https://h/x.git' failed`},
		{"angle brackets", "see <https://tok@h/x>", "see <https://h/x>"},
		{"followed by punctuation", "cannot reach https://u:p@host.", "cannot reach https://host."},
		{"followed by comma", "https://u:p@host, then", "https://host, then"},
		{"several URLs", "https://a:1@h1/x and http://b:2@h2/y", "https://h1/x and http://h2/y"},
		{"host only", "https://u:p@host", "https://host"},
		{"scp-like kept", "git@github.com:acme/env.git", "git@github.com:acme/env.git"},
		{"local path", "/srv/git/env.git", "/srv/git/env.git"},
		{"file URL", "file:///srv/env", "file:///srv/env"},
		{"git URL", "git://u:p@host:9418/env", "git://host:9418/env"},
		{"no scheme letters", "://u:p@host", "://u:p@host"},
		{"empty", "", ""},
		{"raw slash in password", "https://user:a/b@host/x.git", "https://host/x.git"},
		{"raw slash and at in password", "https://user:a/b@c@host/x", "https://host/x"},
		{"raw question mark in password", "https://user:a?b@host/x", "https://host/x"},
		{"raw hash in password", "ssh://user:a#b@host/x", "ssh://host/x"},
		{"at in path after host:port", "https://host:8443/a/b@c/x", "https://host:8443/a/b@c/x"},
		{"IPv6 host with at in path", "https://[::1]/a@b", "https://[::1]/a@b"},
		{"IPv6 host with user", "https://u:p@[::1]:8080/x", "https://[::1]:8080/x"},
		{"digest after host:port", "oci://registry:5000/fleet/env@sha256:ab12", "oci://registry:5000/fleet/env@sha256:ab12"},
		{"empty port, at later", "https://user:/pw@host/x", "https://host/x"},
		{"encoded slash in password", "https://user:a%2Fb@host/x", "https://host/x"},
		{"URL in a sentence after another", "from http://h/x to https://u:a/b@h2/y.", "from http://h/x to https://h2/y."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redact.URLs(tt.in); got != tt.want {
				t.Errorf("URLs(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzRedact builds a URL from random parts and checks that its password
// is gone. A password holding white space, a quote or an angle bracket
// ends the URL (see URLs) and is not tried; nor is a user name holding one
// of those or "/", "?", "#" or brackets (an IPv6 literal's). Nor is a password of digits followed by a
// raw "/", "?" or "#": "user:123/x@host" reads as host "user", port 123,
// as any URL parser reads it; nor one with a raw "@" before a raw "/",
// "?" or "#", whose user information ends at that "@" as for git.
func FuzzRedact(f *testing.F) {
	f.Add("https", "user", "p@ss", "host", "/x.git")
	f.Add("ssh", "git", "a:b@c", "host:22", "")
	f.Add("http", "", "tok%40en", "h", "?q=1")
	f.Fuzz(func(t *testing.T, scheme, user, password, host, path string) {
		if password == "" || strings.ContainsAny(user, "/?#:[]\"'<>`") || strings.ContainsAny(password, "\"'<>`") || strings.ContainsAny(host, "/?#@\"'<>`") ||
			strings.IndexFunc(user+password+host, isSpace) >= 0 || host == "" {
			return // not an input this property is about
		}
		if path != "" && !strings.ContainsAny(path[:1], "/?#") {
			path = "/" + path
		}
		if strings.ContainsAny(password, "/?#") && strings.Contains(path, "@") {
			return // the password's user information runs to the path's "@"
		}
		if i := strings.IndexAny(password, "/?#"); i > 0 && strings.Contains(password[:i], "@") {
			return // "u:a@h/b@host" reads as user "u", password "a", host "h"
		}
		if digits := strings.TrimLeft(password, "0123456789"); digits != password && strings.ContainsAny(digits[:min(1, len(digits))], "/?#") {
			return // a port and a path
		}
		if scheme == "" || !validScheme(scheme) {
			scheme = "https"
		}
		prefix := "say " + scheme + "://"
		rest := host + path + " done"
		if strings.Contains(prefix+rest, password) {
			return // the password is also a part that is not secret
		}
		in := prefix + user + ":" + password + "@" + rest
		if got := redact.URLs(in); strings.Contains(got, password) {
			t.Errorf("URLs(%q) = %q, holds the password", in, got)
		}
	})
}

func isSpace(r rune) bool {
	return strings.ContainsRune(" \t\n\r\v\f\u0085\u00a0", r) || r == 0x1680 || (r >= 0x2000 && r <= 0x200a) || r == 0x2028 || r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000
}

func validScheme(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}
