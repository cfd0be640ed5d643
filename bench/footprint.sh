#!/usr/bin/env bash
# Outpost's footprint on a host: the size of its binary; the resident memory
# and CPU time of `outpost run` left idle with 100 file resources and a
# 1-minute poll; and the cost of one poll that finds nothing new (requests,
# bytes, CPU), measured at a counting `git http-backend` on loopback and set
# beside ansible-pull's cheapest unchanged run (--only-if-changed) against
# the same server and repository.
#
#   bench/footprint.sh            idle sample of 10 minutes, 5 polls each
#   bench/footprint.sh --quick    idle sample of 60 s, 1 poll each (CI)
#
# Environment: SAMPLE=seconds of the idle sample, REPS=polls measured,
# QUICK=1, OUTPOST=a built binary, BENCH_BIN=a directory holding a built
# gitfront (bench/cmd/gitfront).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=${QUICK:-0}
[[ ${1:-} == --quick ]] && quick=1
if ((quick)); then
	SAMPLE=${SAMPLE:-60}
	REPS=${REPS:-1}
	STEP=${STEP:-5}
else
	SAMPLE=${SAMPLE:-600}
	REPS=${REPS:-5}
	STEP=${STEP:-10}
fi
need git curl /usr/bin/time ansible-pull

T=$(mktemp -d /tmp/outpost-bench-footprint.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT
OUTPOST_GIVEN=${OUTPOST:-}
build_outpost "$T"
build_tool "$T" gitfront
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost \
	GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost \
	ANSIBLE_NOCOLOR=True ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3

echo "# Outpost's footprint"
machine
echo "outpost: $("$OUTPOST" version)"
started=$(cut -d' ' -f1-3 /proc/loadavg)

# The binary: static, stripped, as released (build_outpost builds it so;
# a binary given in OUTPOST is measured as it is).
bin_how="CGO_ENABLED=0, -trimpath, -ldflags '-s -w'"
[[ -n ${OUTPOST_GIVEN:-} ]] && bin_how="as given in OUTPOST"
bin_bytes=$(stat -c %s "$OUTPOST")
ansible_kb=$(dpkg-query -W -f='${Installed-Size}' ansible-core 2>/dev/null || echo 0)

# A repository of 100 files, and a playbook for ansible-pull's poll.
src=$T/src
mkdir -p "$src/files/d00" "$src/.ansible" "$T/repos"
for ((i = 0; i < 100; i++)); do
	printf -v f 'f%05d.conf' "$i"
	printf 'name = %s\nindex = %d\n' "$f" "$i" >"$src/files/d00/$f"
	printf 'kind: file\npath: /srv/bench/d00/%s\nsource: %s\nmode: "0644"\n---\n' "$f" "$f" >>"$src/files/d00/files.yaml"
done
printf 'targets:\n  - path: files\n' >"$src/fleet.yaml"
printf -- '- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: converge}\n' >"$src/.ansible/site.yml"
git -C "$src" init -q -b main
git -C "$src" add -A
git -C "$src" commit -q -m "100 files"
git clone -q --bare "$src" "$T/repos/env.git"

"$GITFRONT" -root "$T/repos" -addr-file "$T/addr" 2>"$T/gitfront.log" &
pids+=($!)
for ((i = 0; i < 100; i++)); do [[ -s $T/addr ]] && break; sleep 0.1; done
addr=$(<"$T/addr")
url=http://$addr/env.git
stats() { curl -fsS "http://$addr/_stats"; }
reset() { curl -fsS "http://$addr/_reset" >/dev/null; }
field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

cat >"$T/agent.yaml" <<YAML
source:
  url: $url
  interval: 1m
host:
  name: bench
status:
  push: false
state_dir: $T/state
YAML

"$OUTPOST" run --config "$T/agent.yaml" --root "$T/root" --socket "$T/sock" >"$T/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
for ((i = 0; i < 1200; i++)); do
	if "$OUTPOST" status --socket "$T/sock" --json 2>/dev/null | grep -q '"result": *"applied"'; then
		break
	fi
	kill -0 "$daemon" 2>/dev/null || { echo "bench: outpost run exited" >&2; cat "$T/daemon.log" >&2; exit 1; }
	sleep 0.25
done
((i < 1200)) || { echo "bench: outpost run did not converge in 300 s" >&2; cat "$T/daemon.log" >&2; exit 1; }
[[ -f $T/root/srv/bench/d00/f00099.conf ]] || { echo "bench: outpost run did not write the files" >&2; exit 1; }

ticks() { awk '{print $14+$15}' "/proc/$daemon/stat"; }
hz=$(getconf CLK_TCK)

# One unchanged poll, asked for with `outpost reconcile`: the requests and
# bytes at the server, its http-backend CPU, and the daemon's CPU.
: >"$T/poll.o"
for ((k = 0; k < REPS; k++)); do
	reset
	c0=$(ticks)
	t0=$EPOCHREALTIME
	"$OUTPOST" reconcile --socket "$T/sock" --json >"$T/reconcile.json"
	t1=$EPOCHREALTIME
	c1=$(ticks)
	s=$(stats)
	echo "$(echo "$s" | field requests) $(( $(echo "$s" | field bytes_in) + $(echo "$s" | field bytes_out) )) $(echo "$s" | field backend_cpu_s) $(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN{printf "%.3f", (b-a)/hz}') $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" >>"$T/poll.o"
done

# ansible-pull's cheapest unchanged run: --only-if-changed skips the
# playbook when the checkout did not move. The first run clones.
ansible-pull -U "$url" -C main -d "$T/a-work" -i localhost, -o .ansible/site.yml >"$T/ansible.log" 2>&1
: >"$T/poll.a"
for ((k = 0; k < REPS; k++)); do
	reset
	: >"$T/m.a"
	measure "$T/m.a" "$T/ansible.log" ansible-pull -U "$url" -C main -d "$T/a-work" -i localhost, -o .ansible/site.yml
	s=$(stats)
	read -r wall cpu rss <"$T/m.a"
	echo "$(echo "$s" | field requests) $(( $(echo "$s" | field bytes_in) + $(echo "$s" | field bytes_out) )) $(echo "$s" | field backend_cpu_s) $cpu $wall $rss" >>"$T/poll.a"
done
grep -q "Repository has not changed" "$T/ansible.log" || { echo "bench: ansible-pull did not see an unchanged repository" >&2; tail "$T/ansible.log" >&2; exit 1; }

r3() { awk -v x="$1" 'BEGIN{printf "%.3f", x}'; }

# Idle: the daemon left alone with its 1-minute poll.
echo "sampling the idle daemon for $SAMPLE s every $STEP s..."
reset
c0=$(ticks)
t0=$EPOCHREALTIME
: >"$T/rss"
end=$((SECONDS + SAMPLE))
while ((SECONDS < end)); do
	awk '/VmRSS/ {print $2}' "/proc/$daemon/status" >>"$T/rss"
	sleep "$STEP"
done
c1=$(ticks)
t1=$EPOCHREALTIME
s=$(stats)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
idle_cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz}')
idle_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
rss_min=$(sort -n "$T/rss" | head -1)
rss_max=$(sort -n "$T/rss" | tail -1)
rss_med=$(median "$T/rss" 1)

echo
echo "| figure | Outpost | ansible-pull |"
echo "| --- | ---: | ---: |"
echo "| program size | $(awk -v b="$bin_bytes" 'BEGIN{printf "%.1f MB", b/1048576}') (one static binary: $bin_how) | $(awk -v k="$ansible_kb" 'BEGIN{printf "%.1f MB", k/1024}') (ansible-core package, without Python) |"
echo "| resident memory idle, $SAMPLE s sampled every $STEP s (min / median / max) | $(mb "$rss_min") / $(mb "$rss_med") / $(mb "$rss_max") MB | 0 between runs (cron) |"
echo "| peak resident memory of the daemon since start | $(mb "$hwm") MB | |"
echo "| CPU time idle over the sample | $idle_cpu s in $idle_wall s ($(awk -v c="$idle_cpu" -v w="$idle_wall" 'BEGIN{printf "%.3f", 100*c/w}')% of a core) | |"
echo "| requests at the server while idle | $(echo "$s" | field requests) | |"
echo "| requests per unchanged poll (median) | $(median "$T/poll.o" 1) | $(median "$T/poll.a" 1) |"
echo "| bytes per unchanged poll, both ways (median) | $(median "$T/poll.o" 2) | $(median "$T/poll.a" 2) |"
echo "| server CPU per unchanged poll, http-backend (median s) | $(r3 "$(median "$T/poll.o" 3)") | $(r3 "$(median "$T/poll.a" 3)") |"
echo "| client CPU per unchanged poll (median s) | $(median "$T/poll.o" 4) (daemon, reconcile: fetch and full pass over 100 files) | $(median "$T/poll.a" 4) (ansible-pull and git) |"
echo "| wall time per unchanged poll (median s) | $(median "$T/poll.o" 5) | $(median "$T/poll.a" 5) |"
echo "| peak resident memory of an unchanged poll | the daemon's, above | $(mb "$(median "$T/poll.a" 6)") MB |"
echo
echo "load average at the start: $started; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "polls measured: $REPS each; Outpost's poll is 'outpost reconcile' against 'outpost run',"
echo "which also runs a full pass over the 100 files; status.push is off."
