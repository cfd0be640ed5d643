package daemon

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// dirWatch sees the files that the agent creates and renames in a directory
// of the host (inotify reaches it through /proc/PID/root), so that a kill
// can be aimed at the few milliseconds in which the managed files are
// written.
type dirWatch struct {
	fd int
	f  *os.File
}

func watchDir(t testing.TB, dir string) *dirWatch {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		t.Fatalf("inotify %s: %v", dir, err)
	}
	// A non-blocking descriptor goes through the runtime's poller, so
	// reads honour deadlines.
	w := &dirWatch{fd: fd, f: os.NewFile(uintptr(fd), "inotify")}
	t.Cleanup(func() { w.f.Close() })
	return w
}

// drain forgets the events seen so far. It reads without the poller: a
// read past its deadline would not even look.
func (w *dirWatch) drain() {
	var buf [64 << 10]byte
	for {
		if n, err := syscall.Read(w.fd, buf[:]); n <= 0 || err != nil {
			return
		}
	}
}

// next reads a batch of events, waiting until deadline, and returns when it
// read them.
func (w *dirWatch) next(deadline time.Time) (time.Time, bool) {
	var buf [64 << 10]byte
	w.f.SetReadDeadline(deadline)
	n, err := w.f.Read(buf[:])
	if err != nil || n == 0 {
		return time.Time{}, false
	}
	return time.Now(), true
}

// first waits for the next event, until done is closed or a minute passed,
// and returns when it came.
func (w *dirWatch) first(done <-chan struct{}) (time.Time, bool) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if at, ok := w.next(time.Now().Add(5 * time.Millisecond)); ok {
			return at, true
		}
		select {
		case <-done:
			return time.Time{}, false
		default:
		}
	}
	return time.Time{}, false
}

// span collects the events until done is closed and returns the time from
// the first to the last.
func (w *dirWatch) span(done <-chan struct{}) (time.Duration, error) {
	var first, last time.Time
	for {
		if at, ok := w.next(time.Now().Add(5 * time.Millisecond)); ok {
			if first.IsZero() {
				first = at
			}
			last = at
			continue
		}
		select {
		case <-done:
			if first.IsZero() {
				return 0, errors.New("no file was written")
			}
			return last.Sub(first), nil
		default:
		}
	}
}
