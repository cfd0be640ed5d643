package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// packagesVersion changes the key of every tree with packages: bump it when
// installPackages changes what it does.
const packagesVersion = "1"

// packageList is packages sorted and without duplicates, so that the same set
// in another order shares a tree.
func packageList(packages []string) []string {
	list := slices.Clone(packages)
	slices.Sort(list)
	return slices.Compact(list)
}

// PackagesRootfsPath is where the root filesystem with packages installed on
// top of the current recipe's is cached once it is built. Its key covers the
// base tree's recipe and customisation, so a new base gets a new tree.
func PackagesRootfsPath(packages []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", packagesVersion, customiseStamp(), strings.Join(packageList(packages), ","))
	return RootfsPath() + "-pkgs-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// EnsurePackagesRootfs returns a root filesystem that is the cached one (see
// EnsureRootfs) with packages installed, building it first when it is
// missing: a copy of the base tree in which `apt-get install
// --no-install-recommends` runs in a container that shares this machine's
// network and uses the base tree's Debian mirror. It is built under the same
// lock as the base tree, in a temporary directory renamed into place when
// complete, and kept beside the base tree.
func EnsurePackagesRootfs(ctx context.Context, packages []string) (string, error) {
	base, err := EnsureRootfs(ctx)
	if err != nil {
		return "", err
	}
	dst := PackagesRootfsPath(packages)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	nspawn, err := tool("systemd-nspawn", "systemd-container")
	if err != nil {
		return "", err
	}
	unlock, err := LockCache("")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil // built by another process while we waited
	}
	tmp, err := os.MkdirTemp(CacheDir(), ".build-")
	if err != nil {
		return "", fmt.Errorf("test host cache: %w", err)
	}
	defer removeBuild(tmp)
	root := filepath.Join(tmp, "rootfs")
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", base, root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %w: %s", base, err, tail(out, 4096))
	}
	if err := installPackages(ctx, nspawn, root, packageList(packages)); err != nil {
		return "", err
	}
	if err := os.Rename(root, dst); err != nil {
		return "", fmt.Errorf("test host cache: %w", err)
	}
	return dst, nil
}

// installPackages runs apt-get in a container on root (not booted, sharing
// this machine's network and resolver), then drops the downloaded archives
// and package lists.
func installPackages(ctx context.Context, nspawn, root string, packages []string) error {
	var b [4]byte
	rand.Read(b[:])
	script := `apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" && apt-get clean && rm -rf /var/lib/apt/lists/*`
	args := []string{"-D", root, "--register=no", "--keep-unit", "-q", "--as-pid2",
		"--machine=outpost-build-" + hex.EncodeToString(b[:]), "--resolv-conf=bind-host",
		"-E", "DEBIAN_FRONTEND=noninteractive", "--", "sh", "-c", script, "sh"}
	cmd := exec.CommandContext(ctx, nspawn, append(args, packages...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	waited, err := startPinned(cmd)
	if err == nil {
		err = <-waited
	}
	if err != nil {
		return fmt.Errorf("apt-get install %s in the test host's root filesystem: %w\n%s",
			strings.Join(packages, " "), err, tail(out.Bytes(), 4096))
	}
	return nil
}
