package gitserver

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Relay is a TCP relay that adds latency: every chunk read from either side
// is written to the other side a fixed delay after it was read, in order,
// while reading goes on. It stands in for a long link where the kernel
// cannot delay packets itself (no netem qdisc): TCP still sees its own
// losses, and every request and answer arrives late.
type Relay struct {
	// Addr is the address the relay listens on.
	Addr string
	*connSet

	dial  func(context.Context) (net.Conn, error)
	delay atomic.Int64 // nanoseconds each chunk is held, each direction
}

// NewRelay relays the connections that l accepts to the connections that
// dial makes, holding each chunk for delay in each direction. It takes l
// over and stops in t.Cleanup.
func NewRelay(t testing.TB, l net.Listener, dial func(context.Context) (net.Conn, error), delay time.Duration) *Relay {
	t.Helper()
	r := &Relay{Addr: l.Addr().String(), connSet: newConnSet(l), dial: dial}
	r.delay.Store(int64(delay))
	r.connSet.serve(r.serve)
	t.Cleanup(r.Close)
	return r
}

// SetDelay changes the delay for the chunks read from now on.
func (r *Relay) SetDelay(d time.Duration) { r.delay.Store(int64(d)) }

// Conns returns how many connections the relay has accepted.
func (r *Relay) Conns() int64 { return r.accepted.Load() }

// Close stops accepting, cuts every open connection and waits for the
// relay's goroutines. It is safe to call more than once.
func (r *Relay) Close() { r.connSet.close() }

func (r *Relay) serve(client net.Conn) {
	defer client.Close()
	if !r.track(client) {
		return
	}
	defer r.untrack(client)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	server, err := r.dial(ctx)
	cancel()
	if err != nil {
		return
	}
	defer server.Close()
	if !r.track(server) {
		return
	}
	defer r.untrack(server)

	var both sync.WaitGroup
	both.Add(2)
	pipe := func(dst, src net.Conn) {
		defer both.Done()
		if !r.pipe(dst, src) {
			// A side failed: the connection is over in both directions.
			client.Close()
			server.Close()
		}
	}
	go pipe(server, client)
	go pipe(client, server)
	both.Wait()
}

// chunk is data read at some time, or the end of the stream (data nil).
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst with the delay, and passes src's end on, delayed
// like the data before it, as a half-close of dst. It reports whether the
// stream ended cleanly.
func (r *Relay) pipe(dst, src net.Conn) bool {
	q := make(chan chunk, 256)
	var readErr error // set before the last chunk is queued
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			due := time.Now().Add(time.Duration(r.delay.Load()))
			if n > 0 {
				select {
				case q <- chunk{data: buf[:n], due: due}:
				case <-r.stop:
					return
				}
			}
			if err != nil {
				readErr = err
				select {
				case q <- chunk{due: due}:
				case <-r.stop:
				}
				return
			}
		}
	}()
	for c := range q {
		if wait := time.Until(c.due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.stop:
				return false
			}
		}
		if c.data == nil {
			if !errors.Is(readErr, io.EOF) {
				return false
			}
			if tc, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = tc.CloseWrite()
			}
			return true
		}
		if _, err := dst.Write(c.data); err != nil {
			// Close src so that the reader ends, and drain it.
			src.Close()
			for range q {
			}
			return false
		}
	}
	return false
}
