#!/usr/bin/env bash
# How Outpost's converge grows with the desired state: `outpost apply` of
# 10, 100, 1,000 and 10,000 file resources from a local bare Git repository
# (file://), the first converge into an empty root and a no-op converge,
# with wall time, CPU time and peak memory, and how CPU per file changes as
# the size grows tenfold. Containers: see bench/README.md.
#
#   bench/scale.sh            10 100 1000 10000 files, 3 repetitions, then
#                             1, 10 and 50 containers (BenchmarkApplyContainers)
#   bench/scale.sh --quick    10 and 100 files, 1 repetition, no containers (CI)
#
# Environment: SIZES, REPS, QUICK=1, OUTPOST=a built binary, CONTAINERS=0
# to leave the containers out.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=${QUICK:-0}
[[ ${1:-} == --quick ]] && quick=1
if ((quick)); then
	SIZES=${SIZES:-10 100}
	REPS=${REPS:-1}
	CONTAINERS=${CONTAINERS:-0}
else
	SIZES=${SIZES:-10 100 1000 10000}
	REPS=${REPS:-3}
	CONTAINERS=${CONTAINERS:-1}
fi
need git /usr/bin/time

T=$(mktemp -d /tmp/outpost-bench-scale.XXXXXX)
trap 'rm -rf "$T"' EXIT
build_outpost "$T"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost \
	GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost

# make_repo DIR N: N files in directories of 100, one manifest per
# directory, pushed to DIR/env.git.
make_repo() {
	local dir=$1 n=$2 i d f
	mkdir -p "$dir/src"
	for ((i = 0; i < n; i++)); do
		printf -v d 'd%03d' $((i / 100))
		printf -v f 'f%05d.conf' "$i"
		[[ -d $dir/src/$d ]] || mkdir "$dir/src/$d"
		printf '# generated for the benchmark\nname = %s\nindex = %d\n' "$f" "$i" >"$dir/src/$d/$f"
		printf 'kind: file\npath: /srv/bench/%s/%s\nsource: %s\nmode: "0640"\n---\n' "$d" "$f" "$f" >>"$dir/src/$d/files.yaml"
	done
	git -C "$dir/src" init -q -b main
	git -C "$dir/src" add -A
	git -C "$dir/src" commit -q -m "$n files"
	git clone -q --bare "$dir/src" "$dir/env.git"
}

echo "# Outpost's converge as the desired state grows (files)"
machine
echo "outpost: $("$OUTPOST" version)"
echo "repetitions: $REPS; sizes: $SIZES"
started=$(cut -d' ' -f1-3 /proc/loadavg)

results=$T/results.md
{
	echo "| files | first wall s | first CPU s | first peak RSS MB | no-op wall s | no-op CPU s | no-op peak RSS MB | no-op CPU ms per file | no-op CPU vs the size before |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$results"
prev=""
for n in $SIZES; do
	dir=$T/n$n
	make_repo "$dir" "$n"
	flags=(--config /dev/null --source "file://$dir/env.git" --state-dir "$dir/state" --root "$dir/root" --host bench)
	for ((k = 0; k < REPS; k++)); do
		rm -rf "$dir/state" "$dir/root"
		measure "$dir/first" "$dir/log" "$OUTPOST" apply "${flags[@]}"
	done
	[[ -f $dir/root/srv/bench/d000/f00000.conf ]] || { echo "bench: apply wrote nothing" >&2; exit 1; }
	for ((k = 0; k < REPS; k++)); do
		measure "$dir/noop" "$dir/log" "$OUTPOST" apply "${flags[@]}"
	done
	grep -q "nothing to do" "$dir/log" || { echo "bench: the second apply was not a no-op" >&2; tail "$dir/log" >&2; exit 1; }
	cpu=$(median "$dir/noop" 2)
	growth=""
	[[ -n $prev ]] && growth="x$(ratio "$cpu" "$prev")"
	echo "| $n | $(median "$dir/first" 1) | $(median "$dir/first" 2) | $(mb "$(median "$dir/first" 3)") | $(median "$dir/noop" 1) | $cpu | $(mb "$(median "$dir/noop" 3)") | $(awk -v c="$cpu" -v n="$n" 'BEGIN{printf "%.3f", 1000*c/n}') | $growth |" >>"$results"
	prev=$cpu
	rm -rf "$dir"
done

echo
cat "$results"
echo
echo "load average at the start: $started; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medians of $REPS runs of 'outpost apply --source file://BARE.git' (Git, read in place);"
echo "CPU is user + system time; peak RSS from GNU time."

((CONTAINERS)) || exit 0
echo
echo "# Outpost's converge of containers (real Docker engine, image from a loopback registry)"
go=go
command -v go >/dev/null 2>&1 || go=/usr/local/go/bin/go
(cd "$bench_repo" && "$go" test -run '^$' -bench ApplyContainers -benchtime 1x -timeout 30m ./bench/) >"$T/containers.txt" 2>&1 || {
	cat "$T/containers.txt" >&2
	exit 1
}
echo "| containers | first wall s | first CPU s | first peak RSS MB | no-op wall s | no-op CPU s | no-op peak RSS MB | prune wall s |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
awk '/^BenchmarkApplyContainers\/containers=/ {
	split($1, a, "="); sub(/-[0-9]+$/, "", a[2])
	for (i = 3; i < NF; i += 2) v[$(i+1)] = $i
	printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", a[2], v["first-s"], v["first-cpu-s"], v["first-MB"], v["noop-s"], v["noop-cpu-s"], v["noop-MB"], v["prune-s"]
}' "$T/containers.txt"
echo
echo "one run each (-benchtime 1x); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
