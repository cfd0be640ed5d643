package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// boxVersion changes the box image's cache key: bump it when finishBox
// changes.
const boxVersion = "4"

// vagrantInsecureKey is the public key every base box authorises for its
// vagrant user, as Debian's vagrant package ships it; vagrant swaps it for
// a key of its own on the first `vagrant up`.
const vagrantInsecureKey = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"

// boxRecipe is the VM image made into a Vagrant base box: sshd, rsync for
// synced folders, sudo, and the vagrant user that may run anything. A box
// has no cloud-init seed and Vagrant sets the hostname, so cloud-init is
// disabled: its three stages are Python started under emulation.
var boxRecipe = recipe{
	name:     "box",
	version:  boxVersion,
	packages: Packages,
	finish:   finishBox,
}

func finishBox(root string) error {
	keys, _ := filepath.Glob(vagrantInsecureKey)
	if len(keys) != 1 {
		return fmt.Errorf("vagrant box: want one %s, found %d: install the Debian package vagrant (test/run does)", vagrantInsecureKey, len(keys))
	}
	key, err := os.ReadFile(keys[0])
	if err != nil {
		return fmt.Errorf("vagrant box: %w", err)
	}
	// A box has one serial port, the console: no test shell on a second.
	os.Remove(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/outpost-test-shell.service"))
	// The test host's tree masks the unit that lifts /run/nologin once the
	// boot is done; without it sshd turns away every user but root.
	os.Remove(filepath.Join(root, "etc/systemd/system/systemd-user-sessions.service"))
	if out, err := exec.Command("chroot", root, "useradd", "-m", "-s", "/bin/bash", "-U", "vagrant").CombinedOutput(); err != nil {
		return fmt.Errorf("vagrant box: useradd vagrant: %w: %s", err, out)
	}
	files := []struct {
		path, content string
		mode          os.FileMode
	}{
		{"etc/sudoers.d/vagrant", "vagrant ALL=(ALL) NOPASSWD: ALL\n", 0o440},
		{"etc/cloud/cloud-init.disabled", "", 0o644},
		{"home/vagrant/.ssh/authorized_keys", string(key), 0o600},
	}
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("vagrant box: %w", err)
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("vagrant box: %w", err)
		}
	}
	if out, err := exec.Command("chroot", root, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh").CombinedOutput(); err != nil {
		return fmt.Errorf("vagrant box: chown: %w: %s", err, out)
	}
	return os.Chmod(filepath.Join(root, "home/vagrant/.ssh"), 0o700)
}

// EnsureBoxImage returns the cached box image, building it first when it
// is missing (see EnsureImage).
func EnsureBoxImage(ctx context.Context) (Image, error) {
	return ensureImage(ctx, boxRecipe)
}

// PackageBox writes a vagrant-libvirt box of img to path: a tar of
// metadata.json, a Vagrantfile and box.img, the disk in qcow2. The image
// has no boot loader, so the Vagrantfile that uses the box gives libvirt
// its kernel and initramfs.
func PackageBox(ctx context.Context, img Image, path string) error {
	qemuImg, err := tool("qemu-img", "qemu-utils")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), "box-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.CommandContext(ctx, qemuImg, "convert", "-q", "-f", "raw", "-O", "qcow2",
		img.Disk, filepath.Join(dir, "box.img")).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert: %w: %s", err, out)
	}
	meta, err := json.Marshal(map[string]any{"provider": "libvirt", "format": "qcow2", "virtual_size": 2})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), meta, 0o644); err != nil {
		return err
	}
	vf := "Vagrant.configure(\"2\") do |config|\n  config.vm.provider :libvirt do |lv|\n    lv.driver = \"qemu\"\n  end\nend\n"
	if err := os.WriteFile(filepath.Join(dir, "Vagrantfile"), []byte(vf), 0o644); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-C", dir, "-cf", path,
		"metadata.json", "Vagrantfile", "box.img").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %w: %s", err, out)
	}
	return nil
}
