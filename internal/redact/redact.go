// Package redact removes credentials from URLs in free text: error
// messages, log lines and notes. It imports nothing of Outpost's, so every
// package can use it.
package redact

import (
	"regexp"
	"strings"
)

// scheme matches where a URL starts: its scheme and "://".
var scheme = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://")

// URLs removes the user information of every URL in s, whatever the scheme:
// "https://u:secret@host/x.git" and "https://TOKEN@host/x.git" both become
// "https://host/x.git", and "ssh://git@host/x.git" becomes
// "ssh://host/x.git". A forge's access token is often the user name, so a
// user name is treated as a secret too. An scp-like address
// ("git@host:path") has no scheme and holds no password; it is left as it
// is.
//
// The rule is git's: the authority starts after "scheme://" and ends at the
// first "/", "?" or "#"; the user information is everything in it up to its
// LAST "@". So a raw "@" or ":" in a password is hidden with the rest of
// it, and so is a percent-encoded one. A URL ends at white space, a quote,
// an angle bracket or a backquote, which end a URL quoted in a message.
//
// A raw "/", "?" or "#" in a password ends git's authority early, at
// "user:pass", which is no host:port (its port is empty, not a number, or
// holds another ":"). Such an
// authority is taken as the start of user information that runs to the
// last "@" of the URL: hiding too much of a malformed URL is better than
// showing part of a password. What stays ambiguous is shown as git reads
// it: a password of digits before a raw "/" (a port), or with a raw "@"
// before a raw "/" (the end of the user information).
func URLs(s string) string {
	var b strings.Builder
	for {
		loc := scheme.FindStringIndex(s)
		if loc == nil {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:loc[1]])
		s = s[loc[1]:]
		s = s[userInfoEnd(s):]
	}
}

// userInfoEnd returns how many bytes of rest, the text after "scheme://",
// are user information and its "@" (0 when there is none).
func userInfoEnd(rest string) int {
	url := rest
	if i := strings.IndexAny(url, " \t\n\r\v\f\"'<>`"); i >= 0 {
		url = url[:i]
	}
	auth := url
	if i := strings.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	end := 0
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		end = at + 1
	}
	if hostPort(auth[end:]) || len(auth) == len(url) {
		return end
	}
	if at := strings.LastIndexByte(url, '@'); at >= 0 {
		return at + 1
	}
	return end
}

// hostPort reports whether s is a host with an optional port: a name
// without ":", or an IPv6 literal in brackets, then ":" and a number.
func hostPort(s string) bool {
	name, port := s, ""
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 || strings.Count(s[1:i], ":") < 2 || strings.Trim(s[1:i], "0123456789abcdefABCDEF:.%") != "" {
			return false
		}
		name, port = s[:i+1], s[i+1:]
		if port == "" {
			return true
		}
		if port[0] != ':' {
			return false
		}
		port = port[1:]
	} else if n, p, found := strings.Cut(s, ":"); found {
		name, port = n, p
	} else {
		return true
	}
	return name != "" && port != "" && strings.Trim(port, "0123456789") == ""
}
