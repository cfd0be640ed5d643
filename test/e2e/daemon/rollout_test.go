package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	notes "github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// Rollout test settings: hosts poll every rolloutPoll; a host whose
// latest note is older than rolloutAlive stops counting; each wave soaks
// for rolloutSoak.
const (
	rolloutPoll  = 3 * time.Second
	rolloutAlive = 12 * time.Second
	rolloutSoak  = 3 * time.Second
)

// rolloutHost is one `outpost run` as a process of its own on this
// machine, with its own root, state directory and socket.
type rolloutHost struct {
	t    *testing.T
	name string
	dir  string
	cfg  string
	cmd  *exec.Cmd
	logs *os.File
	done chan struct{}
}

func startRolloutHost(t *testing.T, url, name, ring string) *rolloutHost {
	dir := t.TempDir()
	h := &rolloutHost{t: t, name: name, dir: dir, cfg: filepath.Join(dir, "agent.yaml")}
	labels := ""
	if ring != "" {
		labels = fmt.Sprintf("\n  labels: {ring: %s}", ring)
	}
	cfg := fmt.Sprintf("source:\n  url: %s\n  branch: main\n  interval: %s\nhost:\n  name: %s%s\nstatus:\n  push: true\nstate_dir: %s\nhealth_timeout: 20s\n",
		url, rolloutPoll, name, labels, filepath.Join(dir, "state"))
	if err := os.WriteFile(h.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *rolloutHost) start() {
	logs, err := os.OpenFile(filepath.Join(h.dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.t.Fatal(err)
	}
	h.logs = logs
	h.cmd = exec.Command(filepath.Join(binDir, "outpost"), "run", "-v", "--config", h.cfg,
		"--root", filepath.Join(h.dir, "root"), "--socket", filepath.Join(h.dir, "outpost.sock"))
	h.cmd.Stdout, h.cmd.Stderr = logs, logs
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.done = make(chan struct{})
	go func() {
		h.cmd.Wait()
		close(h.done)
	}()
}

// stop ends the agent as an outage would: SIGKILL, no goodbye note.
func (h *rolloutHost) stop() {
	if h.cmd == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
	h.logs.Close()
	h.cmd = nil
}

func (h *rolloutHost) log() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "agent.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// held is the part of `outpost status --json` about a held commit.
type held struct {
	Commit string `json:"commit"`
	Wave   string `json:"wave"`
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// status asks the agent for its status over its socket.
func (h *rolloutHost) held() (*held, error) {
	out, err := exec.Command(filepath.Join(binDir, "outpost"), "status", "--json", "--config", h.cfg,
		"--socket", filepath.Join(h.dir, "outpost.sock")).Output()
	if err != nil {
		return nil, fmt.Errorf("outpost status: %w", err)
	}
	var s struct {
		Held *held `json:"held"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("outpost status --json: %w: %s", err, out)
	}
	return s.Held, nil
}

// noteOn reads host's note on commit from the server's repository.
func noteOn(repo *gitserver.Repo, host, commit string) (notes.Note, error) {
	out, err := exec.Command("git", "--git-dir", repo.Path, "notes", "--ref", notes.RefPrefix+host, "show", commit).CombinedOutput()
	if err != nil {
		return notes.Note{}, fmt.Errorf("no note of %s on %.12s: %s", host, commit, bytes.TrimSpace(out))
	}
	return notes.Parse(out)
}

// rolloutFiles is the environment: a file on every host, and on the
// canary a container whose health check runs healthCmd.
func rolloutFiles(motd, container, image, healthCmd string) gitserver.Files {
	return gitserver.Files{
		"fleet.yaml": fmt.Sprintf(`targets:
  - path: common
  - path: canary
    selector: {names: [r-00]}
rollout:
  alive: %s
  waves:
    - {name: canary, selector: {names: [r-00]}, min_healthy: 1, soak: %s}
    - {name: early, selector: {labels: {ring: early}}, min_healthy: 100%%, soak: %s}
`, rolloutAlive, rolloutSoak, rolloutSoak),
		"common/motd.yaml": fmt.Sprintf("kind: file\npath: /etc/motd\ncontent: %q\n", motd),
		"canary/app.yaml": fmt.Sprintf("kind: container\nname: %s\nimage: %s\ntag: \"1.0.0\"\nhealth: {cmd: [%q], interval: 1s, retries: 1}\nstop_timeout: 1s\n",
			container, image, healthCmd),
	}
}

// TestRolloutWaves runs twelve agents, each a process with its own root
// and state, in three waves (a canary, an early ring of four, the rest of
// seven) against one Git server over HTTP:
//   - a good commit goes through the waves in order, and the notes'
//     times show that each wave waited for the soak of the one before;
//   - a commit whose container fails its health check on the canary is
//     rolled back there and halted: no host of a later wave applies it,
//     each says so in its status, and `fleet --rollout` exits 1;
//   - the fix that follows goes through every wave, although one host of
//     the early ring is offline: the rest wait for it no longer than the
//     rollout's alive time;
//   - with the canary offline too, its wave holds every commit; a commit
//     with the emergency trailer goes to every host at once.
//
// It runs alone, before the package's parallel tests: twelve agents that
// read the fleet's notes at each poll load a 2-core machine, and the
// timing of the lossy-network suites must not depend on them.
func TestRolloutWaves(t *testing.T) {
	container := uniqueName("e2e-rollout-")
	image := pushWeb(t, container, "1.0.0")
	cleanContainers(t, container, image+":1.0.0")
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(rolloutFiles("v1\n", container, image, "true"), "first")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	// r-00 is the canary (by name), r-01 to r-04 the early ring (by
	// label), the other seven the last wave.
	var hosts []*rolloutHost
	for i := range 12 {
		ring := ""
		if i >= 1 && i <= 4 {
			ring = "early"
		}
		hosts = append(hosts, startRolloutHost(t, srv.URL("env"), fmt.Sprintf("r-%02d", i), ring))
	}
	// notesOn waits until every host of want has a note on commit with
	// result, and returns the notes by host.
	notesOn := func(commit string, result notes.Result, want []*rolloutHost, timeout time.Duration) map[string]notes.Note {
		t.Helper()
		out := map[string]notes.Note{}
		eventually(t, timeout, fmt.Sprintf("every host's note on %.12s says %s", commit, result), func() error {
			for _, h := range want {
				if _, ok := out[h.name]; ok {
					continue
				}
				n, err := noteOn(repo, h.name, commit)
				if err != nil {
					return err
				}
				if n.Result != result {
					return fmt.Errorf("%s's note on %.12s says %s:\n%s", h.name, commit, n.Result, h.log())
				}
				out[h.name] = n
			}
			return nil
		})
		return out
	}
	notesOn(first, notes.Applied, hosts, 3*time.Minute)

	// A good commit goes through the waves in order.
	good := repo.Commit(rolloutFiles("v2\n", container, image, "true"), "good")
	byHost := notesOn(good, notes.Applied, hosts, 3*time.Minute)
	canary := byHost["r-00"]
	var earlyHealthy time.Time
	for _, h := range hosts[1:5] {
		n := byHost[h.name]
		if n.AppliedAt.Before(canary.HealthyAt.Add(rolloutSoak)) {
			t.Errorf("%s applied the good commit at %s, before the canary's soak ended (healthy at %s, soak %s)", h.name, n.AppliedAt, canary.HealthyAt, rolloutSoak)
		}
		if n.HealthyAt.After(earlyHealthy) {
			earlyHealthy = n.HealthyAt
		}
	}
	for _, h := range hosts[5:] {
		if n := byHost[h.name]; n.AppliedAt.Before(earlyHealthy.Add(rolloutSoak)) {
			t.Errorf("%s applied the good commit at %s, before the early ring's soak ended (last healthy at %s)", h.name, n.AppliedAt, earlyHealthy)
		}
	}

	// A commit that fails its health check on the canary is halted.
	bad := repo.Commit(rolloutFiles("v3\n", container, image, "false"), "bad")
	notesOn(bad, notes.RolledBack, hosts[:1], 2*time.Minute)
	eventually(t, time.Minute, "every later host says the bad commit is halted", func() error {
		for _, h := range hosts[1:] {
			s, err := h.held()
			if err != nil {
				return err
			}
			if s == nil || s.Commit != bad || s.State != notes.HoldHalted {
				return fmt.Errorf("%s holds %+v, want %.12s halted", h.name, s, bad)
			}
		}
		return nil
	})
	fleet := exec.Command(filepath.Join(binDir, "outpost"), "fleet", "--rollout", "--commit", bad, "--config", hosts[1].cfg)
	out, err := fleet.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "halted") {
		t.Errorf("fleet --rollout on the bad commit: %v\n%s\nwant exit status 1 and halted", err, out)
	}
	out, _ = exec.Command(filepath.Join(binDir, "outpost"), "fleet", "--rollout", "--json", "--commit", bad, "--config", hosts[1].cfg).Output()
	var view struct {
		Commit string
		Halted bool
		Waves  []struct {
			Name            string
			Failed, Counted int
			Halted          bool
		}
	}
	if err := json.Unmarshal(out, &view); err != nil || view.Commit != bad || !view.Halted || len(view.Waves) != 3 ||
		!view.Waves[0].Halted || view.Waves[0].Failed != 1 || view.Waves[1].Halted || view.Waves[2].Failed != 0 {
		t.Errorf("fleet --rollout --json on the bad commit = %+v, %v\n%s", view, err, out)
	}

	// The fix goes through every wave; one host of the early ring is
	// offline.
	offline := hosts[4]
	offline.stop()
	lastSeen := time.Now()
	fix := repo.Commit(rolloutFiles("v4\n", container, image, "true"), "fix")
	live := append(append([]*rolloutHost{}, hosts[:4]...), hosts[5:]...)
	byHost = notesOn(fix, notes.Applied, live, 3*time.Minute)
	for _, h := range hosts[5:] {
		if n := byHost[h.name]; n.AppliedAt.Before(lastSeen.Truncate(time.Second).Add(rolloutAlive - time.Second)) {
			t.Errorf("%s applied the fix at %s, before the offline host's alive time ended (last seen %s, alive %s)", h.name, n.AppliedAt, lastSeen, rolloutAlive)
		}
	}
	for _, h := range hosts[1:] {
		if n, err := noteOn(repo, h.name, bad); err == nil {
			t.Errorf("%s wrote a note on the halted commit: %+v", h.name, n)
		}
	}
	out, err = exec.Command(filepath.Join(binDir, "outpost"), "fleet", "--rollout", "--config", hosts[1].cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "offline: r-04") {
		t.Errorf("fleet --rollout on the fix: %v\n%s\nwant exit status 0 and r-04 offline", err, out)
	}

	// With the canary offline, its wave holds; the emergency trailer
	// skips the gates.
	hosts[0].stop()
	urgent := repo.Commit(rolloutFiles("v5\n", container, image, "true"), "urgent\n\nOutpost-Rollout: immediate")
	notesOn(urgent, notes.Applied, live[1:], 2*time.Minute)
	for _, h := range live[1:] {
		b, err := os.ReadFile(filepath.Join(h.dir, "root", "etc", "motd"))
		if err != nil || string(b) != "v5\n" {
			t.Errorf("%s's /etc/motd = %q, %v; want v5", h.name, b, err)
		}
	}
}
