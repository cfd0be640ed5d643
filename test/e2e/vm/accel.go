package vm

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

var (
	accelOnce   sync.Once
	accelChoice string
)

// Accel returns "kvm" when /dev/kvm exists and a probe boot under it
// works, else "tcg". The probe boots the image's kernel and initramfs with
// no init to run and panic=-1, so a kernel that gets through its start-up
// panics and qemu exits at once; a guest that hangs under KVM (some nested
// setups) misses the probe's deadline instead. The answer is kept for the
// process.
func Accel(ctx context.Context, img Image) string {
	accelOnce.Do(func() {
		accelChoice = "tcg"
		if os.Getenv("OUTPOST_VM_ACCEL") == "tcg" {
			return
		}
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return
		}
		if probeKVM(ctx, img) {
			accelChoice = "kvm"
		}
	})
	return accelChoice
}

func probeKVM(ctx context.Context, img Image) bool {
	qemu, err := tool("qemu-system-x86_64", "qemu-system-x86")
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-nodefaults", "-no-user-config", "-display", "none",
		"-accel", "kvm", "-m", "256", "-no-reboot", "-kernel", img.Kernel,
		"-append", "console=ttyS0 panic=-1 init=/nonexistent rdinit=/nonexistent",
		"-serial", "stdio")
	out, err := cmd.Output()
	return err == nil && strings.Contains(string(out), "Kernel panic")
}
