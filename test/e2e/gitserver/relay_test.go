package gitserver

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestRelayDelaysBothWays sends through a relay to an echo server: the
// answer comes whole, in order, no sooner than the delay both ways, and the
// client's half-close reaches the server, whose end reaches the client.
func TestRelayDelaysBothWays(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const delay = 200 * time.Millisecond
	r := NewRelay(t, l, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", echo.Addr().String())
	}, delay)

	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	want := make([]byte, 200<<10) // several chunks
	for i := range want {
		want[i] = byte(i * 7)
	}
	start := time.Now()
	go func() {
		c.Write(want)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read through the relay: %v", err)
	}
	if elapsed := time.Since(start); elapsed < 2*delay {
		t.Errorf("the answer came after %v, before the delay both ways (%v)", elapsed, 2*delay)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d bytes back, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("byte %d is %d, want %d", i, got[i], want[i])
		}
	}
	if r.Conns() != 1 {
		t.Errorf("Conns() = %d, want 1", r.Conns())
	}
}
