package daemon

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// killApplyRounds is the number of rounds of TestKillApply;
// OUTPOST_KILL_APPLY_ROUNDS overrides it.
const killApplyRounds = 12

// TestKillApply is the kill test of the one-shot `outpost apply`: each round
// pushes a new version of the kill test's repository (files every time,
// units every second version, the container every fourth), starts `apply`
// and kills it with SIGKILL at a random moment of its pass; the host is then
// checked as after a daemon's kill (every file whole, one or two owned
// containers, the state directory readable), and the next `apply` must
// converge the version completely, with state.json recording it and every
// object.
func TestKillApply(t *testing.T) {
	t.Parallel()
	rounds := killRoundsFrom(t, "OUTPOST_KILL_APPLY_ROUNDS", killApplyRounds)
	k := startKillRepo(t, "e2e-killapply-")
	name, unitPrefix, image, repo, cur, srv := k.name, k.unitPrefix, k.image, k.repo, k.cur, k.srv

	h := host.Start(t, host.Options{BinDir: binDir})
	h.WriteFile(t, configPath, []byte(agentConfig(srv.URL("env"), "web-1", time.Hour, time.Minute)), 0o600)
	mustApply(t, h, 0)
	ins := newInspector(t, h, name, unitPrefix)
	ins.converged(cur)

	a := &agent{t: t, h: h, logs: &syncBuffer{},
		args: []string{agentBin, "apply", "--config", configPath, "--state-dir", stateDir, "-v"}}
	t.Cleanup(func() {
		a.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("apply's log:\n%s", a.logs.String())
		}
	})
	// How long an apply of each kind of version takes here, measured on
	// the first versions, which are not killed: the window of the kills.
	took := map[string]time.Duration{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	for v := 1; v <= rounds+4; v++ {
		next := killVersion(v, unitPrefix, name, image)
		next.commit = repo.CommitWith(gitserver.CommitOptions{Files: next.files, Message: fmt.Sprintf("version %d", v)})
		kind := killKind(v)
		window, measured := took[kind]
		if v <= 4 || !measured {
			start := time.Now()
			mustApply(t, h, 0)
			took[kind] = time.Since(start)
			ins.converged(next)
			cur = next
			continue
		}
		delay := time.Duration(rng.Int64N(int64(window) + 1))
		fmt.Fprintf(a.logs, "--- version %d (%s): kill after %v\n", v, kind, delay)
		a.start()
		time.Sleep(delay)
		a.kill(syscall.SIGKILL)
		what := fmt.Sprintf("version %d (%s), apply killed %v after its start", v, kind, delay.Round(time.Millisecond))
		ins.killed(what, cur, next)

		mustApply(t, h, 0)
		ins.converged(next)
		t.Logf("%s: converged by the next apply", what)
		if t.Failed() {
			t.FailNow()
		}
		cur = next
	}
	t.Logf("an apply took, by kind of version: %v", took)
}
