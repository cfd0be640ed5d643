package pull

import (
	"fmt"
	"net/http"
	"sync"
)

// fileAuth sends a secret kept in a file by HTTP basic authentication, and
// reads the file again before each request, so that a token or password
// written to the file takes effect at the next request, without a reload.
// go-git calls SetAuth, which cannot fail: when the file cannot be read or
// is empty, the last secret read is sent again, and the server's refusal
// (if it is stale) is what the caller sees and reports.
type fileAuth struct {
	path string
	// user is the basic auth user name. For a token without one, the
	// token is the user name and the password is empty: a server that
	// takes tokens so (Gitea) then never mistakes the request for a
	// password login of a user named after the agent.
	user        string
	tokenAsUser bool

	mu   sync.Mutex
	last string
}

var _ interface {
	SetAuth(*http.Request)
	Name() string
	String() string
} = (*fileAuth)(nil)

// newFileAuth reads path once, so that a missing or empty file is a
// configuration error at start rather than a 401 later. token says the file
// holds an access token (sent as the user name when user is empty), not a
// password.
func newFileAuth(path, user string, token bool) (*fileAuth, error) {
	s, err := readSecret(path)
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, fmt.Errorf("%w: credential file %s is empty", ErrConfig, path)
	}
	return &fileAuth{path: path, user: user, tokenAsUser: token && user == "", last: s}, nil
}

// secret returns the file's content, or the last content read when the
// file cannot be read now (being rewritten, or removed by mistake).
func (a *fileAuth) secret() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, err := readSecret(a.path); err == nil && s != "" {
		a.last = s
	}
	return a.last
}

// SetAuth implements go-git's http.AuthMethod.
func (a *fileAuth) SetAuth(r *http.Request) {
	s := a.secret()
	if a.tokenAsUser {
		r.SetBasicAuth(s, "")
		return
	}
	r.SetBasicAuth(a.user, s)
}

// Name implements go-git's transport.AuthMethod.
func (a *fileAuth) Name() string { return "http-basic-auth" }

// String never shows the secret: go-git may print an AuthMethod.
func (a *fileAuth) String() string {
	if a.tokenAsUser {
		return fmt.Sprintf("%s - token from %s", a.Name(), a.path)
	}
	return fmt.Sprintf("%s - %s:<from %s>", a.Name(), a.user, a.path)
}
