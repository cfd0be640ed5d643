package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// The sd_notify pieces that the daemon calls under outpost.service
// (Type=notify, WatchdogSec=). Each is a no-op returning nil when the
// process does not run under systemd (NOTIFY_SOCKET unset).

// NotifyReady tells systemd that start-up finished, with a status line.
func NotifyReady(status string) error {
	return notify(sd.SdNotifyReady + "\nSTATUS=" + oneLine(status))
}

// NotifyStatus sets the status line that systemctl status shows.
func NotifyStatus(status string) error {
	return notify("STATUS=" + oneLine(status))
}

// NotifyStopping tells systemd that the daemon is shutting down.
func NotifyStopping() error {
	return notify(sd.SdNotifyStopping)
}

// NotifyWatchdog pings systemd's watchdog.
func NotifyWatchdog() error {
	return notify(sd.SdNotifyWatchdog)
}

// WatchdogInterval is how often to ping the watchdog: half of WatchdogSec,
// or 0 when systemd does not watch this process.
func WatchdogInterval() time.Duration {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// RunWatchdog pings the watchdog every WatchdogInterval until ctx is done,
// and returns at once when there is no watchdog. It returns nil when ctx is
// done, or the error of a ping that could not be sent. Pinging from a
// goroutine of its own proves only that the process lives; a loop that
// wants its own liveness watched calls NotifyWatchdog itself, at least every
// WatchdogInterval, also during a long pass.
func RunWatchdog(ctx context.Context) error {
	every := WatchdogInterval()
	if every == 0 {
		return nil
	}
	if err := NotifyWatchdog(); err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := NotifyWatchdog(); err != nil {
				return err
			}
		}
	}
}

func notify(state string) error {
	if _, err := sd.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// oneLine keeps a status to one line: the protocol is one assignment per
// line, so a newline in a status would set other variables.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
