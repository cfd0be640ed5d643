package pull

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/outpost-gitops/outpost/internal/redact"
)

// Permanent errors: retrying at once does not help; they are reported and
// tried again only at the normal interval. Test with errors.Is.
var (
	// ErrConfig: the source's configuration cannot work (a missing key
	// file, an unknown URL scheme).
	ErrConfig = errors.New("invalid source configuration")
	// ErrAuth: the server refused the credentials, or wanted some.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey: the SSH server's host key is not the one in known_hosts.
	// ErrHostKeyUnknown and ErrHostKeyChanged match it too.
	ErrHostKey = errors.New("ssh host key not trusted")
	// ErrHostKeyUnknown: known_hosts has no key for the host.
	ErrHostKeyUnknown = fmt.Errorf("%w: host unknown to known_hosts", ErrHostKey)
	// ErrHostKeyChanged: known_hosts has another key for the host.
	ErrHostKeyChanged = fmt.Errorf("%w: host key changed (does not match known_hosts)", ErrHostKey)
	// ErrTLS: the server's certificate is not trusted.
	ErrTLS = errors.New("tls certificate not trusted")
	// ErrRepoNotFound: the server has no such repository.
	ErrRepoNotFound = errors.New("repository not found")
	// ErrBranchNotFound: the repository has no such branch.
	ErrBranchNotFound = errors.New("branch not found")
	// ErrUnverified: the commit is unsigned, or not signed by a trusted key,
	// or its signature does not match its content.
	ErrUnverified = errors.New("commit not verified")
)

// Transient errors: the network or the server failed; retry with backoff.
var (
	// ErrUnreachable: the server could not be reached or answered with a
	// server error.
	ErrUnreachable = errors.New("server unreachable")
	// ErrTimeout: the operation ran out of time.
	ErrTimeout = errors.New("timed out")
)

// Local failures.
var (
	// ErrCorrupt: the local clone is damaged. Poll clones it again.
	ErrCorrupt = errors.New("local clone corrupt")
	// ErrCommitNotFound: the commit is not in the local clone.
	ErrCommitNotFound = errors.New("commit not found")
	// ErrNoGoodCommit: the tip cannot be used and there has never been a
	// good commit to fall back to.
	ErrNoGoodCommit = errors.New("no good commit to converge")
)

var permanent = []error{ErrConfig, ErrAuth, ErrHostKey, ErrTLS, ErrRepoNotFound, ErrBranchNotFound, ErrUnverified, ErrTooLarge}

// IsPermanent reports whether err is a failure that retrying soon will not
// cure: authentication, host key, certificate, missing repository or branch,
// an unverified commit, a commit too large, or a bad configuration.
func IsPermanent(err error) bool {
	for _, p := range permanent {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}

// IsTransient reports whether err is worth retrying with backoff: a network
// failure, a timeout, a server error or a damaged local clone. A cancelled
// context is neither transient nor permanent.
func IsTransient(err error) bool {
	if err == nil || IsPermanent(err) || errors.Is(err, context.Canceled) {
		return false
	}
	return true
}

// Error is a failed operation on a source. Its text never holds credentials.
type Error struct {
	// Op is what failed: "ls-remote", "fetch", "open", "verify"...
	Op string
	// URL is the source's URL without user info.
	URL string
	// Kind is one of the sentinel errors above, or nil.
	Kind error
	// Err is the cause.
	Err error
	// Commit is the commit that the error refuses, when it is about one:
	// the tip whose fetch passed a bound (ErrTooLarge).
	Commit string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.URL != "" {
		b.WriteString(" " + e.URL)
	}
	if e.Kind != nil {
		b.WriteString(": " + e.Kind.Error())
	}
	if e.Err != nil {
		cause := strings.TrimRight(redact.URLs(e.Err.Error()), ": \n")
		// go-git often repeats its sentinel: "x: x".
		if a, rest, ok := strings.Cut(cause, ": "); ok && strings.TrimSpace(rest) == a {
			cause = a
		}
		if e.Kind == nil || cause != e.Kind.Error() {
			b.WriteString(": " + cause)
		}
	}
	return b.String()
}

// Unwrap returns the kind and the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// classify returns the sentinel kind of a go-git or network error, or nil
// when it knows none.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range append(permanent, ErrUnreachable, ErrTimeout, ErrCorrupt) {
		if errors.Is(err, k) {
			return nil // already classified
		}
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		httpErr          *githttp.Err
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod):
		return ErrAuth
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return ErrRepoNotFound
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return ErrBranchNotFound
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &verification):
		return ErrTLS
	case errors.As(err, &httpErr):
		switch code := httpErr.StatusCode(); {
		case code == http.StatusUnauthorized, code == http.StatusForbidden:
			return ErrAuth
		case code == http.StatusNotFound:
			return ErrRepoNotFound
		default:
			return ErrUnreachable
		}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unable to authenticate"):
		// x/crypto/ssh has no error type for a refused key.
		return ErrAuth
	case strings.Contains(msg, "x509: "), strings.Contains(msg, "tls: failed to verify"):
		return ErrTLS
	case strings.Contains(msg, "repository not found"),
		strings.Contains(msg, "does not appear to be a git repository"),
		strings.Contains(msg, "not exported"):
		return ErrRepoNotFound
	}
	return ErrUnreachable
}

// wrapErr returns err as an *Error of op on the repository's URL, classified.
func (r *Repo) wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	return &Error{Op: op, URL: r.redacted, Kind: classify(err), Err: err}
}
