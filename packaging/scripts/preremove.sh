#!/bin/sh
# Before removal, for both the .deb and the .rpm: stop and disable the agent.
# Not before an upgrade, whose postinstall restarts it. What the agent
# deployed stays on the host, and its state stays in /var/lib/outpost.
set -e

case "${1:-}" in
# deb: "upgrade" or "failed-upgrade"; rpm: 1, a version stays installed.
upgrade | failed-upgrade | 1) exit 0 ;;
esac

command -v systemctl >/dev/null 2>&1 || exit 0
if [ -d /run/systemd/system ]; then
	systemctl stop outpost.service >/dev/null 2>&1 || true
fi
systemctl disable outpost.service >/dev/null 2>&1 || true
exit 0
