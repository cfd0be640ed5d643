// Package redact removes credentials from URLs in free text: error
// messages, log lines and notes. It imports nothing of Outpost's, so every
// package can use it.
package redact

import "regexp"

// userInfo matches a URL's scheme and its user information. The rule is
// git's: the authority starts after "scheme://" and ends at the first "/",
// "?" or "#" (or at white space, a quote or an angle bracket, which end a URL
// quoted in a message); the user information is everything in it up to its
// LAST "@". So a raw "@" or ":" in a password is hidden with the rest of it,
// and so is a percent-encoded one. A raw "/", "?" or "#" in a password
// cannot be told from the path and ends the authority, as it does for git.
var userInfo = regexp.MustCompile("([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\\s\"'<>`]*@")

// URLs removes the user information of every URL in s, whatever the scheme:
// "https://u:secret@host/x.git" and "https://TOKEN@host/x.git" both become
// "https://host/x.git", and "ssh://git@host/x.git" becomes
// "ssh://host/x.git". A forge's access token is often the user name, so a
// user name is treated as a secret too. An scp-like address
// ("git@host:path") has no scheme and holds no password; it is left as it
// is.
func URLs(s string) string {
	return userInfo.ReplaceAllString(s, "$1")
}
