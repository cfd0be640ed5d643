package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// guestNice is the niceness the emulated guests run at (their qemu, and
// libvirtd, whose qemu inherits it). An emulated CPU is one host thread that
// competes with every test of a loaded suite for two cores, and its guest
// keeps wall-clock deadlines of its own (systemd's start timeouts, the
// kernel's clocksource watchdog) as the tests do: with twelve busy threads
// beside it a boot to the shell took 4 min 48 s at niceness 0 and 47 s at
// -10 (27 s on an idle machine). A guest is idle most of its life, so the
// priority costs the rest of the suite little CPU. Without the privilege to
// raise a priority, nice(1) says so and runs the command as it is.
const guestNice = -10

// niced returns the command that runs name with args at guestNice.
func niced(name string, args ...string) (string, []string) {
	nice, err := exec.LookPath("nice")
	if err != nil {
		return name, args
	}
	return nice, append([]string{"-n", strconv.Itoa(guestNice), name}, args...)
}

// keepNiced holds every thread of each process whose command line contains
// match at guestNice until ctx ends, and reports the first time it finds
// one. It covers the qemu that a libvirtd started by someone else (a
// package's init script, an earlier run) spawns at that daemon's
// priority, and threads the process starts later. setpriority(2) applies
// to one thread on Linux, so each is set.
func keepNiced(ctx context.Context, match string, found func(pid int)) {
	seen := map[int]bool{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, pid := range matching(match) {
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*", pid))
			for _, task := range tasks {
				if tid, err := strconv.Atoi(filepath.Base(task)); err == nil {
					syscall.Setpriority(syscall.PRIO_PROCESS, tid, guestNice)
				}
			}
			if !seen[pid] {
				seen[pid] = true
				found(pid)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// matching returns the processes whose command line contains s.
func matching(s string) []int {
	var pids []int
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmdlines {
		b, err := os.ReadFile(c)
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(c))); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}
