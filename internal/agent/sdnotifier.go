package agent

import sd "github.com/coreos/go-systemd/v22/daemon"

// SystemdNotifier tells systemd about the daemon through sd_notify: READY
// after the first converge, STATUS with the revision and its result, and
// WATCHDOG from the loop. Outside systemd (no NOTIFY_SOCKET) it does nothing.
func SystemdNotifier() Notifier { return sdNotifier{} }

type sdNotifier struct{}

func (sdNotifier) Ready(status string) {
	sd.SdNotify(false, sd.SdNotifyReady+"\nSTATUS="+status)
}

func (sdNotifier) Status(status string) { sd.SdNotify(false, "STATUS="+status) }

func (sdNotifier) Watchdog() { sd.SdNotify(false, sd.SdNotifyWatchdog) }
