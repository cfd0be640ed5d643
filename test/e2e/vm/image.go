// Package vm boots Debian 12 virtual machines for Outpost's end-to-end tests:
// a disk image built once from Debian's packages and cached outside the
// checkout, booted with qemu on a copy-on-write overlay, configured by
// cloud-init from a NoCloud seed, networked with user-mode networking that
// reaches only the ports a test forwards, and driven through a shell on a
// second serial port.
//
// vm is for tests only and no Outpost binary imports it.
package vm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// imageVersion changes the image's cache key: bump it when customise or
// mkfs change what the image holds.
const imageVersion = "5"

// imageSize is the root file system's size; the overlays only grow into it.
const imageSize = "2G"

// Packages are installed on top of the test host's root filesystem (see
// host.EnsurePackagesRootfs) to make a machine that boots on its own: the
// cloud kernel, whose initramfs finds a virtio disk, udev for the network
// device, cloud-init, and curl, which the cloud-init examples download with;
// and what the Vagrant box needs (sshd, rsync for synced folders, sudo).
// Both images are made from the one tree: installing packages in it is the
// costly step of a cold build.
var Packages = []string{"linux-image-cloud-amd64", "cloud-init", "udev", "curl", "openssh-server", "rsync", "sudo"}

// Image is a cached disk image and the kernel and initramfs that boot it.
type Image struct {
	Disk, Kernel, Initrd string
}

// recipe is what an image is made of: the packages on top of the test
// host's tree, and a last step on the copied tree. Its name names its
// cache directory; its version and packages key it.
type recipe struct {
	name     string
	version  string
	packages []string
	finish   func(root string) error
}

// vmRecipe makes the image the cloud-init tests boot.
var vmRecipe = recipe{name: "vm", version: imageVersion, packages: Packages}

func (r recipe) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", r.version, imageSize,
		host.PackagesRootfsPath(r.packages), strings.Join(r.packages, ","))
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// dir is where the recipe's image is cached; the name keeps recipes apart.
func (r recipe) dir() string {
	return filepath.Join(host.CacheDir(), r.name+"-bookworm-"+r.key())
}

// ImageDir is where the image of the current recipe is cached.
func ImageDir() string { return vmRecipe.dir() }

func imageAt(dir string) Image {
	return Image{
		Disk:   filepath.Join(dir, "disk.raw"),
		Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.img"),
	}
}

// EnsureImage returns the cached image, building it first when it is
// missing: the root filesystem with Packages, copied, customised for a VM,
// and written into an ext4 file system image with mkfs.ext4 -d (no loop
// device, no bootloader: qemu boots the kernel directly). It builds in a
// temporary directory renamed into place when complete, under a lock of its
// own, so a half-built image is never booted.
func EnsureImage(ctx context.Context) (Image, error) {
	return ensureImage(ctx, vmRecipe)
}

func ensureImage(ctx context.Context, r recipe) (Image, error) {
	dst := r.dir()
	if _, err := os.Stat(dst); err == nil {
		return imageAt(dst), nil
	}
	tree, err := host.EnsurePackagesRootfs(ctx, r.packages)
	if err != nil {
		return Image{}, err
	}
	mkfs, err := tool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return Image{}, err
	}
	unlock, err := host.LockCache("-vm")
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	if _, err := os.Stat(dst); err == nil {
		return imageAt(dst), nil // built by another process while we waited
	}
	stale, _ := filepath.Glob(filepath.Join(host.CacheDir(), ".vm-build-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
	tmp, err := os.MkdirTemp(host.CacheDir(), ".vm-build-")
	if err != nil {
		return Image{}, fmt.Errorf("vm image cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", tree, root).CombinedOutput(); err != nil {
		return Image{}, fmt.Errorf("copy %s: %w: %s", tree, err, tail(out))
	}
	out := filepath.Join(tmp, "image")
	if err := os.Mkdir(out, 0o755); err != nil {
		return Image{}, fmt.Errorf("vm image cache: %w", err)
	}
	img := imageAt(out)
	if err := extractBoot(root, img); err != nil {
		return Image{}, err
	}
	if err := customise(root); err != nil {
		return Image{}, err
	}
	if r.finish != nil {
		if err := r.finish(root); err != nil {
			return Image{}, err
		}
	}
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-L", "root",
		"-E", "root_owner=0:0", "-d", root, img.Disk, imageSize)
	if o, err := cmd.CombinedOutput(); err != nil {
		return Image{}, fmt.Errorf("mkfs.ext4 -d: %w: %s", err, tail(o))
	}
	if err := os.Rename(out, dst); err != nil {
		return Image{}, fmt.Errorf("vm image cache: %w", err)
	}
	return imageAt(dst), nil
}

// extractBoot copies the kernel and initramfs out of the tree, for qemu's
// -kernel and -initrd.
func extractBoot(root string, img Image) error {
	for _, f := range []struct{ glob, dst string }{
		{"boot/vmlinuz-*-cloud-amd64", img.Kernel},
		{"boot/initrd.img-*-cloud-amd64", img.Initrd},
	} {
		m, _ := filepath.Glob(filepath.Join(root, f.glob))
		if len(m) != 1 {
			return fmt.Errorf("vm image: want one /%s in the tree, found %d", f.glob, len(m))
		}
		b, err := os.ReadFile(m[0])
		if err != nil {
			return fmt.Errorf("vm image: %w", err)
		}
		if err := os.WriteFile(f.dst, b, 0o644); err != nil {
			return fmt.Errorf("vm image: %w", err)
		}
	}
	return nil
}

// guestFiles are written into the image. The network comes from
// systemd-networkd (DHCP from qemu's user-mode network); cloud-init reads
// only the NoCloud seed and leaves the network alone; a root shell runs on
// the second serial port, which qemu connects to the test's socket and no
// one else's.
var guestFiles = map[string]string{
	"etc/systemd/network/20-vm.network": "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n",
	"etc/cloud/cloud.cfg.d/90-outpost-test.cfg": "datasource_list: [NoCloud, None]\n" +
		"network: {config: disabled}\n" +
		// The host keys are the tree's (the Vagrant box needs sshd); an
		// instance keeps them, which saves generating keys under emulation.
		"ssh_deletekeys: false\nssh_genkeytypes: []\n",
	"etc/systemd/system/outpost-test-shell.service": `[Unit]
Description=Test shell on the second serial port
After=systemd-udevd.service

[Service]
# The port stays open from the stty to the shell: a serial port drops what
# arrives while no one has it open, so a command sent right after the ready
# line could lose its start and leave the shell inside an open quote.
ExecStart=/bin/sh -c 'exec </dev/ttyS1 >/dev/ttyS1 2>&1 && stty raw -echo && echo @@outpost-shell-ready@@ && exec /bin/sh'
Restart=always
RestartSec=200ms
# An interactive shell ignores SIGTERM: without this a shutdown waits out
# the stop timeout.
KillSignal=SIGKILL

[Install]
WantedBy=multi-user.target
`,
}

// guestLinks enable units (link -> target) and unmask the wait for the
// network that the test host's tree masks: cloud-init's final stage, which
// downloads, must run after the network is up.
var guestLinks = map[string]string{
	"etc/systemd/system/multi-user.target.wants/outpost-test-shell.service":               "/etc/systemd/system/outpost-test-shell.service",
	"etc/systemd/system/multi-user.target.wants/systemd-networkd.service":                 "/lib/systemd/system/systemd-networkd.service",
	"etc/systemd/system/sockets.target.wants/systemd-networkd.socket":                     "/lib/systemd/system/systemd-networkd.socket",
	"etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service": "/lib/systemd/system/systemd-networkd-wait-online.service",
}

func customise(root string) error {
	os.Remove(filepath.Join(root, "etc/systemd/system/systemd-networkd-wait-online.service"))
	for name, content := range guestFiles {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("vm image: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("vm image: %w", err)
		}
	}
	for link, target := range guestLinks {
		p := filepath.Join(root, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("vm image: %w", err)
		}
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return fmt.Errorf("vm image: %w", err)
		}
	}
	return nil
}

// tool finds a program, also in the sbin directories, and names the Debian
// package to install when it is missing.
func tool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install the Debian package %s (test/run does)", name, pkg)
}

func tail(b []byte) []byte {
	if len(b) > 4096 {
		return b[len(b)-4096:]
	}
	return b
}
