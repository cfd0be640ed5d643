#!/bin/sh
# After install or upgrade, for both the .deb and the .rpm.
#
# First install: enable outpost.service, and start it only when
# /etc/outpost/agent.yaml names a source (source.url); the packaged file names
# none, so a bare install starts nothing until the host is configured.
# Upgrade: restart the agent if it runs, so the new binary takes over; an
# operator's earlier disable or stop is kept.
set -e

# deb: "configure" with the previously configured version on an upgrade;
# rpm: the number of installed versions, 2 or more on an upgrade.
upgrade=false
case "${1:-}" in
configure) if [ -n "${2:-}" ]; then upgrade=true; fi ;;
abort-upgrade) upgrade=true ;;
[0-9]*) if [ "$1" -gt 1 ]; then upgrade=true; fi ;;
esac

chmod 0700 /etc/outpost /var/lib/outpost 2>/dev/null || true
chmod 0600 /etc/outpost/agent.yaml 2>/dev/null || true
# The host's own age key for the repository's encrypted files, made once
# (the agent makes it too on its first start); its recipient is in the
# host's status notes.
/usr/bin/outpost secrets key --config /etc/outpost/agent.yaml >/dev/null 2>&1 || true

command -v systemctl >/dev/null 2>&1 || exit 0

has_source() {
	grep -Eq '^[[:space:]]+url:[[:space:]]*["'\'']?[^"'\''[:space:]#]' /etc/outpost/agent.yaml 2>/dev/null
}

if [ "$upgrade" = false ]; then
	# enable works without a running systemd too (an image being built),
	# so the agent starts on the image's first boot.
	systemctl enable outpost.service >/dev/null 2>&1 || true
fi
# Without a running systemd (a chroot, a container build) there is nothing
# to start.
[ -d /run/systemd/system ] || exit 0
systemctl daemon-reload >/dev/null 2>&1 || true
if [ "$upgrade" = true ]; then
	systemctl try-restart outpost.service ||
		echo "outpost: the agent did not restart; see journalctl -u outpost" >&2
elif has_source; then
	systemctl start outpost.service ||
		echo "outpost: the agent did not start; see journalctl -u outpost" >&2
fi
exit 0
