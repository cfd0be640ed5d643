package vm

import (
	"os/exec"
	"strconv"
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
