#!/bin/sh
# Installs Outpost from a package and points it at an environment repository.
# The same script provisions the Vagrant machines and the systemd test host in
# CI, so what CI proves is what a VM does.
#
#   provision.sh PACKAGE REPO_URL [BRANCH] [LABELS]
#
# PACKAGE   a .deb or .rpm built by goreleaser, or the dist/ directory that
#           holds them (the machine's own format and architecture is taken)
# REPO_URL  the environment repository, e.g. git://192.168.56.1/env.git
# BRANCH    default main
# LABELS    comma-separated k=v pairs, e.g. role=web,site=lab
set -eu

pkg=${1:?usage: provision.sh PACKAGE REPO_URL [BRANCH] [LABELS]}
url=${2:?usage: provision.sh PACKAGE REPO_URL [BRANCH] [LABELS]}
branch=${3:-main}
labels=${4:-}

# A directory holds goreleaser's output: take this machine's package from it.
if [ -d "$pkg" ]; then
	if command -v dpkg >/dev/null 2>&1; then
		arch=$(dpkg --print-architecture)
		pkg=$(ls "$pkg"/outpost_*_linux_"$arch".deb | tail -n 1)
	else
		case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
		pkg=$(ls "$pkg"/outpost_*_linux_"$arch".rpm | tail -n 1)
	fi
fi

case "$pkg" in
*.deb) DEBIAN_FRONTEND=noninteractive dpkg --force-confold -i "$pkg" ;;
*.rpm) rpm -Uvh --replacepkgs "$pkg" ;;
*) echo "provision.sh: $pkg is neither a .deb nor an .rpm" >&2; exit 2 ;;
esac

# The package's agent.yaml names no source, so the service is enabled but not
# started. Write this host's configuration, then start it.
umask 077
{
	echo "source:"
	echo "  url: $url"
	echo "  branch: $branch"
	echo "  interval: 5s"
	echo "host:"
	if [ -n "$labels" ]; then
		echo "  labels:"
		echo "$labels" | tr ',' '\n' | while IFS='=' read -r k v; do
			[ -n "$k" ] && echo "    $k: \"$v\""
		done
	else
		echo "  labels: {}"
	fi
	echo "status:"
	echo "  push: true"
	echo "state_dir: /var/lib/outpost"
} >/etc/outpost/agent.yaml.new
mv /etc/outpost/agent.yaml.new /etc/outpost/agent.yaml

systemctl daemon-reload
systemctl enable outpost.service
systemctl restart outpost.service
systemctl is-active outpost.service
