#!/usr/bin/env bash
# Outpost against ansible-pull on the same desired state: N files with modes,
# pulled from the same local bare Git repository. For each size it measures
# the first converge, a no-op converge, a converge after one file changed in
# Git, and the repair of one file edited by hand (Outpost: the running daemon
# and its watcher, from the edit to the content restored; ansible-pull: its
# next run). Prints the medians, the ratio and the peak memory of each.
#
#   bench/ansible-files.sh            200 then 1,000 files, 3 repetitions
#   bench/ansible-files.sh --quick    5 files, 1 repetition (CI)
#
# Environment: SIZES="200 1000", REPS=3, QUICK=1 (same as --quick), and
# OUTPOST=path to use a built binary instead of building one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=${QUICK:-0}
[[ ${1:-} == --quick ]] && quick=1
if ((quick)); then
	SIZES=${SIZES:-5}
	REPS=${REPS:-1}
else
	SIZES=${SIZES:-200 1000}
	REPS=${REPS:-3}
fi
need git /usr/bin/time ansible-pull

T=$(mktemp -d /tmp/outpost-bench-ansible.XXXXXX)
daemon=""
cleanup() {
	if [[ -n $daemon ]]; then
		kill "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT
build_outpost "$T"

# ansible-pull with its usual speed-ups for a local run: pipelining, and no
# interpreter discovery or colour.
export ANSIBLE_PIPELINING=True ANSIBLE_NOCOLOR=True ANSIBLE_LOCALHOST_WARNING=False \
	ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 ANSIBLE_RETRY_FILES_ENABLED=False
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost \
	GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost

modes=(0640 0644 0600)

# make_repo DIR N: a work tree DIR/src with N files in directories of 100,
# Outpost's manifests beside them, and the playbook in .ansible/; pushed to
# the bare repository DIR/env.git.
make_repo() {
	local dir=$1 n=$2 i d f m
	mkdir -p "$dir/src/.ansible"
	{
		echo "- hosts: localhost"
		echo "  gather_facts: false"
		echo "  vars:"
		echo "    files:"
	} >"$dir/src/.ansible/site.yml"
	local dirs=()
	for ((i = 0; i < n; i++)); do
		printf -v d 'd%02d' $((i / 100))
		printf -v f 'f%05d.conf' "$i"
		m=${modes[i % 3]}
		if [[ ! -d $dir/src/files/$d ]]; then
			mkdir -p "$dir/src/files/$d"
			dirs+=("$d")
		fi
		printf '# generated for the benchmark\nname = %s\nindex = %d\nmode = %s\n' "$f" "$i" "$m" >"$dir/src/files/$d/$f"
		printf 'kind: file\npath: /srv/bench/%s/%s\nsource: %s\nmode: "%s"\n---\n' "$d" "$f" "$f" "$m" >>"$dir/src/files/$d/files.yaml"
		printf '      - {d: %s, f: %s, m: "%s"}\n' "$d" "$f" "$m" >>"$dir/src/.ansible/site.yml"
	done
	local dirlist
	dirlist=$(IFS=,; echo "${dirs[*]}")
	cat >>"$dir/src/.ansible/site.yml" <<-YML
	  tasks:
	    - name: directories
	      ansible.builtin.file:
	        path: "{{ dest_root }}/srv/bench/{{ item }}"
	        state: directory
	        mode: "0755"
	      loop: [$dirlist]
	    - name: files
	      ansible.builtin.copy:
	        src: "{{ playbook_dir }}/../files/{{ item.d }}/{{ item.f }}"
	        dest: "{{ dest_root }}/srv/bench/{{ item.d }}/{{ item.f }}"
	        mode: "{{ item.m }}"
	      loop: "{{ files }}"
	      loop_control: {label: "{{ item.f }}"}
	YML
	printf 'targets:\n  - path: files\n' >"$dir/src/fleet.yaml"
	git -C "$dir/src" init -q -b main
	git -C "$dir/src" add -A
	git -C "$dir/src" commit -q -m "$n files"
	git clone -q --bare "$dir/src" "$dir/env.git"
	git -C "$dir/src" remote add origin "$dir/env.git"
}

# How Outpost reads the repository: file:// straight through Git when this
# build has Git sources, else a clone that each run pulls before a plain
# directory apply (timed together).
outpost_mode=""
detect_mode() {
	local dir=$1 rc=0
	"$OUTPOST" diff --config /dev/null --source "file://$dir/env.git" \
		--state-dir "$dir/probe-state" --root "$dir/probe-root" --host bench >/dev/null 2>"$dir/probe.err" || rc=$?
	rm -rf "$dir/probe-state" "$dir/probe-root"
	if ((rc == 2)); then
		outpost_mode=clone
		echo "outpost reads: a git clone pulled before each apply --source DIR (file:// refused: $(head -c 200 "$dir/probe.err"))"
	else
		outpost_mode=url
		echo "outpost reads: apply --source file://$dir/env.git (Git, read in place)"
	fi
}

outpost_flags() {
	local dir=$1 src="file://$1/env.git"
	[[ $outpost_mode == clone ]] && src=$dir/clone
	echo --config /dev/null --source "$src" --state-dir "$dir/o-state" --root "$dir/o-root" --host bench
}

run_outpost() {
	local dir=$1 out=$2
	if [[ $outpost_mode == clone ]]; then
		measure "$out" "$dir/outpost.log" bash -c '
			[[ -d $1/clone ]] || git clone -q "$1/env.git" "$1/clone"
			git -C "$1/clone" pull -q --ff-only
			shift; exec "$@"' _ "$dir" "$OUTPOST" apply $(outpost_flags "$dir")
	else
		measure "$out" "$dir/outpost.log" "$OUTPOST" apply $(outpost_flags "$dir")
	fi
}

run_ansible() {
	local dir=$1 out=$2
	measure "$out" "$dir/ansible.log" ansible-pull -U "file://$dir/env.git" -C main \
		-d "$dir/a-work" -i localhost, -e "dest_root=$dir/a-root" .ansible/site.yml
}

# same DIR: both roots hold exactly the files of the work tree, modes too.
same() {
	local dir=$1 d f rel want
	for f in "$dir"/src/files/*/*.conf; do
		rel=/srv/bench/${f#"$dir"/src/files/}
		want=$(grep -m1 '^mode = ' "$f" | cut -d' ' -f3)
		for root in o-root a-root; do
			if ! cmp -s "$f" "$dir/$root$rel" || [[ $(stat -c %04a "$dir/$root$rel") != "$want" ]]; then
				echo "bench: $root$rel differs from the repository" >&2
				exit 1
			fi
		done
	done
}

# readall FILE VAR: the whole file into VAR without a fork.
readall() {
	IFS= read -r -d '' "$2" <"$1" || true
}

# repair_outpost DIR OUT: starts the daemon, edits one file by hand REPS
# times and records the time until the watcher restored it.
repair_outpost() {
	local dir=$1 out=$2 k i want got t0 t1
	local rel=srv/bench/d00/f00000.conf
	"$OUTPOST" run $(outpost_flags "$dir") --socket "$dir/sock" --full-interval 1h >"$dir/daemon.log" 2>&1 &
	daemon=$!
	for ((i = 0; i < 1200; i++)); do
		if "$OUTPOST" status --socket "$dir/sock" --json 2>/dev/null | grep -q '"result": *"applied"'; then
			break
		fi
		kill -0 "$daemon" 2>/dev/null || { echo "bench: outpost run exited" >&2; cat "$dir/daemon.log" >&2; exit 1; }
		sleep 0.25
	done
	((i < 1200)) || { echo "bench: outpost run did not converge in 300 s" >&2; exit 1; }
	readall "$dir/src/files/d00/f00000.conf" want
	for ((k = 0; k < REPS; k++)); do
		sleep 1
		t0=$EPOCHREALTIME
		printf 'edited by hand %d\n' "$k" >"$dir/o-root/$rel"
		while :; do
			readall "$dir/o-root/$rel" got
			[[ $got == "$want" ]] && break
			if (($(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print (b-a > 60)}'))); then
				echo "bench: outpost did not repair $rel within 60 s" >&2
				cat "$dir/daemon.log" >&2
				exit 1
			fi
		done
		t1=$EPOCHREALTIME
		awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}' >>"$out"
		echo " n/a" >>"$out"
	done
	local hwm ticks
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
	ticks=$(awk '{print $14+$15}' "/proc/$daemon/stat")
	# The third column is the daemon's peak RSS over its whole life.
	sed -i "s/ n\/a\$/ n\/a $hwm/" "$out"
	echo "outpost run: $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t/hz}') s of CPU in all, peak RSS $(mb "$hwm") MB" >>"$dir/notes"
	kill "$daemon"
	wait "$daemon" || true
	daemon=""
}

repair_ansible() {
	local dir=$1 out=$2 k
	local rel=srv/bench/d00/f00000.conf
	for ((k = 0; k < REPS; k++)); do
		printf 'edited by hand %d\n' "$k" >"$dir/a-root/$rel"
		run_ansible "$dir" "$out"
		cmp -s "$dir/src/files/d00/f00000.conf" "$dir/a-root/$rel" || { echo "bench: ansible-pull did not repair $rel" >&2; exit 1; }
	done
}

echo "# Outpost against ansible-pull: files with modes from one local Git repository"
machine
echo "ansible: $(ansible-pull --version 2>/dev/null | sed -n 1p), ANSIBLE_PIPELINING=True"
echo "outpost: $("$OUTPOST" version)"
echo "repetitions: $REPS; sizes: $SIZES"
started=$(cut -d' ' -f1-3 /proc/loadavg)

results=$T/results.md
{
	echo "| files | step | Outpost wall s | ansible-pull wall s | ansible / Outpost | Outpost CPU s | ansible CPU s | Outpost peak RSS MB | ansible peak RSS MB |"
	echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$results"

row() {
	local n=$1 step=$2 o=$3 a=$4 ow aw
	ow=$(median "$o" 1)
	aw=$(median "$a" 1)
	echo "| $n | $step | $ow | $aw | $(ratio "$aw" "$ow") | $(median "$o" 2) | $(median "$a" 2) | $(mb "$(median "$o" 3)") | $(mb "$(median "$a" 3)") |" >>"$results"
}

for n in $SIZES; do
	dir=$T/n$n
	mkdir -p "$dir"
	make_repo "$dir" "$n"
	[[ -n $outpost_mode ]] || detect_mode "$dir"
	echo "== $n files"
	for ((k = 0; k < REPS; k++)); do
		rm -rf "$dir/o-root" "$dir/o-state" "$dir/clone" "$dir/a-root" "$dir/a-work"
		run_outpost "$dir" "$dir/first.o"
		run_ansible "$dir" "$dir/first.a"
	done
	same "$dir"
	for ((k = 0; k < REPS; k++)); do
		run_outpost "$dir" "$dir/noop.o"
		run_ansible "$dir" "$dir/noop.a"
	done
	for ((k = 0; k < REPS; k++)); do
		printf 'changed = %d\n' "$k" >>"$dir/src/files/d00/f00000.conf"
		git -C "$dir/src" commit -q -am "change one file ($k)"
		git -C "$dir/src" push -q origin main
		run_outpost "$dir" "$dir/change.o"
		run_ansible "$dir" "$dir/change.a"
	done
	same "$dir"
	repair_outpost "$dir" "$dir/repair.o"
	repair_ansible "$dir" "$dir/repair.a"
	same "$dir"
	row "$n" "first converge" "$dir/first.o" "$dir/first.a"
	row "$n" "no-op converge" "$dir/noop.o" "$dir/noop.a"
	row "$n" "one file changed in Git" "$dir/change.o" "$dir/change.a"
	row "$n" "repair of a file edited by hand" "$dir/repair.o" "$dir/repair.a"
	cat "$dir/notes"
done

echo
cat "$results"
echo
echo "load average at the start: $started; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "repair: Outpost is the running daemon (outpost run, fsnotify), from the edit to the"
echo "content restored, and its peak RSS is the daemon's; ansible-pull is its next whole run."
echo "CPU is user + system time of the process and its children; peak RSS is the largest"
echo "single process's (GNU time)."
