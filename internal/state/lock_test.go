package state_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/state"
)

// TestMain doubles as a helper process that holds a state directory's lock
// until its standard input closes, so that the lock is tested across real
// processes.
func TestMain(m *testing.M) {
	if dir := os.Getenv("OUTPOST_STATE_LOCK_HELPER"); dir != "" {
		l, err := state.Lock(dir)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		l.Unlock()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestLockOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OUTPOST_STATE_LOCK_HELPER="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v, want \"locked\"", line, err)
	}

	l, err := state.Lock(dir)
	var le *state.LockedError
	if !errors.As(err, &le) || !errors.Is(err, state.ErrLocked) {
		l.Unlock()
		t.Fatalf("Lock() while another process holds it = %v, want a *LockedError", err)
	}
	if le.PID != cmd.Process.Pid {
		t.Errorf("LockedError.PID = %d, want the holder's %d", le.PID, cmd.Process.Pid)
	}
	if want := fmt.Sprintf("in use by outpost process %d", cmd.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("Lock() error = %q, want it to say %q", err, want)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	l, err = state.Lock(dir)
	if err != nil {
		t.Fatalf("Lock() after the holder exited = %v, want nil", err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("Unlock() = %v", err)
	}
}

func TestLockSameProcess(t *testing.T) {
	dir := t.TempDir()
	l1, err := state.Lock(dir)
	if err != nil {
		t.Fatalf("Lock() = %v", err)
	}
	_, err = state.Lock(dir)
	var le *state.LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Errorf("second Lock() = %v, want a *LockedError naming PID %d", err, os.Getpid())
	}
	if err := l1.Unlock(); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	l2, err := state.Lock(dir)
	if err != nil {
		t.Fatalf("Lock() after Unlock() = %v", err)
	}
	l2.Unlock()
}
