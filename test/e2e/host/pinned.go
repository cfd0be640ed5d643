package host

import (
	"os/exec"
	"runtime"
)

// startPinned starts cmd from a goroutine locked to its OS thread, keeps
// that thread until cmd exits, and then sends cmd.Wait's result.
//
// The kernel sends a child its Pdeathsig when the thread that forked it
// ends, not when the process does, and the Go runtime ends threads of its
// own accord: a goroutine that exits while locked to its thread (as one
// that joined a network namespace does) takes the thread with it. A host
// started from such a thread would be powered off in the middle of a test.
func startPinned(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return waited, nil
}
