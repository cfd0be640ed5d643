package agent

// SystemdNotifier tells systemd about the daemon through sd_notify (see
// notify.go): READY after the first converge, STATUS with the revision and
// its result, and WATCHDOG from the loop. Outside systemd (no NOTIFY_SOCKET)
// it does nothing.
func SystemdNotifier() Notifier { return sdNotifier{} }

type sdNotifier struct{}

func (sdNotifier) Ready(status string)  { NotifyReady(status) }
func (sdNotifier) Status(status string) { NotifyStatus(status) }
func (sdNotifier) Watchdog()            { NotifyWatchdog() }
