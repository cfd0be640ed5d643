package gitserver

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// HTTPOptions configure a smart HTTP server.
type HTTPOptions struct {
	// Username and Password, when Username is set, are required as basic
	// auth on every request.
	Username, Password string
	// Tokens, when set, requires a valid access token on every request,
	// checked as a forge checks it.
	Tokens *Tokens
	// TLS serves https with httptest's certificate; its CA is written to
	// HTTPServer.CAFile.
	TLS bool
}

// Fault sees each request before git does. It returns true when it has
// answered the request itself (an error status, a cut), false to let git
// answer. It may block, but must return when r.Context() is done.
type Fault func(w http.ResponseWriter, r *http.Request) bool

// HTTPServer is git http-backend behind net/http/cgi in the test process.
type HTTPServer struct {
	root *Root
	srv  *httptest.Server
	// BaseURL is http(s)://127.0.0.1:PORT.
	BaseURL string
	// CAFile is the PEM file of the server's CA when TLS is on.
	CAFile string
	// Addr is the server's host:port.
	Addr string

	requests atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	fault    Fault
	paths    []string
}

// ServeHTTP starts git http-backend for every repository of r.
func (r *Root) ServeHTTP(o HTTPOptions) *HTTPServer {
	r.t.Helper()
	git := mustLookPath(r.t, "git")
	h := &HTTPServer{root: r}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Dir:  r.Dir,
		Env: append(gitEnv(filepath.Dir(r.Dir)),
			"GIT_PROJECT_ROOT="+r.Dir,
			"GIT_HTTP_EXPORT_ALL=1",
			// Anonymous pushes are refused unless http.receivepack is on;
			// it is on in every repository that Create makes.
			"REMOTE_USER=outpost-test",
		),
		Stderr: io.Discard,
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.requests.Add(1)
		h.mu.Lock()
		h.paths = append(h.paths, req.Method+" "+req.URL.RequestURI())
		fault := h.fault
		h.mu.Unlock()
		cw := &countingWriter{ResponseWriter: w, n: &h.bytes}
		if req.Body != nil {
			req.Body = &countingReader{ReadCloser: req.Body, n: &h.bytes}
		}
		if o.Username != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != o.Username || p != o.Password {
				cw.Header().Set("WWW-Authenticate", `Basic realm="outpost-test"`)
				http.Error(cw, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		if o.Tokens != nil && !o.Tokens.Check(req) {
			cw.Header().Set("WWW-Authenticate", `Basic realm="outpost-test"`)
			http.Error(cw, "authentication required", http.StatusUnauthorized)
			return
		}
		if fault != nil && fault(cw, req) {
			return
		}
		backend.ServeHTTP(cw, req)
	})
	if o.TLS {
		h.srv = httptest.NewTLSServer(handler)
		ca := filepath.Join(r.t.TempDir(), "ca.pem")
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw})
		if err := os.WriteFile(ca, b, 0o644); err != nil {
			r.t.Fatalf("gitserver: %v", err)
		}
		h.CAFile = ca
	} else {
		h.srv = httptest.NewServer(handler)
	}
	h.BaseURL = h.srv.URL
	h.Addr = strings.TrimPrefix(strings.TrimPrefix(h.srv.URL, "https://"), "http://")
	r.t.Cleanup(h.Close)
	return h
}

// URL returns the repository name's URL on this server.
func (h *HTTPServer) URL(name string) string { return h.BaseURL + "/" + name + ".git" }

// Requests returns how many requests the server saw since it started or
// since Reset.
func (h *HTTPServer) Requests() int64 { return h.requests.Load() }

// Bytes returns the bytes of request and response bodies since it started or
// since Reset.
func (h *HTTPServer) Bytes() int64 { return h.bytes.Load() }

// Paths returns "METHOD URI" of every request since it started or since
// Reset.
func (h *HTTPServer) Paths() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.paths...)
}

// Reset zeroes the counters.
func (h *HTTPServer) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests.Store(0)
	h.bytes.Store(0)
	h.paths = nil
}

// SetFault installs f (nil removes it).
func (h *HTTPServer) SetFault(f Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fault = f
}

// Close stops the server; requests in flight are cut. It is safe to call
// more than once (a test stops the server on purpose; t.Cleanup calls it
// again).
func (h *HTTPServer) Close() {
	h.srv.CloseClientConnections()
	h.srv.Close()
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	r.n.Add(int64(n))
	return n, err
}
