package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
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
)

// killVersion is the repository of version v: killFiles files of 64 KiB
// that change with each version, killUnits units that change every fifth
// and one container that changes every tenth (restarts and replaces are
// slow).
func killVersion(v int, unitPrefix, name, image string) (gitserver.Files, map[string]string) {
	files := gitserver.Files{}
	hashes := map[string]string{}
	for i := range killFiles {
		path := fmt.Sprintf("%s/f%02d.conf", killDir, i)
		content := strings.Repeat(fmt.Sprintf("version %d of file %d\n", v, i), 64<<10/24)
		files[fmt.Sprintf("files/f%02d.yaml", i)] = fmt.Sprintf("kind: file\npath: %s\nsource: f%02d.conf\n", path, i)
		files[fmt.Sprintf("files/f%02d.conf", i)] = content
		sum := sha256.Sum256([]byte(content))
		hashes[path] = hex.EncodeToString(sum[:])
	}
	for i := range killUnits {
		files[fmt.Sprintf("units/u%d.yaml", i)] = fmt.Sprintf(`kind: unit
name: %s%d.service
content: |
  [Service]
  Environment=VERSION=%d
  ExecStart=/bin/sleep infinity
state: running
`, unitPrefix, i, v/5)
	}
	files["web.yaml"] = containerManifest(name, image, "1.0.0", `"true"`, strconv.Itoa(v/10))
	return files, hashes
}

// TestKillDuringConverge kills the agent with SIGKILL at a random moment of
// a converge, 50 times, each time of a new commit: no managed file is ever
// seen partly written, and each restart converges the commit, with its
// container neither lost nor duplicated.
func TestKillDuringConverge(t *testing.T) {
	rounds := 50
	if s := os.Getenv("OUTPOST_KILL_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	name := uniqueName("e2e-kill-")
	unitPrefix := name + "-u"
	image := pushWeb(t, name, "1.0.0")
	cleanContainers(t, name, image+":1.0.0")

	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	files, hashes := killVersion(0, unitPrefix, name, image)
	commit := repo.CommitWith(gitserver.CommitOptions{Files: files, Message: "version 0"})
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir})
	// A long poll: each round asks for its commit with reconcile.
	a := newAgent(t, h, agentConfig(srv.URL("env"), "web-1", time.Hour, time.Minute))
	a.start()
	a.waitStatus(2*time.Minute, "version 0 applied", func(s *status) bool {
		return s.Commit == commit && s.Result == "applied"
	})
	prev := hashes

	// How long a converge of a new version takes here, to spread the kills
	// over it.
	files, hashes = killVersion(1, unitPrefix, name, image)
	commit = repo.CommitWith(gitserver.CommitOptions{Files: files, Message: "version 1"})
	start := time.Now()
	a.mustControl("reconcile")
	span := time.Since(start)
	t.Logf("a converge of a new version takes %v here", span)
	checkConverged(t, h, a, commit, hashes, unitPrefix, name, 1)
	prev = hashes

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var stray []string
	begin := time.Now()
	for v := 2; v < rounds+2; v++ {
		files, hashes = killVersion(v, unitPrefix, name, image)
		commit = repo.CommitWith(gitserver.CommitOptions{Files: files, Message: fmt.Sprintf("version %d", v)})
		reconciled := make(chan struct{})
		go func() {
			defer close(reconciled)
			a.control("reconcile") // fails when the agent is killed first
		}()
		delay := time.Duration(rng.Int64N(int64(span) + 1))
		time.Sleep(delay)
		a.kill(syscall.SIGKILL)

		// Every managed file is whole: the previous version or this one.
		for path, sum := range hostHashes(t, h) {
			if sum != prev[path] && sum != hashes[path] {
				t.Errorf("version %d, killed after %v: %s is neither version %d nor %d: partly written", v, delay, path, v-1, v)
			}
		}
		if n := len(ownedContainers(t, name)); n > 2 {
			t.Errorf("version %d, killed after %v: %d owned containers", v, delay, n)
		}

		a.start()
		restarted := time.Now()
		a.waitStatus(2*time.Minute, fmt.Sprintf("version %d applied after a kill at %v", v, delay), func(s *status) bool {
			return s.Commit == commit && s.Result == "applied"
		})
		// The agent says it applied the commit only once every resource
		// converged; look for ourselves every tenth round and at the end,
		// and at the container after every round.
		if v%10 == 0 || v == rounds+1 {
			checkConverged(t, h, a, commit, hashes, unitPrefix, name, v)
		} else if n := len(ownedContainers(t, name)); n != 1 {
			t.Errorf("version %d, killed after %v: %d owned containers after the restart, want exactly 1", v, delay, n)
		}
		<-reconciled
		t.Logf("version %d: killed after %v, converged %v after the restart", v, delay.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
		if t.Failed() {
			t.FailNow()
		}
		prev = hashes
		stray = strayFiles(t, h)
	}
	t.Logf("%d kills in %v", rounds, time.Since(begin).Round(time.Second))
	if len(stray) > 0 {
		t.Logf("after %d kills, %d temporary files of interrupted writes are left in %s: %v", rounds, len(stray), killDir, stray)
	}
}

// hostHashes returns the SHA-256 of every regular file in killDir whose name
// ends in .conf, by path.
func hostHashes(t testing.TB, h *host.Host) map[string]string {
	t.Helper()
	out := h.Run(t, "sh", "-c", "cd "+killDir+" 2>/dev/null && sha256sum *.conf || true")
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			sums[killDir+"/"+f[1]] = f[0]
		}
	}
	return sums
}

// strayFiles lists the files in killDir that are not managed files.
func strayFiles(t testing.TB, h *host.Host) []string {
	t.Helper()
	var out []string
	for _, f := range strings.Fields(h.Run(t, "ls", "-A", killDir)) {
		if !strings.HasSuffix(f, ".conf") || strings.HasPrefix(f, ".") {
			out = append(out, f)
		}
	}
	return out
}

// checkConverged checks that version v is what the host runs.
func checkConverged(t testing.TB, h *host.Host, a *agent, commit string, hashes map[string]string, unitPrefix, name string, v int) {
	t.Helper()
	got := hostHashes(t, h)
	for path, sum := range hashes {
		if got[path] != sum {
			t.Errorf("version %d: %s is not the version's content", v, path)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script := fmt.Sprintf(`for i in $(seq 0 %d); do
  u=%s$i.service
  echo "$u $(systemctl is-active $u) $(systemctl show -p Environment --value $u)"
done`, killUnits-1, unitPrefix)
	out, err := h.Exec(ctx, "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasSuffix(line, fmt.Sprintf(" active VERSION=%d", v/5)) {
			t.Errorf("version %d: unit %q, want active with VERSION=%d", v, line, v/5)
		}
	}
	ids := ownedContainers(t, name)
	if len(ids) != 1 {
		t.Errorf("version %d: %d owned containers, want exactly 1", v, len(ids))
		return
	}
	env, err := docker("inspect", "-f", "{{.State.Status}} {{range .Config.Env}}{{.}} {{end}}", ids[0])
	if err != nil {
		t.Error(err)
		return
	}
	if !strings.HasPrefix(env, "running") || !strings.Contains(env, fmt.Sprintf("VERSION=%d ", v/10)) {
		t.Errorf("version %d: container %q, want running with VERSION=%d", v, env, v/10)
	}
}
