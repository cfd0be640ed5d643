package gitserver

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a loopback port that forwards to one address and
// can cut or slow what the server sends back.
type Proxy struct {
	// Addr is the proxy's 127.0.0.1:PORT.
	Addr   string
	target string
	*connSet

	cutAfter atomic.Int64 // bytes from server to client per connection; 0: never
	cutEpoch atomic.Int64 // bumped by CutAfter: open connections count again
	delay    atomic.Int64 // nanoseconds before each chunk from the server
	bytes    atomic.Int64 // bytes forwarded, both ways
}

// NewProxy starts a proxy to target (host:port). It stops in t.Cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gitserver: proxy: %v", err)
	}
	p := &Proxy{Addr: l.Addr().String(), target: target, connSet: newConnSet(l)}
	p.connSet.serve(p.serve)
	t.Cleanup(p.Close)
	return p
}

// CutAfter makes each connection close after the server has sent n bytes
// through it, counted from now for connections already open (kept-alive
// HTTP connections too); 0 turns cutting off.
func (p *Proxy) CutAfter(n int64) {
	p.cutAfter.Store(n)
	p.cutEpoch.Add(1)
}

// Delay holds each chunk from the server for d; 0 turns delaying off.
func (p *Proxy) Delay(d time.Duration) { p.delay.Store(int64(d)) }

// Bytes returns the bytes forwarded both ways since the proxy started or
// since ResetBytes: what a client and a server sent each other.
func (p *Proxy) Bytes() int64 { return p.bytes.Load() }

// ResetBytes zeroes the byte counter.
func (p *Proxy) ResetBytes() { p.bytes.Store(0) }

// WaitIdle waits until no connection is open, for up to ten seconds, so
// that Bytes holds everything of the exchanges that ended, their last
// words after the answer too; it reports whether the proxy became idle.
// (Bytes are counted before they are passed on, so a request and answer
// exchange over a kept-alive connection is whole in Bytes once the answer
// has been read.)
func (p *Proxy) WaitIdle() bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.open)
		p.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countWriter counts what it writes into n, before it writes it: the
// bytes of a request are counted before its answer can arrive.
type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return c.w.Write(b)
}

// Conns returns how many connections the proxy has accepted.
func (p *Proxy) Conns() int64 { return p.accepted.Load() }

// Close stops accepting, cuts every open connection and waits for the
// proxy's goroutines. It is safe to call more than once.
func (p *Proxy) Close() { p.connSet.close() }

func (p *Proxy) serve(client net.Conn) {
	defer client.Close()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	defer p.untrack(server)

	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		_, _ = io.Copy(countWriter{server, &p.bytes}, client)
		// The client is done sending: pass the half-close on and let the
		// server finish its answer.
		if tc, ok := server.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	p.copyBack(client, server)
	// The answer ended, was cut or failed: end both sides.
	client.Close()
	server.Close()
	<-upDone
}

// copyBack copies from the server to the client, delaying each chunk and
// stopping when the cut limit is reached.
func (p *Proxy) copyBack(client, server net.Conn) {
	buf := make([]byte, 16<<10)
	var sent int64
	epoch := p.cutEpoch.Load()
	for {
		n, err := server.Read(buf)
		if e := p.cutEpoch.Load(); e != epoch {
			epoch, sent = e, 0
		}
		limit := p.cutAfter.Load()
		if n > 0 {
			if d := time.Duration(p.delay.Load()); d > 0 {
				select {
				case <-p.stop:
					return
				case <-time.After(d):
				}
			}
			chunk := buf[:n]
			if limit > 0 && sent+int64(n) >= limit {
				chunk = buf[:limit-sent]
			}
			p.bytes.Add(int64(len(chunk))) // before the client can see it
			w, werr := client.Write(chunk)
			sent += int64(w)
			if werr != nil || (limit > 0 && sent >= limit) {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := client.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}
