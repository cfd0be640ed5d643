// Package gitfront serves bare Git repositories over smart HTTP with
// `git http-backend` behind net/http/cgi, and counts what the server sees:
// requests, bytes in and out, and the CPU time of the http-backend
// processes. It is for Outpost's benchmarks only, on loopback.
package gitfront

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

// Server is a counting git http-backend front.
type Server struct {
	// Addr is the host:port it listens on.
	Addr string

	srv      *http.Server
	done     chan struct{}
	requests atomic.Int64
	in, out  atomic.Int64
	base     Stats
}

// Stats are the server's counters.
type Stats struct {
	Requests int64 `json:"requests"`
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// BackendCPU is the user and system time of the finished http-backend
	// processes, in seconds.
	BackendCPU float64 `json:"backend_cpu_s"`
	// FrontCPU is the user and system time of this process, in seconds:
	// the HTTP front, and whatever else runs in it.
	FrontCPU float64 `json:"front_cpu_s"`
}

// Start serves every repository under root on addr (such as
// 127.0.0.1:0). With extra, a request for /_stats answers the counters as
// JSON and /_reset zeroes them.
func Start(root, addr string, extra http.Handler) (*Server, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, err
	}
	s := &Server{done: make(chan struct{})}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Dir:  root,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + root},
	}
	mux := http.NewServeMux()
	if extra != nil {
		mux.Handle("/_stats", extra)
		mux.Handle("/_reset", extra)
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.Body != nil {
			r.Body = countReader{r.Body, &s.in}
		}
		backend.ServeHTTP(countWriter{w, &s.out}, r)
	}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.Addr = ln.Addr().String()
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return s, nil
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// Stats returns the counters since Start or the last Reset.
func (s *Server) Stats() Stats {
	now := s.raw()
	return Stats{
		Requests:   now.Requests - s.base.Requests,
		BytesIn:    now.BytesIn - s.base.BytesIn,
		BytesOut:   now.BytesOut - s.base.BytesOut,
		BackendCPU: now.BackendCPU - s.base.BackendCPU,
		FrontCPU:   now.FrontCPU - s.base.FrontCPU,
	}
}

// Reset makes the counters start again from zero. It must not run
// concurrently with itself or Stats.
func (s *Server) Reset() { s.base = s.raw() }

func (s *Server) raw() Stats {
	return Stats{
		Requests:   s.requests.Load(),
		BytesIn:    s.in.Load(),
		BytesOut:   s.out.Load(),
		BackendCPU: rusage(syscall.RUSAGE_CHILDREN),
		FrontCPU:   rusage(syscall.RUSAGE_SELF),
	}
}

// rusage returns user plus system seconds of who.
func rusage(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func (w countWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type countReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r countReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	r.n.Add(int64(n))
	return n, err
}
