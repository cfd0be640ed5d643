#!/bin/sh
# After removal, for both the .deb and the .rpm: let systemd forget the unit.
# On a deb purge, remove the agent's state too; dpkg removes agent.yaml.
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "${1:-}" = purge ]; then
	rm -rf /var/lib/outpost
fi
exit 0
