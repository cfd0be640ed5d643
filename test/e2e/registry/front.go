package registry

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FrontOptions configure a Front.
type FrontOptions struct {
	// Username and Password, when set, make the front demand HTTP basic
	// auth on every request (401 with a Basic challenge otherwise).
	Username, Password string
}

// Front is a reverse proxy in front of a Registry that counts requests and
// injects faults. It listens on its own loopback port.
type Front struct {
	host string
	opts FrontOptions

	mu       sync.Mutex
	requests int
	byPath   map[string]int
	failN    int
	status   int
	retry    time.Duration
	fault    func(w http.ResponseWriter, r *http.Request) bool
}

// Front starts a Front before r, closed in t.Cleanup.
func (r *Registry) Front(t testing.TB, opts FrontOptions) *Front {
	t.Helper()
	target, err := url.Parse("http://" + r.host)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	f := &Front{opts: opts, byPath: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if f.intercept(w, req) {
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	f.host = trimScheme(srv.URL)
	return f
}

// Host returns the front's "127.0.0.1:PORT".
func (f *Front) Host() string { return f.host }

// Ref returns HOST/repo:tag through the front.
func (f *Front) Ref(repo, tag string) string { return f.host + "/" + repo + ":" + tag }

// FailNext answers the next n requests with status (e.g. 500 or 429), with a
// Retry-After header of retryAfter in whole seconds when it is positive.
func (f *Front) FailNext(n, status int, retryAfter time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failN, f.status, f.retry = n, status, retryAfter
}

// SetFault installs fn, called for every request before it is forwarded;
// when fn returns true it has answered and the request is not forwarded.
// nil removes it.
func (f *Front) SetFault(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fn
}

// Requests returns how many requests the front received since the last
// Reset, faulted ones included.
func (f *Front) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// RequestsTo returns how many requests had the given URL path.
func (f *Front) RequestsTo(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byPath[path]
}

// Reset zeroes the counters and removes pending faults.
func (f *Front) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests, f.byPath, f.failN, f.fault = 0, map[string]int{}, 0, nil
}

func (f *Front) intercept(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	f.requests++
	f.byPath[r.URL.Path]++
	fault := f.fault
	fail := f.failN > 0
	status, retry := f.status, f.retry
	if fail {
		f.failN--
	}
	f.mu.Unlock()

	if f.opts.Username != "" || f.opts.Password != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != f.opts.Username || p != f.opts.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="outpost-test"`)
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return true
		}
	}
	if fault != nil && fault(w, r) {
		return true
	}
	if fail {
		if retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		}
		http.Error(w, http.StatusText(status), status)
		return true
	}
	return false
}
