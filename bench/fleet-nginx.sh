#!/usr/bin/env bash
# A fleet polling a Git server as production serves it: Debian's nginx and
# fcgiwrap in front of git http-backend, a repository with one notes ref per
# host (packed), every agent (a goroutine with its own clone cache, polling
# through internal/pull as `outpost run` does) polling at its splay, first
# in protocol v2 and then with v0 forced (the location drops the
# Git-Protocol header). Prints polls per second, bytes per poll on the
# wire, the server's CPU (nginx, fcgiwrap and every http-backend and
# upload-pack, from /proc) and the latency percentiles. See bench/cmd/fleet.
#
#   bench/fleet-nginx.sh           10,000 agents and refs, 60 s polls; v2 10 minutes, v0 3 minutes
#   bench/fleet-nginx.sh --quick   200 agents, 10,000 refs, 10 s polls, 20 s a phase
#
# Environment: AGENTS, REFS, INTERVAL, DURATION, DURATION_V0 (Go
# durations), QUICK=1, BENCH_BIN=a directory holding a built fleet.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=${QUICK:-0}
[[ ${1:-} == --quick ]] && quick=1
if ((quick)); then
	AGENTS=${AGENTS:-200}
	INTERVAL=${INTERVAL:-10s}
	DURATION=${DURATION:-20s}
	DURATION_V0=${DURATION_V0:-20s}
else
	AGENTS=${AGENTS:-10000}
	INTERVAL=${INTERVAL:-60s}
	DURATION=${DURATION:-10m}
	DURATION_V0=${DURATION_V0:-3m}
fi
REFS=${REFS:-10000}
need git nginx fcgiwrap

T=$(mktemp -d /tmp/outpost-bench-fleet-nginx.XXXXXX)
trap 'rm -rf "$T"' EXIT
build_tool "$T" fleet

echo "# A fleet polling nginx + fcgiwrap + git http-backend, $REFS notes refs"
machine
for proto in v2 v0; do
	d=$DURATION
	[[ $proto == v0 ]] && d=$DURATION_V0
	echo
	"$FLEET" -server nginx -protocol "$proto" -agents "$AGENTS" -refs "$REFS" \
		-interval "$INTERVAL" -duration "$d" -work "$T/$proto"
	rm -rf "${T:?}/$proto"
done
echo
echo "wire bytes are both ways, HTTP headers included, counted by a TCP proxy in"
echo "front of nginx; server CPU is the user + system time of nginx's and fcgiwrap's"
echo "process groups with their reaped children, from /proc/PID/stat."
