#!/bin/sh
# Before removal (not before an upgrade): stop and disable the agent. What the
# agent deployed stays on the host; its state stays in /var/lib/outpost.
set -e

case "$1" in
upgrade|1) exit 0 ;; # deb upgrade passes "upgrade"; rpm passes 1 when another version remains
esac

if [ -d /run/systemd/system ]; then
	systemctl stop outpost.service >/dev/null 2>&1 || true
	systemctl disable outpost.service >/dev/null 2>&1 || true
fi
exit 0
