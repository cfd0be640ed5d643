#!/usr/bin/env bash
# Outpost against ansible-pull on N systemd units in the test host
# (test/e2e/host, systemd-nspawn): the same unit files from the same local
# bare Git repository. Measures the first converge, a no-op converge, a
# converge after one unit changed in Git, and the repair of one unit file
# edited by hand (Outpost: the running daemon and its watchers, from the edit
# to the unit active again; ansible-pull: its next run). Prints the medians,
# the ratio and the peak memory of each. It runs the Go benchmark
# BenchmarkUnits (bench/units_test.go), since the test host is booted from Go.
#
#   bench/ansible-units.sh            20 units, 3 repetitions
#   bench/ansible-units.sh --quick    3 units, 1 repetition (go test ./bench
#                                     runs the same as TestUnitsQuick)
#
# Environment: UNITS=20, REPS=3, QUICK=1 (same as --quick). Needs
# systemd-nspawn, debootstrap and the Debian mirror, to build the host's root
# filesystem with ansible-core once (cached in /var/cache/outpost-test).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=${QUICK:-0}
[[ ${1:-} == --quick ]] && quick=1
if ((quick)); then
	UNITS=${UNITS:-3}
	REPS=${REPS:-1}
else
	UNITS=${UNITS:-20}
	REPS=${REPS:-3}
fi
need git systemd-nspawn

T=$(mktemp -d /tmp/outpost-bench-units.XXXXXX)
trap 'rm -rf "$T"' EXIT
go=go
command -v go >/dev/null 2>&1 || go=/usr/local/go/bin/go
if ! (cd "$bench_repo" && UNITS=$UNITS REPS=$REPS UNITS_REPORT=$T/report.md \
	"$go" test -run '^$' -bench '^BenchmarkUnits$' -benchtime 1x -timeout 90m ./bench/) >"$T/out.txt" 2>&1; then
	cat "$T/out.txt" >&2
	exit 1
fi
cat "$T/report.md"
