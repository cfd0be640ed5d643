#!/bin/sh
# After removal, for both the .deb and the .rpm: let systemd forget the unit.
# On a deb purge, remove the agent's state and the host's age key too
# (the post-install made it); dpkg removes agent.yaml.
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "${1:-}" = purge ]; then
	rm -rf /var/lib/outpost
	rm -f /etc/outpost/age.key
	rmdir /etc/outpost 2>/dev/null || true
fi
exit 0
