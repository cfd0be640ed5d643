#!/usr/bin/env bash
# The load that a fleet puts on one Git server: agents (goroutines, each with
# its own clone cache, polling through internal/pull as `outpost run` does)
# poll one repository served by `git http-backend` on loopback, first with
# nothing changing, then with one commit per minute. Prints requests per
# second, bytes and the http-backend processes' CPU time (getrusage of the
# finished children) for each phase. See bench/cmd/fleet.
#
#   bench/fleet-git.sh            500 agents, 30 s polls, 10 minutes a phase
#   bench/fleet-git.sh --quick    50 agents, 30 s polls, 60 s a phase (CI)
#
# Environment: AGENTS, INTERVAL, DURATION, COMMIT_EVERY (Go durations),
# QUICK=1, BENCH_BIN=a directory holding a built fleet.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=${QUICK:-0}
[[ ${1:-} == --quick ]] && quick=1
if ((quick)); then
	AGENTS=${AGENTS:-50}
	DURATION=${DURATION:-60s}
else
	AGENTS=${AGENTS:-500}
	DURATION=${DURATION:-10m}
fi
INTERVAL=${INTERVAL:-30s}
COMMIT_EVERY=${COMMIT_EVERY:-1m}
need git

T=$(mktemp -d /tmp/outpost-bench-fleet.XXXXXX)
trap 'rm -rf "$T"' EXIT
build_tool "$T" fleet

echo "# A fleet polling one git http-backend server"
machine
started=$(cut -d' ' -f1-3 /proc/loadavg)
"$FLEET" -agents "$AGENTS" -interval "$INTERVAL" -duration "$DURATION" \
	-commit-every "$COMMIT_EVERY" -work "$T/work"
echo
echo "load average at the start: $started; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server CPU is the git http-backend processes' user + system time; the agents and the"
echo "HTTP front share one process, whose CPU is the second table."
