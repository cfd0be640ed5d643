package host

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// The root filesystem recipe. Changing the suite, the packages or
// recipeVersion changes the cache key, so an old tree is never booted with a
// new recipe. Changing what customise does needs only customiseVersion (or
// the masked lists) to change: the tree is then customised again in place.
const (
	suite            = "bookworm"
	recipeVersion    = "1"
	customiseVersion = "2"
)

// includes are the Debian packages installed on top of the minbase variant:
// systemd as init with its bus, and what the agent and its tests use on a host.
var includes = []string{
	"systemd", "systemd-sysv", "dbus", "ca-certificates", "iproute2", "procps", "git",
}

// masked are units that only slow a test host's boot or write to its
// console: ttys, logins, timers of a long-lived machine, kernel file systems.
var masked = []string{
	"console-getty.service", "getty@.service", "container-getty@.service",
	"systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer",
	"e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "dpkg-db-backup.timer",
	"systemd-logind.service", "systemd-user-sessions.service", "systemd-update-utmp.service",
	"systemd-update-utmp-runlevel.service", "systemd-pstore.service", "systemd-journal-flush.service",
	"dev-hugepages.mount", "sys-fs-fuse-connections.mount", "sys-kernel-config.mount",
	"sys-kernel-debug.mount", "sys-kernel-tracing.mount", "proc-sys-fs-binfmt_misc.automount",
	"systemd-hwdb-update.service", "ldconfig.service", "systemd-tmpfiles-clean.timer",
}

// maskedGenerators are generators a test host needs none of.
var maskedGenerators = []string{
	"systemd-cryptsetup-generator", "systemd-debug-generator", "systemd-fstab-generator",
	"systemd-getty-generator", "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator",
	"systemd-integritysetup-generator", "systemd-rc-local-generator", "systemd-run-generator",
	"systemd-system-update-generator", "systemd-sysv-generator", "systemd-veritysetup-generator",
}

// CacheDir is where the root filesystem is cached: $OUTPOST_TEST_CACHE, or
// /var/cache/outpost-test. It lies outside the checkout on purpose.
func CacheDir() string {
	if d := os.Getenv("OUTPOST_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/outpost-test"
}

func recipeKey() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", recipeVersion, suite, strings.Join(includes, ","))
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// customiseStamp names the file that records which customisation a tree has.
func customiseStamp() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", customiseVersion,
		strings.Join(masked, ","), strings.Join(maskedGenerators, ","))
	return ".outpost-customised-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// RootfsPath is where the cached root filesystem of the current recipe lives
// once it is built.
func RootfsPath() string {
	return filepath.Join(CacheDir(), "rootfs-"+suite+"-"+recipeKey())
}

// EnsureRootfs returns the cached root filesystem, building it first when it
// is missing. The build goes to a temporary directory that is renamed into
// place when it is complete, so a half-built tree is never booted; a lock
// file serialises builds between test processes, so it is built once.
func EnsureRootfs(ctx context.Context) (string, error) {
	dst := RootfsPath()
	if _, err := os.Stat(filepath.Join(dst, customiseStamp())); err == nil {
		return dst, nil
	}
	unlock, err := LockCache("")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(dst); err == nil {
		// Built already, by an older customisation or by another process
		// while we waited for the lock.
		if err := customise(dst); err != nil {
			return "", err
		}
		return dst, nil
	}
	debootstrap, err := tool("debootstrap", "debootstrap")
	if err != nil {
		return "", err
	}
	// A build that was killed leaves its directory, maybe with /proc still
	// mounted in it; we hold the lock, so no build is running.
	stale, _ := filepath.Glob(filepath.Join(CacheDir(), ".build-*"))
	for _, d := range stale {
		removeBuild(d)
	}
	tmp, err := os.MkdirTemp(CacheDir(), ".build-")
	if err != nil {
		return "", fmt.Errorf("test host cache: %w", err)
	}
	defer removeBuild(tmp)
	root := filepath.Join(tmp, "rootfs")
	cmd := exec.CommandContext(ctx, debootstrap, "--variant=minbase",
		"--include="+strings.Join(includes, ","), suite, root, Mirror())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debootstrap %s: %w\n%s", suite, err, tail(out, 4096))
	}
	if err := customise(root); err != nil {
		return "", err
	}
	if err := os.Rename(root, dst); err != nil {
		return "", fmt.Errorf("test host cache: %w", err)
	}
	return dst, nil
}

// LockCache takes a lock file in the cache directory, .lock followed by
// suffix, which serialises one kind of build across every test process, and
// returns the function that releases it. The root filesystem's builds take
// the suffix "".
func LockCache(suffix string) (func(), error) {
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return nil, fmt.Errorf("test cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(CacheDir(), ".lock"+suffix), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("test cache: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("test cache lock: %w", err)
	}
	return func() {
		syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
	}, nil
}

// removeBuild detaches what debootstrap mounted below dir before it removes
// dir, so that removing never reaches into /proc, /sys or /dev.
func removeBuild(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return // without the mount table, removing is not safe
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		fs := strings.Fields(line)
		if len(fs) > 4 && strings.HasPrefix(fs[4], dir+"/") {
			mounts = append(mounts, fs[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			return
		}
	}
	os.RemoveAll(dir)
}

// customise trims a built tree for fast container boots. It is idempotent
// and records what it did in a stamp file.
func customise(root string) error {
	stamp := filepath.Join(root, customiseStamp())
	if _, err := os.Stat(stamp); err == nil {
		return nil
	}
	sys := filepath.Join(root, "etc/systemd/system")
	gens := filepath.Join(root, "etc/systemd/system-generators")
	if err := os.MkdirAll(gens, 0o755); err != nil {
		return fmt.Errorf("test host rootfs: %w", err)
	}
	for _, u := range masked {
		if err := mask(filepath.Join(sys, u)); err != nil {
			return err
		}
	}
	for _, g := range maskedGenerators {
		if err := mask(filepath.Join(gens, g)); err != nil {
			return err
		}
	}
	def := filepath.Join(sys, "default.target")
	os.Remove(def)
	if err := os.Symlink("/lib/systemd/system/multi-user.target", def); err != nil {
		return fmt.Errorf("test host rootfs: %w", err)
	}
	// An empty machine-id makes systemd generate a fresh one on every boot.
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return fmt.Errorf("test host rootfs: %w", err)
	}
	// Without /etc/hostname the host keeps the name nspawn gives it.
	os.Remove(filepath.Join(root, "etc/hostname"))
	archives, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	for _, a := range archives {
		os.Remove(a)
	}
	old, _ := filepath.Glob(filepath.Join(root, ".outpost-customised-*"))
	for _, o := range old {
		os.Remove(o)
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		return fmt.Errorf("test host rootfs: %w", err)
	}
	return nil
}

func mask(path string) error {
	os.Remove(path)
	if err := os.Symlink("/dev/null", path); err != nil {
		return fmt.Errorf("test host rootfs: mask %s: %w", filepath.Base(path), err)
	}
	return nil
}

// Mirror is the Debian mirror to build from: $OUTPOST_TEST_MIRROR, else the
// first bookworm mirror in /etc/apt/sources.list.d/*.sources or
// /etc/apt/sources.list, else deb.debian.org.
func Mirror() string {
	if m := os.Getenv("OUTPOST_TEST_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if m := deb822Mirror(f); m != "" {
			return m
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		if m := oneLineMirror(f); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

func deb822Mirror(file string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(data), "\n\n") {
		var uris, suites []string
		for _, line := range strings.Split(stanza, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, "#") {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "uris":
				uris = strings.Fields(v)
			case "suites":
				suites = strings.Fields(v)
			}
		}
		for _, s := range suites {
			if s == suite && len(uris) > 0 {
				return uris[0]
			}
		}
	}
	return ""
}

func oneLineMirror(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// deb [options] URI SUITE COMPONENTS...
		if len(fs) < 3 || fs[0] != "deb" {
			continue
		}
		fs = fs[1:]
		if strings.HasPrefix(fs[0], "[") {
			for len(fs) > 0 && !strings.HasSuffix(fs[0], "]") {
				fs = fs[1:]
			}
			if len(fs) > 0 {
				fs = fs[1:]
			}
		}
		if len(fs) >= 2 && fs[1] == suite {
			return fs[0]
		}
	}
	return ""
}

// ErrMissingTool is matched by errors.Is when a tool the test host needs is
// not installed.
var ErrMissingTool = errors.New("missing tool")

// tool finds a program, also in the sbin directories that a non-login PATH
// may lack, and names the Debian package to install when it is missing.
func tool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install the Debian package %s (apt-get install %s): %w",
		name, pkg, pkg, ErrMissingTool)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
