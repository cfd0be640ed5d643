#!/bin/sh
# After install or upgrade: make systemd see the unit, enable it, and start or
# restart the agent only when its configuration names a source.
set -e

chmod 0700 /etc/outpost /var/lib/outpost 2>/dev/null || true
chmod 0600 /etc/outpost/agent.yaml 2>/dev/null || true

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	systemctl enable outpost.service >/dev/null 2>&1 || true
	if grep -Eq '^[[:space:]]*url:[[:space:]]*["'\'']?[^"'\''[:space:]]' /etc/outpost/agent.yaml 2>/dev/null; then
		# restart covers both a first start and an upgrade of a running agent.
		systemctl restart outpost.service || true
	fi
fi
exit 0
