package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// Sizes of the kill test's desired state.
const (
	killFiles = 10
	killUnits = 2
	killDir   = "/etc/e2e-kill"
	// killCount is how many times the agent is killed: rounds, each a new
	// commit whose converge is killed (and in some rounds the recovery
	// too), run until there were this many kills. OUTPOST_KILLS overrides
	// it.
	killCount = 100
	// killAgainOneIn: one round in killAgainOneIn on average kills the
	// agent a second time, while it recovers from the first kill.
	killAgainOneIn = 4
	// killWarmup versions are applied without a kill during their converge
	// first (the agent is restarted at rest after each), to measure when
	// the phases of each kind of version run here.
	killWarmup = 8
)

// What a version changes beside its files: its units every second version,
// its container every fourth.
func unitGen(v int) int { return v / 2 }
func webGen(v int) int  { return v / 4 }

// killKind names what version v changes.
func killKind(v int) string {
	switch {
	case webGen(v) != webGen(v-1):
		return "files+units+container"
	case unitGen(v) != unitGen(v-1):
		return "files+units"
	}
	return "files"
}

// killState is version v of the kill test's repository and what the host
// runs once it is converged.
type killState struct {
	v      int
	commit string
	files  gitserver.Files
	// hashes are the SHA-256 of the managed files, by path.
	hashes map[string]string
	// units are the contents of the unit files under the marker line, by
	// unit name.
	units map[string]string
	// web is the container's VERSION.
	web string
}

// unitEnv is the Environment that the units of version v run with.
func (s *killState) unitEnv() string { return "VERSION=" + strconv.Itoa(unitGen(s.v)) }

// killVersion is the repository of version v: killFiles files of 64 KiB
// that change with each version, killUnits units and one container.
func killVersion(v int, unitPrefix, name, image string) *killState {
	s := &killState{v: v, files: gitserver.Files{}, hashes: map[string]string{}, units: map[string]string{}, web: strconv.Itoa(webGen(v))}
	for i := range killFiles {
		path := fmt.Sprintf("%s/f%02d.conf", killDir, i)
		content := strings.Repeat(fmt.Sprintf("version %d of file %d\n", v, i), 64<<10/24)
		s.files[fmt.Sprintf("files/f%02d.yaml", i)] = fmt.Sprintf("kind: file\npath: %s\nsource: f%02d.conf\n", path, i)
		s.files[fmt.Sprintf("files/f%02d.conf", i)] = content
		sum := sha256.Sum256([]byte(content))
		s.hashes[path] = hex.EncodeToString(sum[:])
	}
	for i := range killUnits {
		unit := fmt.Sprintf("%s%d.service", unitPrefix, i)
		s.units[unit] = fmt.Sprintf("[Service]\nEnvironment=VERSION=%d\nExecStart=/bin/sleep infinity\n", unitGen(v))
		s.files[fmt.Sprintf("units/u%d.yaml", i)] = fmt.Sprintf("kind: unit\nname: %s\ncontent: |\n%sstate: running\n",
			unit, indent(s.units[unit]))
	}
	s.files["web.yaml"] = killContainer(name, image, s.web)
	return s
}

// killContainer is the busybox web container with VERSION env. busybox
// httpd, as PID 1, ignores SIGTERM: a stop_timeout of 0 kills it at once
// instead of waiting in vain, and a short health interval tells a new
// container healthy soon after it starts.
func killContainer(name, image, env string) string {
	return fmt.Sprintf(`kind: container
name: %s
image: %s
tag: "1.0.0"
env: {VERSION: "%s"}
health: {cmd: ["true"], interval: %s, retries: 1}
stop_timeout: 0s
`, name, image, env, killHealthInterval)
}

// killHealthInterval is the container's health interval.
const killHealthInterval = "250ms"

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString("  " + line)
		}
	}
	return b.String()
}

// TestKillDuringConverge is the chaos suite: 100 SIGKILLs at random
// moments, in rounds that each make a new commit whose converge is killed,
// and in one round out of four killed again while the restarted agent
// recovers. The commits
// change files every time, units every second and the container every
// fourth; the kills are aimed at every phase of the converge (the fetch,
// the file writes, the unit restarts, the container's replace, the health
// gate, the state and the note), and the phase each one interrupted is
// counted.
//
// After each kill, before the restart: every managed file and unit file is
// whole (the previous version or the new one, the unit under Outpost's
// marker), one or two owned containers are there (never none, and two only
// while one is set aside for the other), and the state directory is
// readable (state.json and images.json parse, the notes repository passes
// git fsck). After each restart: the agent applies the commit, the host
// runs it (its files, its units active with its environment, exactly one
// container of its version), state.json records it and every object, and
// no temporary file of an interrupted write is left.
func TestKillDuringConverge(t *testing.T) {
	// Its host, Git server, image and names are its own, and its checks
	// hold at any moment of a kill: it runs beside the other suites.
	t.Parallel()
	kills := killRoundsFrom(t, "OUTPOST_KILLS", killCount)
	k := startKillRepo(t, "e2e-kill-")
	name, unitPrefix, image, repo, cur, srv := k.name, k.unitPrefix, k.image, k.repo, k.cur, k.srv

	h := host.Start(t, host.Options{BinDir: binDir})
	// A long poll: each round asks for its commit with reconcile. At -vv
	// the log shows where each phase of a converge ends.
	a := newAgent(t, h, agentConfig(srv.URL("env"), "web-1", time.Hour, time.Minute), "-v")
	a.start()
	a.waitStatus(2*time.Minute, "version 0 applied", func(s *status) bool {
		return s.Commit == cur.commit && s.Result == "applied"
	})
	ins := newInspector(t, h, name, unitPrefix)
	ins.converged(cur)
	files := watchDir(t, ins.path(killDir))

	// Each version is committed on the branch stage in the background,
	// while the round before it restarts the agent, and main moves to it
	// when its round begins.
	repo.Git("branch", "stage", "main")
	stage := func(v int) (*killState, <-chan struct{}) {
		s := killVersion(v, unitPrefix, name, image)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.commit = repo.CommitWith(gitserver.CommitOptions{Branch: "stage", Files: s.files, Message: fmt.Sprintf("version %d", v)})
		}()
		return s, done
	}
	next, staged := stage(1)
	// A commit still being made when the test stops finishes first.
	t.Cleanup(func() { <-staged })

	// When each phase of a converge of each kind of version runs here, to
	// spread the kills over the whole of it: the fetch, the files, the
	// unit restarts, the container's replace, the health gate, the state
	// and the note. It is measured as the rounds run: on an agent just
	// restarted, right after the commit is pushed.
	windows := newPhaseWindows()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	targeted, phases := map[string]int{}, map[string]int{}
	var restarts []time.Duration
	// recovery is how long a restart took to converge the last round of
	// each kind, the window of a second kill.
	recovery := map[string]time.Duration{"files": time.Second, "files+units": 2 * time.Second, "files+units+container": 2 * time.Second}
	// Where a round's time goes, summed over the rounds.
	spent := map[string]time.Duration{}
	lap := time.Now()
	step := func(what string) {
		now := time.Now()
		spent[what] += now.Sub(lap)
		lap = now
	}
	var begin time.Time
	killed := 0
	for v := 1; v <= killWarmup || killed < kills; v++ {
		if v == killWarmup+1 {
			t.Logf("the phases of a converge end here:%v", windows)
			begin = time.Now()
		}
		lap = time.Now()
		<-staged
		if next.commit == "" {
			t.Fatalf("version %d was not committed", v)
		}
		repo.ForcePush("main", next.commit)
		step("1 commit")
		mark := len(a.logs.String())

		files.drain()
		if v <= killWarmup {
			start := time.Now()
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				_, err = ins.control("reconcile")
			}()
			writes, werr := files.span(done)
			if err != nil || werr != nil {
				t.Fatalf("version %d: %v", v, errors.Join(err, werr))
			}
			if err := windows.add(killKind(v), a.logs.String()[mark:], start, time.Now(), writes); err != nil {
				t.Fatalf("version %d: %v", v, err)
			}
			ins.converged(next)
			cur = next
			next, staged = stage(v + 1)
			a.kill(syscall.SIGKILL)
			a.start()
			ins.waitApplied(fmt.Sprintf("version %d, restarted", v), cur.commit, 2*time.Minute)
			continue
		}

		fmt.Fprintf(a.logs, "--- version %d: reconcile %s\n", v, time.Now().Format(time.RFC3339Nano))
		reconciled := make(chan struct{})
		go func() {
			defer close(reconciled)
			ins.control("reconcile") // fails when the agent is killed first
		}()
		target, delay, from := windows.pick(rng, killKind(v))
		targeted[target]++
		switch from {
		case fromApply:
			ins.waitApply(reconciled)
		case fromWrite:
			files.first(reconciled)
		}
		step("2 wait for the window")
		time.Sleep(delay)
		step("3 delay")
		fmt.Fprintf(a.logs, "--- version %d: kill after %v %s\n", v, delay, time.Now().Format(time.RFC3339Nano))
		a.kill(syscall.SIGKILL)
		<-reconciled
		step("4 kill")

		what := fmt.Sprintf("version %d (%s), killed %v after %s", v, killKind(v), delay.Round(time.Millisecond), from)
		cs, newFiles := ins.killed(what, cur, next)
		phase := killPhase(a.logs.String()[mark:], next, cs, name)
		phases[phase]++
		killed++
		step("5 checks after the kill")

		killedAt := next
		// The next round's commit, made while this one recovers (the
		// last one is made and not used).
		next, staged = stage(v + 1)
		a.start()
		restarted := time.Now()
		again := ""
		if rng.IntN(killAgainOneIn) == 0 {
			// Killed again while it recovers: it puts the last good
			// commit back and applies the new one again.
			mark := len(a.logs.String())
			delay := time.Duration(rng.Int64N(int64(recovery[killKind(v)]) + 1))
			time.Sleep(delay)
			a.kill(syscall.SIGKILL)
			killed++
			when := "before the commit applied"
			if strings.Contains(a.logs.String()[mark:], "revision="+killedAt.commit+" result=applied") {
				when = "after the commit applied"
			}
			phases["recovery, "+when]++
			again = fmt.Sprintf(", killed again %v after the restart (%s)", delay.Round(time.Millisecond), when)
			ins.killed(what+again, cur, killedAt)
			step("6 kill during the recovery")
			a.start()
			restarted = time.Now()
		}
		ins.waitApplied(what, killedAt.commit, 2*time.Minute)
		took := time.Since(restarted)
		restarts = append(restarts, took)
		recovery[killKind(v)] = took
		step("7 restart until applied")
		ins.converged(killedAt)
		step("8 checks after the restart")
		t.Logf("%s, aimed at %s, in %s (%d of %d files new)%s: converged %v after the restart",
			what, target, phase, newFiles, killFiles, again, took.Round(time.Millisecond))
		if t.Failed() {
			t.FailNow()
		}
		cur = killedAt
	}
	total := time.Since(begin)
	rounds := len(restarts)
	t.Logf("%d rounds, %d kills in %v (%v a round; converged after a restart in %v at most)",
		rounds, killed, total.Round(time.Second), (total / time.Duration(rounds)).Round(time.Millisecond), slicesMax(restarts).Round(time.Millisecond))
	t.Logf("kills aimed at each phase: %s", formatCounts(targeted))
	t.Logf("kills by the phase they interrupted: %s", formatCounts(phases))
	t.Logf("time by step: %v", spent)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("load average: %s", strings.Join(strings.Fields(string(load))[:3], " "))
	}
}

// formatCounts prints counts by key, sorted by key.
func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %3d %s", m[k], k)
	}
	return b.String()
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// killRoundsFrom is def, or the positive number that the environment
// variable env gives.
func killRoundsFrom(t *testing.T, env string, def int) int {
	t.Helper()
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", env, s)
	}
	return n
}

// killRepo is a kill suite's start: version 0 committed to a repository
// served over HTTP, with its image pushed.
type killRepo struct {
	name, unitPrefix, image string
	repo                    *gitserver.Repo
	cur                     *killState
	srv                     *gitserver.HTTPServer
}

func startKillRepo(t *testing.T, prefix string) killRepo {
	t.Helper()
	k := killRepo{name: uniqueName(prefix)}
	k.unitPrefix = k.name + "-u"
	k.image = pushWeb(t, k.name, "1.0.0")
	cleanContainers(t, k.name, k.image+":1.0.0")
	root := gitserver.NewRoot(t)
	k.repo = root.Create("env")
	k.cur = killVersion(0, k.unitPrefix, k.name, k.image)
	k.cur.commit = k.repo.CommitWith(gitserver.CommitOptions{Files: k.cur.files, Message: "version 0"})
	k.srv = root.ServeHTTP(gitserver.HTTPOptions{})
	return k
}
