// Command notifier stands in for the agent under packaging's outpost.service:
// it says READY with a status, pings the watchdog, and runs until stopped.
package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	sd.SdNotify(false, sd.SdNotifyReady+"\nSTATUS=ready")
	every, _ := sd.SdWatchdogEnabled(false)
	if every <= 0 {
		every = time.Hour
	}
	tick := time.NewTicker(every / 2)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case <-tick.C:
			sd.SdNotify(false, sd.SdNotifyWatchdog)
		case <-stop:
			sd.SdNotify(false, sd.SdNotifyStopping)
			return
		}
	}
}
