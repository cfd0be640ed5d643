#!/bin/sh
# After removal: let systemd forget the unit. On purge, remove the state.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = "purge" ]; then
	rm -rf /var/lib/outpost
fi
exit 0
