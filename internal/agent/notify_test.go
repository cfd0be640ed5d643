package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// notifySocket listens where systemd would, and points NOTIFY_SOCKET at it.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	// A deadline so that a missing message fails the test instead of
	// hanging it; it is not a speed requirement.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read the notify socket: %v", err)
	}
	return string(buf[:n])
}

func TestNotifyMessages(t *testing.T) {
	tests := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", func() error { return NotifyReady("applied abc123") }, "READY=1\nSTATUS=applied abc123"},
		{"status", func() error { return NotifyStatus("pulling") }, "STATUS=pulling"},
		{"status with a newline", func() error { return NotifyStatus("bad\nREADY=1") }, "STATUS=bad READY=1"},
		{"stopping", NotifyStopping, "STOPPING=1"},
		{"watchdog", NotifyWatchdog, "WATCHDOG=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := notifySocket(t)
			if err := tt.send(); err != nil {
				t.Fatalf("send = %v", err)
			}
			if diff := cmp.Diff(tt.want, receive(t, conn)); diff != "" {
				t.Errorf("message mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNotifyOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	t.Setenv("WATCHDOG_USEC", "")
	os.Unsetenv("WATCHDOG_USEC")
	for name, f := range map[string]func() error{
		"ready":    func() error { return NotifyReady("x") },
		"status":   func() error { return NotifyStatus("x") },
		"watchdog": NotifyWatchdog,
		"run":      func() error { return RunWatchdog(context.Background()) }, // returns at once
	} {
		if err := f(); err != nil {
			t.Errorf("%s outside systemd = %v, want nil", name, err)
		}
	}
	if got := WatchdogInterval(); got != 0 {
		t.Errorf("WatchdogInterval() = %v, want 0", got)
	}
}

func TestRunWatchdog(t *testing.T) {
	conn := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if got := WatchdogInterval(); got != 100*time.Millisecond {
		t.Fatalf("WatchdogInterval() = %v, want 100ms", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunWatchdog(ctx) }()
	for i := range 3 {
		if got := receive(t, conn); got != "WATCHDOG=1" {
			t.Errorf("ping %d = %q, want WATCHDOG=1", i, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunWatchdog() = %v, want nil once ctx is done", err)
	}
}

func TestWatchdogForAnotherPID(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if got := WatchdogInterval(); got != 0 {
		t.Errorf("WatchdogInterval() with another WATCHDOG_PID = %v, want 0", got)
	}
}
