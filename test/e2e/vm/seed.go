package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Seed writes a NoCloud seed to path: a small FAT volume labelled cidata
// holding user-data and meta-data, made with mkfs.vfat and mcopy, which
// need no loop device and no root.
func Seed(ctx context.Context, path string, userData, metaData []byte) error {
	mkfs, err := tool("mkfs.vfat", "dosfstools")
	if err != nil {
		return err
	}
	mcopy, err := tool("mcopy", "mtools")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), "seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for name, data := range map[string][]byte{"user-data": userData, "meta-data": metaData} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	os.Remove(path)
	if out, err := exec.CommandContext(ctx, mkfs, "-n", "CIDATA", "-C", path, "1024").CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.vfat: %w: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, mcopy, "-i", path,
		filepath.Join(dir, "user-data"), filepath.Join(dir, "meta-data"), "::")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mcopy: %w: %s", err, out)
	}
	return nil
}
