package vm

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// shellReady is the line the guest's test shell prints when it starts
// (image.go), with the port already open for the shell that follows.
// Nothing is written to the port before it: the guest drops what arrives
// while no one has the port open, and a line that lost its start can leave
// the shell inside an open quote for good.
const shellReady = "@@outpost-shell-ready@@"

// shell speaks to the root shell on the guest's second serial port. Each
// script travels base64-encoded on one line, so no byte of it is taken for
// a terminal control; its output and status come back on one line marked
// with a fresh nonce, so a late answer to an abandoned command is never
// taken for the answer to the next one.
type shell struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

func newShell(c net.Conn) *shell {
	return &shell{conn: c, r: bufio.NewReaderSize(c, 1<<20)}
}

func (s *shell) close() { s.conn.Close() }

// waitReady reads the port until the guest's shell says it has started.
func (s *shell) waitReady(ctx context.Context, exited <-chan struct{}) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Hour)
	}
	s.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Now()) })
	defer stop()
	var line strings.Builder
	for {
		l, err := s.r.ReadString('\n')
		line.WriteString(l)
		if strings.Contains(line.String(), shellReady) {
			return nil
		}
		if err == nil {
			line.Reset()
			continue
		}
		select {
		case <-exited:
			return fmt.Errorf("guest shell: qemu exited")
		default:
		}
		// A command abandoned just before (the reboot's) may still move
		// the deadline to its own end after this one was set: read on
		// while ctx lasts.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			s.conn.SetDeadline(deadline)
			continue
		}
		return fmt.Errorf("guest shell: %w", err)
	}
}

func (s *shell) run(ctx context.Context, script string, exited <-chan struct{}) (string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b [8]byte
	rand.Read(b[:])
	marker := "@@" + hex.EncodeToString(b[:])
	line := fmt.Sprintf("printf %%s %s | base64 -d >/run/t.sh; sh /run/t.sh </dev/null >/run/t.out 2>&1; "+
		"echo \"%s $? $(base64 -w0 </run/t.out) @@\"\n",
		base64.StdEncoding.EncodeToString([]byte(script)), marker)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Hour)
	}
	s.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := s.conn.Write([]byte(line)); err != nil {
		return "", 0, fmt.Errorf("guest shell: %w", err)
	}
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			select {
			case <-exited:
				return "", 0, fmt.Errorf("guest shell: qemu exited")
			default:
			}
			if ctx.Err() != nil {
				return "", 0, fmt.Errorf("guest shell: %w", ctx.Err())
			}
			return "", 0, fmt.Errorf("guest shell: %w", err)
		}
		i := strings.Index(l, marker+" ")
		if i < 0 {
			continue
		}
		f := strings.Fields(l[i:])
		// marker, status, output (absent when empty), "@@"
		if len(f) < 3 {
			return "", 0, fmt.Errorf("guest shell: bad answer %q", l)
		}
		code, err := strconv.Atoi(f[1])
		if err != nil {
			return "", 0, fmt.Errorf("guest shell: bad answer %q", l)
		}
		var out []byte
		if len(f) == 4 {
			if out, err = base64.StdEncoding.DecodeString(f[2]); err != nil {
				return "", 0, fmt.Errorf("guest shell: bad answer %q: %w", l, err)
			}
		}
		return string(out), code, nil
	}
}
