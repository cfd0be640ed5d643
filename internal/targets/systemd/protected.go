package systemd

import "strings"

// The units below keep a host reachable and manageable: the agent's own,
// systemd's core, the boot targets and the consoles and SSH through which
// an operator gets back in. A unit file of the same name in
// /etc/systemd/system replaces the packaged one, so one bad commit could
// cut the host off for good. They are refused in validation, where no host
// is needed, so that `outpost validate` reports them before a merge.

// protectedPrefixes are unit name prefixes (before the type suffix) that
// are always refused, whatever their type.
var protectedPrefixes = []struct{ prefix, why string }{
	{"outpost-", "one of the agent's own units"},
	{"outpost@", "one of the agent's own units"},
	{"systemd-", "one of systemd's core units"},
	{"initrd", "one of systemd's boot units"},
	{"getty@", "a console login unit"},
	{"serial-getty@", "a console login unit"},
	{"container-getty@", "a console login unit"},
	{"autovt@", "a console login unit"},
	{"user@", "systemd's per-user manager"},
	{"user-runtime-dir@", "systemd's per-user manager"},
	{"dbus-", "the system bus"},
	{"sshd@", "the SSH server"},
	{"ssh@", "the SSH server"},
}

// protectedBases are unit names without their type suffix that are always
// refused, whatever their type (outpost.service and outpost.socket alike).
var protectedBases = map[string]string{
	"outpost": "one of the agent's own units",
	"dbus":    "the system bus",
	"ssh":     "the SSH server",
	"sshd":    "the SSH server",
	"init":    "systemd's own scope",
	"-":       "the root slice or mount",
	"system":  "systemd's system slice",
	"user":    "systemd's user slice",
	"machine": "systemd's machine slice",
	// The targets that systemd ships and that order boot and shutdown.
	"default": "a boot target", "multi-user": "a boot target", "graphical": "a boot target",
	"basic": "a boot target", "sysinit": "a boot target", "local-fs": "a boot target",
	"local-fs-pre": "a boot target", "remote-fs": "a boot target", "remote-fs-pre": "a boot target",
	"network": "a boot target", "network-online": "a boot target", "network-pre": "a boot target",
	"sockets": "a boot target", "timers": "a boot target", "paths": "a boot target",
	"slices": "a boot target", "swap": "a boot target", "getty": "a boot target",
	"getty-pre": "a boot target", "emergency": "the emergency mode", "rescue": "the rescue mode",
	"shutdown": "a shutdown target", "reboot": "a shutdown target", "poweroff": "a shutdown target",
	"halt": "a shutdown target", "kexec": "a shutdown target", "final": "a shutdown target",
	"umount": "a shutdown target", "ctrl-alt-del": "a shutdown target", "soft-reboot": "a shutdown target",
	"exit": "a shutdown target", "cryptsetup": "a boot target", "cryptsetup-pre": "a boot target",
	"nss-lookup": "a boot target", "nss-user-lookup": "a boot target", "time-set": "a boot target",
	"time-sync": "a boot target", "sysinit-pre": "a boot target", "system-update": "a boot target",
	"system-update-pre": "a boot target", "first-boot-complete": "a boot target",
	"console-getty": "a console login unit",
}

// protectedUnit says why the unit name n may never be managed, or "" when
// it may. n is a valid unit name.
func protectedUnit(n string) string {
	base := n[:strings.LastIndexByte(n, '.')]
	if why, ok := protectedBases[base]; ok {
		return why
	}
	for _, p := range protectedPrefixes {
		if strings.HasPrefix(base, p.prefix) {
			return p.why
		}
	}
	return ""
}
