# Shared helpers of the bench/ scripts: building Outpost, timing a command
# with GNU time, medians and tables. Sourced, not run.

bench_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# need fails when a program that a script needs is missing.
need() {
	local p
	for p in "$@"; do
		if ! command -v "$p" >/dev/null 2>&1; then
			echo "bench: $p is required but not installed" >&2
			case $p in
			/usr/bin/time) echo "bench: apt-get install time" >&2 ;;
			ansible-pull) echo "bench: apt-get install ansible-core" >&2 ;;
			esac
			exit 2
		fi
	done
}

# build_outpost DIR: sets OUTPOST to a binary; $OUTPOST from the caller wins.
build_outpost() {
	if [[ -n ${OUTPOST:-} ]]; then
		OUTPOST=$(readlink -f "$OUTPOST")
		return
	fi
	local go=go
	command -v go >/dev/null 2>&1 || go=/usr/local/go/bin/go
	(cd "$bench_repo" && CGO_ENABLED=0 "$go" build -trimpath -ldflags '-s -w' -o "$1/outpost" ./cmd/agent)
	OUTPOST=$1/outpost
}

# measure FILE LOG CMD...: runs CMD under GNU time and appends
# "wall_s cpu_s maxrss_kb" to FILE; CMD's output goes to LOG. A failing
# CMD fails the script with the end of LOG.
measure() {
	local file=$1 log=$2
	shift 2
	local tv=$file.time t0 t1
	t0=$EPOCHREALTIME
	if ! /usr/bin/time -v -o "$tv" "$@" >>"$log" 2>&1; then
		echo "bench: failed: $*" >&2
		tail -n 20 "$log" >&2
		exit 1
	fi
	t1=$EPOCHREALTIME
	awk -v t0="$t0" -v t1="$t1" -F': ' '
		/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {m=$2}
		END {printf "%.3f %.3f %d\n", t1-t0, u+s, m}' "$tv" >>"$file"
}

# median FILE COLUMN: the median of one column of a measure file.
median() {
	awk -v c="$2" '{print $c}' "$1" | sort -g | awk '
		{v[NR]=$1} END {
			if (NR == 0) {print "n/a"; exit}
			if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2 }'
}

# ratio A B: A/B with two decimals.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f\n", a/b }'
}

# mb KB: kilobytes as megabytes with one decimal.
mb() {
	awk -v k="$1" 'BEGIN { if (k == "n/a") print k; else printf "%.1f\n", k/1024 }'
}

# machine prints what the figures ran on.
machine() {
	echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
	echo "load average (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
}

# build_tool DIR NAME: sets the upper-case NAME (GITFRONT, FLEET) to the
# helper bench/cmd/NAME, from $BENCH_BIN when it holds one, else built.
build_tool() {
	local dir=$1 name=$2 var bin
	var=$(echo "$name" | tr a-z A-Z)
	bin=${BENCH_BIN:-}/$name
	if [[ -z ${BENCH_BIN:-} || ! -x $bin ]]; then
		local go=go
		command -v go >/dev/null 2>&1 || go=/usr/local/go/bin/go
		bin=$dir/$name
		(cd "$bench_repo" && CGO_ENABLED=0 "$go" build -o "$bin" "./bench/cmd/$name")
	fi
	printf -v "$var" '%s' "$bin"
}
