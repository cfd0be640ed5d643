package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// HostAddr is the address at which the guest reaches the test's services.
// It is not qemu's 10.0.2.2, the gateway to everything the host can reach:
// the user-mode network is restricted (restrict=on), so the gateway answers
// nothing, and qemu refuses forwards to the gateway's own address.
const HostAddr = "10.0.2.100"

// Forward makes a host's TCP service reachable from the guest: a
// connection to HostAddr:GuestPort reaches Target (a loopback host:port).
// Forwards are the guest's only way out.
type Forward struct {
	GuestPort int
	Target    string
}

// Options configure a machine.
type Options struct {
	// Image is what to boot (see EnsureImage).
	Image Image
	// UserData and MetaData are the NoCloud seed's files. MetaData
	// defaults to an instance-id and the local-hostname "outpost-vm".
	UserData, MetaData []byte
	// Forwards are the host services the guest may reach.
	Forwards []Forward
	// Dir holds the overlay, the seed, the sockets and the console log.
	Dir string
	// MemoryMB defaults to 1024.
	MemoryMB int
	// Accel is "tcg" or "kvm"; empty chooses with Accel.
	Accel string
}

// VM is a running machine.
type VM struct {
	// Console is the file the first serial port (the kernel's, systemd's
	// and cloud-init's console) is written to.
	Console string
	// Booted is when qemu started.
	Booted time.Time

	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	shell  *shell
	once   sync.Once
}

// Boot starts qemu on a new copy-on-write overlay of the image (the cached
// image is never written), with the seed as a second disk, and returns when
// qemu runs; Wait waits for the guest's shell.
func Boot(ctx context.Context, o Options) (*VM, error) {
	qemu, err := tool("qemu-system-x86_64", "qemu-system-x86")
	if err != nil {
		return nil, err
	}
	qemuImg, err := tool("qemu-img", "qemu-utils")
	if err != nil {
		return nil, err
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 1024
	}
	if o.MetaData == nil {
		o.MetaData = []byte("instance-id: outpost-vm-1\nlocal-hostname: outpost-vm\n")
	}
	if o.Accel == "" {
		o.Accel = Accel(ctx, o.Image)
	}
	overlay := filepath.Join(o.Dir, "overlay.qcow2")
	if out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2",
		"-F", "raw", "-b", o.Image.Disk, overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img create: %w: %s", err, out)
	}
	seed := filepath.Join(o.Dir, "seed.img")
	if err := Seed(ctx, seed, o.UserData, o.MetaData); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	netdev := "user,id=net0,restrict=on"
	for _, f := range o.Forwards {
		if _, _, err := net.SplitHostPort(f.Target); err != nil {
			return nil, fmt.Errorf("forward %d: %w", f.GuestPort, err)
		}
		// Each connection runs this test binary as a relay (see
		// RelayMain): qemu's own tcp: forwards connect once, at start.
		netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:%s %s %s",
			HostAddr, f.GuestPort, exe, RelayArg, f.Target)
	}
	v := &VM{Console: filepath.Join(o.Dir, "console.log"), exited: make(chan struct{})}
	sock := filepath.Join(o.Dir, "shell.sock")
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none",
		"-accel", o.Accel, "-smp", "1", "-m", strconv.Itoa(o.MemoryMB),
		"-kernel", o.Image.Kernel, "-initrd", o.Image.Initrd,
		"-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1",
		"-drive", "file=" + overlay + ",if=virtio,format=qcow2",
		"-drive", "file=" + seed + ",if=virtio,format=raw,readonly=on",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=net0",
		"-device", "virtio-rng-pci",
		"-serial", "file:" + v.Console,
		"-serial", "unix:" + sock + ",server=on,wait=off",
	}
	name, args := niced(qemu, args...)
	v.cmd = exec.Command(name, args...)
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var stderr strings.Builder
	v.cmd.Stderr = &stderr
	v.Booted = time.Now()
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	go func() {
		err := v.cmd.Wait()
		v.err = fmt.Errorf("qemu exited: %v: %s", err, strings.TrimSpace(stderr.String()))
		close(v.exited)
	}()
	conn, err := dialUnix(ctx, sock, v.exited)
	if err != nil {
		v.Close()
		if v.err != nil {
			return nil, v.err
		}
		return nil, err
	}
	v.shell = newShell(conn)
	return v, nil
}

func dialUnix(ctx context.Context, path string, exited <-chan struct{}) (net.Conn, error) {
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-exited:
			return nil, errors.New("qemu exited before its serial socket was ready")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Exited is closed when qemu exits; Err then says why.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// Err is why qemu exited.
func (v *VM) Err() error {
	select {
	case <-v.exited:
		return v.err
	default:
		return nil
	}
}

// Close powers the machine off and waits for qemu.
func (v *VM) Close() {
	v.once.Do(func() {
		if v.shell != nil {
			v.shell.close()
		}
		if v.cmd.Process != nil {
			v.cmd.Process.Kill()
		}
		<-v.exited
	})
}

// ConsoleText returns the console log so far.
func (v *VM) ConsoleText() string {
	b, _ := os.ReadFile(v.Console)
	return string(b)
}

// Run runs script with sh as root in the guest and returns its combined
// output and exit status. It fails when the guest's shell does not answer
// before ctx ends or qemu exits.
func (v *VM) Run(ctx context.Context, script string) (string, int, error) {
	return v.shell.run(ctx, script, v.exited)
}

// WaitShell waits until the guest's shell has started and answers.
func (v *VM) WaitShell(ctx context.Context) error {
	if err := v.shell.waitReady(ctx, v.exited); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("the guest's shell did not start: %w", ctx.Err())
		}
		return err
	}
	if _, _, err := v.Run(ctx, "true"); err != nil {
		return fmt.Errorf("the guest's shell did not answer: %w", err)
	}
	return nil
}

// Reboot reboots the guest and returns when the shell of its next boot
// answers; the overlay, and so everything the guest wrote, is kept.
func (v *VM) Reboot(ctx context.Context) error {
	before, _, err := v.Run(ctx, "cat /proc/sys/kernel/random/boot_id")
	if err != nil {
		return err
	}
	// The answer may never come: the shell dies with the machine.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	v.Run(short, "systemctl reboot")
	cancel()
	if err := v.WaitShell(ctx); err != nil {
		return fmt.Errorf("the guest did not come back from its reboot: %w", err)
	}
	after, _, err := v.Run(ctx, "cat /proc/sys/kernel/random/boot_id")
	if err != nil {
		return err
	}
	if after == before {
		return fmt.Errorf("the guest's shell started again, but the machine did not reboot")
	}
	return nil
}
