package gitserver

import (
	"net/http"
	"strings"
	"sync"
)

// Tokens is a forge's store of access tokens, checked as Gitea checks them
// on Git over HTTP: "Authorization: token T" (or "Bearer T"), or basic auth
// whose password is empty or "x-oauth-basic" (the user name is the token),
// or else whose password is the token. A request whose token is not valid
// falls back, on the forge, to a password login of its basic auth user
// name; Tokens records those user names, so a test can assert that a
// client never made the forge try a password login.
type Tokens struct {
	mu       sync.Mutex
	valid    map[string]bool
	revoked  map[string]bool
	accepted map[string]int
	logins   []string
	users    []string
}

// NewTokens returns a store holding the valid tokens toks.
func NewTokens(toks ...string) *Tokens {
	t := &Tokens{valid: map[string]bool{}, revoked: map[string]bool{}, accepted: map[string]int{}}
	for _, tok := range toks {
		t.valid[tok] = true
	}
	return t
}

// Add makes tok valid.
func (t *Tokens) Add(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.valid[tok] = true
	delete(t.revoked, tok)
}

// Revoke makes tok invalid from the next request on.
func (t *Tokens) Revoke(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.valid, tok)
	t.revoked[tok] = true
}

// Accepted returns how many requests tok authenticated.
func (t *Tokens) Accepted(tok string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.accepted[tok]
}

// PasswordLogins returns the user names of the password logins that
// requests with no valid token fell back to, in order. A token sent as the
// user name is not listed: it names no user.
func (t *Tokens) PasswordLogins() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.logins...)
}

// Users returns the basic auth user name of every request, in order, with
// tokens replaced by "<token>".
func (t *Tokens) Users() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.users...)
}

// Check reports whether r carries a valid token, and records the request.
func (t *Tokens) Check(r *http.Request) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && (strings.EqualFold(scheme, "token") || strings.EqualFold(scheme, "bearer")) {
		return t.accept(tok)
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	tok := pass
	if pass == "" || pass == "x-oauth-basic" {
		tok = user
	}
	if t.valid[user] || t.revoked[user] {
		t.users = append(t.users, "<token>")
	} else {
		t.users = append(t.users, user)
	}
	if t.accept(tok) {
		return true
	}
	if !t.valid[user] && !t.revoked[user] {
		t.logins = append(t.logins, user)
	}
	return false
}

func (t *Tokens) accept(tok string) bool {
	if !t.valid[tok] {
		return false
	}
	t.accepted[tok]++
	return true
}
