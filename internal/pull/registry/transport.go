package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// ErrPlainHTTP is matched by errors.Is when a registry that is not on the
// loopback interface would be reached over plain HTTP: like Docker, Outpost
// speaks plain HTTP only to 127.0.0.1, ::1 and localhost.
var ErrPlainHTTP = errors.New("plain HTTP to a registry that is not on loopback")

// Retry tunes the retries of each registry request.
type Retry struct {
	// Max is the number of retries after the first attempt; 0 means 4 and a
	// negative value means none.
	Max int
	// WaitMin is the first backoff; each retry doubles it, with jitter. 0
	// means 500ms.
	WaitMin time.Duration
	// Timeout bounds each attempt, from the request until its body is
	// read, so that a registry that accepts a connection and stalls fails
	// the attempt instead of the poll hanging; 0 means 30s.
	Timeout time.Duration
	// WaitMax caps one wait, and the Retry-After of a 429 that is waited
	// for: a registry that asks for a longer pause is not retried now, and
	// the registry is not polled again before the time it asked for. 0
	// means 30s.
	WaitMax time.Duration
}

func (r Retry) withDefaults() Retry {
	switch {
	case r.Max == 0:
		r.Max = 4
	case r.Max < 0:
		r.Max = 0
	}
	if r.WaitMin <= 0 {
		r.WaitMin = 500 * time.Millisecond
	}
	if r.WaitMax <= 0 {
		r.WaitMax = 30 * time.Second
	}
	if r.Timeout <= 0 {
		r.Timeout = 30 * time.Second
	}
	if r.WaitMax < r.WaitMin {
		r.WaitMax = r.WaitMin
	}
	return r
}

// throttle remembers, per registry host, until when a registry asked (with
// Retry-After on a 429 or 503) not to be asked again.
type throttle struct {
	mu    sync.Mutex
	until map[string]time.Time
	now   func() time.Time
}

func (t *throttle) note(host string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := t.now().Add(d)
	if at.After(t.until[host]) {
		t.until[host] = at
	}
}

// retryAt returns when host may be asked again, or the zero time.
func (t *throttle) retryAt(host string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.until[host]
	if ok && !at.After(t.now()) {
		delete(t.until, host)
		return time.Time{}
	}
	return at
}

// newTransport builds the transport of every registry request: base (HTTP
// only to loopback) under retryablehttp, which retries network errors and
// 5xx with exponential backoff and jitter, and 429 after its Retry-After.
func newTransport(base http.RoundTripper, r Retry, th *throttle, log *slog.Logger) http.RoundTripper {
	r = r.withDefaults()
	c := &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: loopbackHTTPOnly{base},
			Timeout:   r.Timeout,
			// Redirects are the outer client's business (go-containerregistry
			// checks where they lead).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Logger:       nil,
		RetryWaitMin: r.WaitMin,
		RetryWaitMax: r.WaitMax,
		RetryMax:     r.Max,
		CheckRetry:   checkRetry(r.WaitMax),
		Backoff:      backoff,
		// The last response goes up as it is, so that go-containerregistry
		// reports the registry's own error and status code.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		RequestLogHook: func(_ retryablehttp.Logger, req *http.Request, attempt int) {
			if attempt > 0 {
				log.Debug("retrying registry request", "method", req.Method, "host", req.URL.Host, "path", req.URL.Path, "attempt", attempt)
			}
		},
		ResponseLogHook: func(_ retryablehttp.Logger, resp *http.Response) {
			if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
				return
			}
			if d, ok := retryAfter(resp); ok {
				th.note(resp.Request.URL.Host, d)
			}
		},
	}
	return &retryablehttp.RoundTripper{Client: c}
}

// loopbackHTTPOnly refuses plain HTTP to any host but loopback, whatever
// go-containerregistry's own fallbacks would try (it also falls back to HTTP
// for private addresses).
type loopbackHTTPOnly struct{ next http.RoundTripper }

func (l loopbackHTTPOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Hostname()) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%s: %w", req.URL.Host, ErrPlainHTTP)
	}
	return l.next.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkRetry(maxWait time.Duration) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil {
			return retryableError(err), nil
		}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			// A registry that asks for a longer pause than we wait in one
			// poll gets it: the throttle keeps the next polls away.
			if d, ok := retryAfter(resp); ok && d > maxWait {
				return false, nil
			}
			return true, nil
		case resp.StatusCode == http.StatusServiceUnavailable:
			if d, ok := retryAfter(resp); ok && d > maxWait {
				return false, nil
			}
			return true, nil
		case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
			return true, nil
		}
		return false, nil
	}
}

// retryableError tells network trouble, which may pass, from errors that a
// retry cannot fix: certificates, a TLS handshake with a plain HTTP server
// (go-containerregistry tries HTTPS first even on loopback), refused HTTP.
func retryableError(err error) bool {
	var (
		rh     tls.RecordHeaderError
		cv     *tls.CertificateVerificationError
		ua     x509.UnknownAuthorityError
		hn     x509.HostnameError
		ci     x509.CertificateInvalidError
		errDNS *net.DNSError
	)
	switch {
	case errors.Is(err, ErrPlainHTTP), errors.Is(err, http.ErrSchemeMismatch),
		errors.As(err, &rh), errors.As(err, &cv), errors.As(err, &ua),
		errors.As(err, &hn), errors.As(err, &ci):
		return false
	case errors.As(err, &errDNS):
		return errDNS.IsTemporary || errDNS.IsTimeout
	}
	return true
}

// backoff waits what a 429 or 503 asks in Retry-After, or else WaitMin
// doubled per attempt, capped at WaitMax, with jitter: a random wait in the
// upper half, so that hosts that failed together do not retry together.
func backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retryAfter(resp); ok {
			return min(d, hi)
		}
	}
	d := hi
	if attempt < 32 {
		if e := lo << attempt; e > 0 && e < hi {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// retryAfter parses Retry-After in seconds or as an HTTP date.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := time.Until(t)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}
