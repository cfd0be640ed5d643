// Package peak measures the peak memory of a piece of work in a test by
// running it alone in a child process: the test binary run again for the one
// test, whose peak resident set the kernel reports when it exits. A test in
// the same process would measure every other test's garbage as well.
//
// It imports nothing from Outpost.
package peak

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// env names the test that a child process runs the work of.
const env = "OUTPOST_PEAK_TEST"

// marker starts the line on which the child reports the work's error.
const marker = "peak-result: "

// Measure runs work in a child process and returns the child's peak resident
// set in bytes (VmHWM), and the text of the error work returned ("" for none). In
// the child, Measure runs work, reports, runs the test's cleanups and ends
// the process: call it at most once per test, before anything else the test
// does.
func Measure(t *testing.T, work func() error) (peak int64, errText string) {
	t.Helper()
	if os.Getenv(env) == t.Name() {
		// The child ends once the work's cleanups have run (the servers
		// it started stopped, its directories removed): registered
		// first, this cleanup runs last, and exits before the test is
		// reported.
		t.Cleanup(func() { os.Exit(0) })
		msg := ""
		if err := work(); err != nil {
			msg = err.Error()
		}
		fmt.Printf("\n%s%d %q\n", marker, hwm(), msg)
		runtime.Goexit()
	}
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(strings.ReplaceAll(p, " ", "_")) + "$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("child process for %s: %v\n%s", t.Name(), err, out.String())
	}
	_, rest, found := strings.Cut(out.String(), "\n"+marker)
	if !found {
		t.Fatalf("child process for %s ran no work:\n%s", t.Name(), out.String())
	}
	line, _, _ := strings.Cut(rest, "\n")
	if _, err := fmt.Sscanf(line, "%d %q", &peak, &errText); err != nil || peak <= 0 {
		t.Fatalf("child process for %s: result %q: %v", t.Name(), line, err)
	}
	return peak, errText
}

// hwm is this process's peak resident set in bytes, or -1. It is read from
// /proc rather than from the parent's rusage, which counts the parent's own
// peak: a child started by vfork shares the parent's memory until it execs.
func hwm() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err == nil {
				return kib << 10
			}
		}
	}
	return -1
}
