package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// Outpost against ansible-pull on N systemd units in the test host
// (test/e2e/host): the same unit files from the same bare Git repository,
// bound into the host and read by both as file:///bench/env.git. Outpost
// owns op-bench-NN.service, ansible-pull ansible-bench-NN.service, so
// that neither finds the other's work done. Each repetition boots a fresh
// host and measures there: the first converge, a no-op converge, a converge
// after one unit changed in Git, and the repair of one unit file edited by
// hand. BenchmarkUnits is the full mode (bench/ansible-units.sh runs it),
// TestUnitsQuick the quick one.

// unitsPackages are what the host needs beyond the base tree: ansible-core
// (python3 comes with it) and GNU time. git is in the base tree.
var unitsPackages = []string{"ansible-core", "time"}

// unitsScript runs inside the host, bound in at /bench/units.sh.
const unitsScript = `#!/bin/bash
# units.sh measure LOG CMD...: runs CMD under GNU time, its output appended to
#   LOG, and prints "wall_s cpu_s peak_rss_kb" (CPU: user + system, children
#   included; peak RSS: the largest single process's).
# units.sh edit UNIT: edits /etc/systemd/system/UNIT by hand.
# units.sh repair PID UNIT: edits UNIT by hand, waits until its file is back
#   and the unit active in a new process, and prints "wall_s cpu_s" where CPU
#   is what process PID (the daemon) spent meanwhile.
set -u
edit() {
	local f=/etc/systemd/system/$1 text
	IFS= read -r -d '' text <"$f"
	printf '%s' "${text//BENCH_INDEX=/BENCH_EDITED=}" >"$f"
}
ticks() {
	local stat
	read -r stat <"/proc/$1/stat"
	stat=${stat##*) }
	set -- $stat
	echo $((${12} + ${13}))
}
case $1 in
measure)
	log=$2
	shift 2
	tv=$(mktemp)
	t0=$EPOCHREALTIME
	/usr/bin/time -f '%U %S %M' -o "$tv" "$@" >>"$log" 2>&1
	rc=$?
	t1=$EPOCHREALTIME
	if ((rc)); then
		echo "failed ($rc): $*" >&2
		tail -n 40 "$log" >&2
		exit "$rc"
	fi
	read -r u s m <"$tv"
	rm -f "$tv"
	awk -v a="$t0" -v b="$t1" -v u="$u" -v s="$s" -v m="$m" 'BEGIN { printf "%.4f %.2f %d\n", b - a, u + s, m }'
	;;
edit)
	edit "$2"
	;;
repair)
	pid=$2 unit=$3 f=/etc/systemd/system/$3
	IFS= read -r -d '' want <"$f"
	main0=$(systemctl show -p MainPID --value "$unit")
	c0=$(ticks "$pid")
	t0=${EPOCHREALTIME/./}
	edit "$unit"
	while :; do
		IFS= read -r -d '' got <"$f"
		[[ $got == "$want" ]] && break
		if ((${EPOCHREALTIME/./} - t0 > 60000000)); then
			echo "$f was not put back within 60 s" >&2
			exit 1
		fi
	done
	while :; do
		main=0 active=""
		while IFS== read -r k v; do
			case $k in
			MainPID) main=$v ;;
			ActiveState) active=$v ;;
			esac
		done < <(systemctl show -p MainPID -p ActiveState "$unit")
		[[ $active == active && $main != 0 && $main != "$main0" ]] && break
		if ((${EPOCHREALTIME/./} - t0 > 60000000)); then
			echo "$unit was not restarted within 60 s: $active, main PID $main (was $main0)" >&2
			exit 1
		fi
	done
	t1=${EPOCHREALTIME/./}
	c1=$(ticks "$pid")
	awk -v w=$((t1 - t0)) -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.4f %.2f\n", w / 1e6, c / hz }'
	;;
*)
	echo "units.sh: unknown command $1" >&2
	exit 2
	;;
esac
`

// The steps, in the order of the table.
var unitSteps = []string{"first converge", "no-op converge", "one unit changed in Git", "repair of a unit edited by hand"}

// sample is one measured run: wall and CPU seconds, peak RSS in kB.
type sample struct{ wall, cpu, rssKB float64 }

// unitsResults holds the samples of each step for each tool.
type unitsResults map[string]map[string][]sample

func (r unitsResults) add(step, tool string, s sample) {
	if r[step] == nil {
		r[step] = map[string][]sample{}
	}
	r[step][tool] = append(r[step][tool], s)
}

// TestUnitsQuick runs the units comparison on 3 units once, so that it keeps
// working. It checks the state that both tools leave after each step, not
// the figures.
func TestUnitsQuick(t *testing.T) {
	t.Parallel()
	report := benchUnits(t, build(t), 3, 1)
	for _, step := range unitSteps {
		if want := "| 3 | " + step + " |"; !strings.Contains(report, want) {
			t.Errorf("the report has no row %q:\n%s", want, report)
		}
	}
	t.Log("\n" + report)
}

// BenchmarkUnits is the full mode: UNITS units (20 by default), REPS
// repetitions (3 by default). Run it with -benchtime 1x; it writes the
// report to the file UNITS_REPORT names, else to standard output.
func BenchmarkUnits(b *testing.B) {
	units, reps := envInt(b, "UNITS", 20), envInt(b, "REPS", 3)
	bin := build(b)
	var report string
	for range b.N {
		report = benchUnits(b, bin, units, reps)
	}
	if path := os.Getenv("UNITS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			b.Fatal(err)
		}
		return
	}
	fmt.Print("\n" + report)
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// benchUnits runs reps repetitions on n units, each in a new host, and
// returns the report: the machine, the versions and the table of medians.
func benchUnits(tb testing.TB, bin string, n, reps int) string {
	tb.Helper()
	started := loadAverage()
	res := unitsResults{}
	var versions, notes []string
	for rep := range reps {
		u := startUnits(tb, bin, n)
		if rep == 0 {
			versions = []string{
				"ansible: " + firstLine(u.run("ansible-pull", "--version")) + " (in the host), ANSIBLE_PIPELINING=True",
				"outpost: " + firstLine(u.run("/opt/outpost/outpost", "version")),
			}
			notes = append(notes, fmt.Sprintf("host boot, with the root filesystem's build if it was not cached: %.1f s", u.boot.Seconds()))
		}
		u.repetition(res, rep)
		if err := u.h.Stop(); err != nil {
			tb.Errorf("stop the test host: %v", err)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Outpost against ansible-pull: %d systemd units from one local Git repository, in the test host\n", n)
	fmt.Fprintln(&b, machine())
	fmt.Fprintf(&b, "load average (1, 5, 15 min) at the start: %s\n", started)
	for _, v := range versions {
		fmt.Fprintln(&b, v)
	}
	fmt.Fprintf(&b, "repetitions: %d, each in a new test host\n", reps)
	for _, note := range notes {
		fmt.Fprintln(&b, note)
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| units | step | Outpost wall s | ansible-pull wall s | ansible / Outpost | Outpost CPU s | ansible CPU s | Outpost peak RSS MB | ansible peak RSS MB |")
	fmt.Fprintln(&b, "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, step := range unitSteps {
		o, a := res[step]["outpost"], res[step]["ansible"]
		ow, aw := median(o, func(s sample) float64 { return s.wall }), median(a, func(s sample) float64 { return s.wall })
		fmt.Fprintf(&b, "| %d | %s | %.3f | %.3f | %.2f | %.2f | %.2f | %.1f | %.1f |\n", n, step, ow, aw, aw/ow,
			median(o, func(s sample) float64 { return s.cpu }), median(a, func(s sample) float64 { return s.cpu }),
			median(o, func(s sample) float64 { return s.rssKB })/1024, median(a, func(s sample) float64 { return s.rssKB })/1024)
	}
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "load average at the end: %s\n", loadAverage())
	fmt.Fprintln(&b, "Outpost: outpost apply --source file:///bench/env.git; ansible-pull -U file:///bench/env.git (copy, a")
	fmt.Fprintln(&b, "daemon-reload and a restart of the changed units in handlers, systemd started and enabled).")
	fmt.Fprintln(&b, "repair: Outpost is the running daemon (outpost run, its watchers), from the edit to the file")
	fmt.Fprintln(&b, "put back and the unit active in a new process; its CPU is the daemon's meanwhile and its peak")
	fmt.Fprintln(&b, "RSS the daemon's over its life. ansible-pull is its next whole run. CPU is user + system time")
	fmt.Fprintln(&b, "with children (systemd's own work is in neither); peak RSS is the largest single process's.")
	return b.String()
}

// unitsHost is one repetition's host and repository.
type unitsHost struct {
	tb   testing.TB
	h    *host.Host
	dir  string // bound in at /bench
	n    int
	boot time.Duration
}

const (
	unitsRepo    = "file:///bench/env.git"
	outpostState = "/var/lib/outpost-bench"
	outpostSock  = "/run/outpost-bench.sock"
)

func startUnits(tb testing.TB, bin string, n int) *unitsHost {
	tb.Helper()
	u := &unitsHost{tb: tb, dir: tb.TempDir(), n: n}
	u.makeRepo()
	start := time.Now()
	u.h = host.Start(tb, host.Options{
		BinDir:   bin,
		Binds:    []host.Bind{{Source: u.dir, Target: "/bench"}},
		NoDocker: true,
		Packages: unitsPackages,
		// The first boot may build the root filesystem with ansible-core.
		BootTimeout: 15 * time.Minute,
	})
	u.boot = time.Since(start)
	return u
}

func unitName(i int) string { return fmt.Sprintf("bench-%02d", i) }

func unitFile(i int, revision string) string {
	return fmt.Sprintf("[Unit]\nDescription=Benchmark service %02d\n\n[Service]\nType=simple\nEnvironment=BENCH_INDEX=%02d BENCH_REVISION=%s\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n", i, i, revision)
}

// makeRepo writes the work tree (the unit files, Outpost's manifests and the
// playbook) and pushes it to the bare repository env.git.
func (u *unitsHost) makeRepo() {
	src := filepath.Join(u.dir, "src")
	var manifests, names strings.Builder
	for i := range u.n {
		put(u.tb, filepath.Join(src, "units", unitName(i)+".service"), unitFile(i, "0"))
		fmt.Fprintf(&manifests, "kind: unit\nname: op-%s.service\nsource: %s.service\nenabled: true\nstate: running\n---\n", unitName(i), unitName(i))
		fmt.Fprintf(&names, "      - %s\n", unitName(i))
	}
	put(u.tb, filepath.Join(src, "units", "units.yaml"), manifests.String())
	put(u.tb, filepath.Join(src, "fleet.yaml"), "targets:\n  - path: units\n")
	put(u.tb, filepath.Join(src, ".ansible", "site.yml"), fmt.Sprintf(`- hosts: localhost
  gather_facts: false
  vars:
    units:
%s  tasks:
    - name: unit files
      ansible.builtin.copy:
        src: "{{ playbook_dir }}/../units/{{ item }}.service"
        dest: "/etc/systemd/system/ansible-{{ item }}.service"
        mode: "0644"
      loop: "{{ units }}"
      register: unit_files
      notify: [reload systemd, restart changed units]
    - name: reload and restart before the units are started
      ansible.builtin.meta: flush_handlers
    - name: units enabled and running
      ansible.builtin.systemd:
        name: "ansible-{{ item }}.service"
        state: started
        enabled: true
      loop: "{{ units }}"
  handlers:
    - name: reload systemd
      ansible.builtin.systemd:
        daemon_reload: true
    - name: restart changed units
      ansible.builtin.systemd:
        name: "ansible-{{ item.item }}.service"
        state: restarted
      loop: "{{ unit_files.results | selectattr('changed') | list }}"
      loop_control: {label: "{{ item.item }}"}
`, names.String()))
	put(u.tb, filepath.Join(u.dir, "units.sh"), unitsScript)
	u.git("init", "-q", "-b", "main")
	u.git("add", "-A")
	u.git("commit", "-q", "-m", fmt.Sprintf("%d units", u.n))
	u.git("clone", "-q", "--bare", src, filepath.Join(u.dir, "env.git"))
	u.git("remote", "add", "origin", filepath.Join(u.dir, "env.git"))
}

func (u *unitsHost) git(args ...string) {
	u.tb.Helper()
	cmd := exec.Command("git", append([]string{"-C", filepath.Join(u.dir, "src")}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@localhost",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@localhost")
	if out, err := cmd.CombinedOutput(); err != nil {
		u.tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func put(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// run runs a command in the host and returns its output; it fails tb when
// the command fails.
func (u *unitsHost) run(args ...string) string {
	u.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := u.h.Command(ctx, args...)
	// ansible-pull with its usual speed-ups for a local run: pipelining,
	// no interpreter discovery, no colour.
	cmd.Env = append(cmd.Env, "ANSIBLE_PIPELINING=True", "ANSIBLE_NOCOLOR=True",
		"ANSIBLE_LOCALHOST_WARNING=False", "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
		"ANSIBLE_RETRY_FILES_ENABLED=False")
	out, err := cmd.CombinedOutput()
	if err != nil {
		u.tb.Fatalf("%s in the test host: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// measure runs a command in the host under GNU time, its output in
// /bench/LOG, and returns the measure and the output.
func (u *unitsHost) measure(log string, args ...string) (sample, string) {
	u.tb.Helper()
	out := u.run(append([]string{"bash", "/bench/units.sh", "measure", "/bench/" + log}, args...)...)
	var s sample
	if _, err := fmt.Sscan(out, &s.wall, &s.cpu, &s.rssKB); err != nil {
		u.tb.Fatalf("units.sh measure printed %q: %v", out, err)
	}
	logged, err := os.ReadFile(filepath.Join(u.dir, log))
	if err != nil {
		u.tb.Fatal(err)
	}
	return s, string(logged)
}

func (u *unitsHost) outpost(log string) (sample, string) {
	return u.measure(log, "/opt/outpost/outpost", "apply", "--config", "/dev/null", "--source", unitsRepo,
		"--state-dir", outpostState, "--host", "bench")
}

func (u *unitsHost) ansible(log string) (sample, string) {
	return u.measure(log, "ansible-pull", "-U", unitsRepo, "-C", "main", "-d", "/var/lib/ansible-bench",
		"-i", "localhost,", ".ansible/site.yml")
}

// repetition runs the four steps in u's host and adds their samples to res.
func (u *unitsHost) repetition(res unitsResults, rep int) {
	tb := u.tb
	tb.Helper()
	log := func(step, tool string) string {
		return fmt.Sprintf("%d-%s-%s.log", rep, strings.ReplaceAll(step, " ", "-"), tool)
	}
	both := func(step string) (string, string) {
		o, olog := u.outpost(log(step, "outpost"))
		a, alog := u.ansible(log(step, "ansible"))
		res.add(step, "outpost", o)
		res.add(step, "ansible", a)
		tb.Logf("rep %d, %s: outpost %.3f s, ansible-pull %.3f s", rep, step, o.wall, a.wall)
		return olog, alog
	}

	step := unitSteps[0]
	both(step)
	u.check(step, nil, -1)

	step = unitSteps[1]
	before := u.mainPIDs()
	olog, alog := both(step)
	if !strings.Contains(olog, "nothing to do") {
		tb.Errorf("%s: outpost apply did something:\n%s", step, olog)
	}
	if !ansibleUnchanged(alog) {
		tb.Errorf("%s: ansible-pull changed something:\n%s", step, alog)
	}
	u.check(step, before, -1)

	step = unitSteps[2]
	before = u.mainPIDs()
	put(tb, filepath.Join(u.dir, "src", "units", unitName(0)+".service"), unitFile(0, strconv.Itoa(rep+1)))
	u.git("commit", "-q", "-am", "change one unit")
	u.git("push", "-q", "origin", "main")
	both(step)
	u.check(step, before, 0)

	// The daemon converges the state that apply left (nothing to do), then
	// its watchers repair the edit.
	step = unitSteps[3]
	before = u.mainPIDs()
	u.run("systemd-run", "--unit=outpost-bench", "--collect", "-p", "Type=exec",
		"/opt/outpost/outpost", "run", "--config", "/dev/null", "--source", unitsRepo,
		"--state-dir", outpostState, "--host", "bench", "--socket", outpostSock, "--full-interval", "1h")
	u.waitApplied()
	pid := strings.TrimSpace(u.run("systemctl", "show", "-p", "MainPID", "--value", "outpost-bench.service"))
	out := u.run("bash", "/bench/units.sh", "repair", pid, unitPrefix["outpost"]+"-"+unitName(0)+".service")
	var o sample
	if _, err := fmt.Sscan(out, &o.wall, &o.cpu); err != nil {
		tb.Fatalf("units.sh repair printed %q: %v", out, err)
	}
	status := u.run("cat", "/proc/"+pid+"/status")
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscan(v, &o.rssKB)
		}
	}
	if o.rssKB == 0 {
		tb.Fatalf("no VmHWM in the daemon's status:\n%s", status)
	}
	u.run("systemctl", "stop", "outpost-bench.service")
	u.run("bash", "/bench/units.sh", "edit", "ansible-"+unitName(0)+".service")
	a, _ := u.ansible(log(step, "ansible"))
	res.add(step, "outpost", o)
	res.add(step, "ansible", a)
	tb.Logf("rep %d, %s: outpost %.3f s, ansible-pull %.3f s", rep, step, o.wall, a.wall)
	u.check(step, before, 0)
}

// waitApplied waits until the daemon reports its first converge.
func (u *unitsHost) waitApplied() {
	u.tb.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, err := u.h.Exec(context.Background(), "/opt/outpost/outpost", "status", "--socket", outpostSock, "--json")
		if err == nil && strings.Contains(strings.ReplaceAll(string(out), " ", ""), `"result":"applied"`) {
			return
		}
		if time.Now().After(deadline) {
			journal, _ := u.h.Exec(context.Background(), "journalctl", "-u", "outpost-bench.service", "--no-pager")
			u.tb.Fatalf("outpost run did not converge within 5 minutes: %v\n%s\n%s", err, out, journal)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ansibleUnchanged(log string) bool {
	_, recap, ok := strings.Cut(log, "PLAY RECAP")
	return ok && strings.Contains(recap, "changed=0 ") && strings.Contains(recap, "failed=0 ")
}

// unitPrefix starts each tool's unit names. Outpost's are not outpost-*:
// validation keeps those names for the agent's own units.
var unitPrefix = map[string]string{"outpost": "op", "ansible": "ansible"}

// unitNames are both tools' units: op-bench-NN, then ansible-bench-NN.
func (u *unitsHost) unitNames() []string {
	var names []string
	for _, tool := range []string{"outpost", "ansible"} {
		for i := range u.n {
			names = append(names, unitPrefix[tool]+"-"+unitName(i)+".service")
		}
	}
	return names
}

// mainPIDs returns each unit's main PID.
func (u *unitsHost) mainPIDs() map[string]string {
	out := u.run(append([]string{"systemctl", "show", "-p", "Id", "-p", "MainPID"}, u.unitNames()...)...)
	pids := map[string]string{}
	var id, pid string
	for _, line := range strings.Split(out+"\n", "\n") {
		switch k, v, _ := strings.Cut(line, "="); k {
		case "Id":
			id = v
		case "MainPID":
			pid = v
		case "":
			if id != "" {
				pids[id] = pid
			}
			id, pid = "", ""
		}
	}
	return pids
}

// check fails tb unless both tools left the same state: every unit file as
// in the repository (Outpost's after its marker line), every unit enabled,
// active and loaded from its current file. With before, the unit numbered
// restarted (-1: none) must run in a new process and every other unit in
// the process it had.
func (u *unitsHost) check(step string, before map[string]string, restarted int) {
	tb := u.tb
	tb.Helper()
	for i := range u.n {
		want, err := os.ReadFile(filepath.Join(u.dir, "src", "units", unitName(i)+".service"))
		if err != nil {
			tb.Fatal(err)
		}
		for _, tool := range []string{"outpost", "ansible"} {
			got, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/systemd/system/%s-%s.service", u.h.PID(), unitPrefix[tool], unitName(i)))
			if err != nil {
				tb.Fatalf("%s: %v", step, err)
			}
			if tool == "outpost" {
				first, rest, _ := strings.Cut(string(got), "\n")
				if !strings.HasPrefix(first, "# Managed by Outpost") {
					tb.Errorf("%s: %s-%s.service has no marker line: %q", step, unitPrefix[tool], unitName(i), first)
				}
				got = []byte(rest)
			}
			if string(got) != string(want) {
				tb.Errorf("%s: %s-%s.service is\n%s\nwant\n%s", step, unitPrefix[tool], unitName(i), got, want)
			}
		}
	}
	names := u.unitNames()
	for prop, want := range map[string]string{"ActiveState": "active", "UnitFileState": "enabled", "NeedDaemonReload": "no"} {
		out := u.run(append([]string{"systemctl", "show", "-p", prop, "--value"}, names...)...)
		got := strings.Fields(out)
		if len(got) != len(names) || slices.ContainsFunc(got, func(s string) bool { return s != want }) {
			tb.Errorf("%s: %s of %v = %v, want %s for each", step, prop, names, got, want)
		}
	}
	if before == nil {
		return
	}
	after := u.mainPIDs()
	for _, name := range names {
		changed := after[name] != before[name]
		want := restarted >= 0 && strings.HasSuffix(name, "-"+unitName(restarted)+".service")
		if changed != want {
			tb.Errorf("%s: %s main PID %s -> %s, want a restart: %v", step, name, before[name], after[name], want)
		}
	}
}

func median(s []sample, f func(sample) float64) float64 {
	if len(s) == 0 {
		return 0
	}
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

// machine says what the figures ran on, as bench/lib.sh does.
func machine() string {
	mem, model := "unknown", "unknown"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				fmt.Sscan(v, &kb)
			}
		}
		mem = fmt.Sprintf("%.1f GiB", kb/1048576)
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("machine: %d cores, %s, %s", runtime.NumCPU(), mem, model)
}
