package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// applyOut is what one `outpost apply` printed, and how it exited.
type applyOut struct {
	code           int
	stdout, stderr string
}

// apply runs `outpost apply --json` inside h with the configuration at
// configPath, plus args.
func apply(t testing.TB, h *host.Host, args ...string) applyOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append([]string{agentBin, "apply", "--json", "--config", configPath, "--state-dir", stateDir, "-v"}, args...)
	cmd := h.Command(ctx, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	out := applyOut{stdout: stdout.String(), stderr: stderr.String()}
	switch {
	case errors.As(err, &ee):
		out.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("outpost apply: %v", err)
	}
	return out
}

// mustApply is apply that wants exit status want.
func mustApply(t testing.TB, h *host.Host, want int, args ...string) applyOut {
	t.Helper()
	out := apply(t, h, args...)
	if out.code != want {
		t.Fatalf("outpost apply exited %d, want %d\nstdout:\n%s\nstderr:\n%s", out.code, want, out.stdout, out.stderr)
	}
	return out
}

// hostState is the part of state.json that two agents of the same commit
// must agree on.
type hostState struct {
	Commit    string `json:"commit"`
	LastGood  string `json:"last_good"`
	Inventory map[string]struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
		Hash string `json:"hash"`
	} `json:"inventory"`
	Failed map[string]struct {
		Result string `json:"result"`
	} `json:"failed"`
}

func readState(t testing.TB, h *host.Host) hostState {
	t.Helper()
	raw, err := readHostFile(h, stateDir+"/state.json")
	if err != nil {
		t.Fatalf("read state.json: %v", err)
	}
	var st hostState
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("state.json: %v\n%s", err, raw)
	}
	return st
}

// note is the part of a status note that two agents of the same commit
// must agree on.
type note struct {
	Host    string            `json:"host"`
	Commit  string            `json:"commit"`
	Result  string            `json:"result"`
	Message string            `json:"message"`
	Images  map[string]string `json:"images"`
	Failed  []json.RawMessage `json:"failed"`
}

// serverNote reads host's note on commit from the served repository, as
// pushed there.
func serverNote(t testing.TB, repo *gitserver.Repo, hostName, commit string) (note, bool) {
	t.Helper()
	cmd := exec.Command("git", "--git-dir", repo.Path, "notes", "--ref", "refs/notes/outpost/"+hostName, "show", commit)
	out, err := cmd.Output()
	if err != nil {
		return note{}, false
	}
	var n note
	if err := json.Unmarshal(out, &n); err != nil {
		t.Fatalf("note of %s on %s: %v\n%s", hostName, commit, err, out)
	}
	return n, true
}

// pushConfig is agentConfig with status.push on and a registry check
// interval.
func pushConfig(url, name string, interval, healthTimeout, imagesInterval time.Duration) string {
	cfg := strings.Replace(agentConfig(url, name, interval, healthTimeout), "push: false", "push: true", 1)
	return cfg + fmt.Sprintf("images:\n  interval: %s\n", imagesInterval)
}

// TestApplyAndRunAgree runs `outpost apply` on one host and `outpost run`
// on another over the same commit: both push a note with the same outcome,
// and leave the same state (commit, last good, inventory).
func TestApplyAndRunAgree(t *testing.T) {
	t.Parallel()
	unit := uniqueName("e2e-agree-") + ".service"
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	commit := repo.Commit(gitserver.Files{
		"app.yaml":  fileManifest(managedFile, "agree\n"),
		"unit.yaml": unitManifest(unit),
	}, "files and a unit")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	byApply := host.Start(t, host.Options{BinDir: binDir})
	byRun := host.Start(t, host.Options{BinDir: binDir})
	byApply.WriteFile(t, configPath, []byte(pushConfig(srv.URL("env"), "by-apply", time.Hour, 30*time.Second, time.Hour)), 0o600)
	out := mustApply(t, byApply, 0)
	if !strings.Contains(out.stdout, `"result": "applied"`) {
		t.Errorf("apply's report = %s, want result applied", out.stdout)
	}

	a := newAgent(t, byRun, pushConfig(srv.URL("env"), "by-run", time.Hour, 30*time.Second, time.Hour))
	a.start()
	a.waitStatus(2*time.Minute, "the commit applied", func(s *status) bool {
		return s.Commit == commit && s.Result == "applied"
	})

	notes := map[string]note{}
	for _, name := range []string{"by-apply", "by-run"} {
		eventually(t, time.Minute, "the note of "+name+" pushed", func() error {
			n, ok := serverNote(t, repo, name, commit)
			if !ok {
				return fmt.Errorf("no note of %s on %s in the served repository", name, commit)
			}
			notes[name] = n
			return nil
		})
	}
	if n := notes["by-apply"]; n.Result != "applied" || n.Commit != commit {
		t.Errorf("apply's note = %+v, want %s applied", n, commit)
	}
	ignoreHost := cmpopts.IgnoreFields(note{}, "Host")
	if d := cmp.Diff(notes["by-run"], notes["by-apply"], ignoreHost); d != "" {
		t.Errorf("notes of run and apply differ (-run +apply):\n%s", d)
	}
	applied, ran := readState(t, byApply), readState(t, byRun)
	if applied.Commit != commit || applied.LastGood != commit {
		t.Errorf("apply's state: commit %s last good %s, want %s", applied.Commit, applied.LastGood, commit)
	}
	if d := cmp.Diff(ran, applied); d != "" {
		t.Errorf("state of run and apply differ (-run +apply):\n%s", d)
	}
	if got := unitActive(byApply, unit); got != "active" {
		t.Errorf("after apply, %s is %q, want active", unit, got)
	}
}

// TestApplyRollsBackUnitThatExits applies a commit whose unit's ExecStart
// exits at once: apply exits 1, puts the last good commit back, records
// the commit as rolled back and pushes a note that says so.
func TestApplyRollsBackUnitThatExits(t *testing.T) {
	t.Parallel()
	unit := uniqueName("e2e-exits-") + ".service"
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	good := repo.Commit(gitserver.Files{
		"app.yaml":  fileManifest(managedFile, "good\n"),
		"unit.yaml": unitManifest(unit),
	}, "good")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir})
	h.WriteFile(t, configPath, []byte(pushConfig(srv.URL("env"), "exits", time.Hour, 10*time.Second, time.Hour)), 0o600)
	mustApply(t, h, 0)

	bad := repo.Commit(gitserver.Files{
		"app.yaml":  fileManifest(managedFile, "bad\n"),
		"unit.yaml": strings.Replace(unitManifest(unit), "ExecStart=/bin/sleep infinity", "ExecStart=/bin/false", 1),
	}, "a unit that exits at once")
	out := mustApply(t, h, 1)
	if !strings.Contains(out.stdout, `"result": "rolled-back"`) {
		t.Errorf("apply's report = %s, want result rolled-back", out.stdout)
	}
	st := readState(t, h)
	if st.LastGood != good || st.Commit != good {
		t.Errorf("state after the rollback: commit %s last good %s, want %s for both", st.Commit, st.LastGood, good)
	}
	if f, ok := st.Failed[bad]; !ok || f.Result != "rolled-back" {
		t.Errorf("state's failed revisions = %+v, want %s rolled-back", st.Failed, bad)
	}
	if got, _ := readHostFile(h, managedFile); got != "good\n" {
		t.Errorf("after the rollback %s = %q, want the good commit's", managedFile, got)
	}
	if body, _ := readHostFile(h, "/etc/systemd/system/"+unit); !strings.Contains(body, "sleep infinity") {
		t.Errorf("after the rollback the unit file is\n%s\nwant the good commit's", body)
	}
	eventually(t, 30*time.Second, unit+" active again", func() error {
		if got := unitActive(h, unit); got != "active" {
			return fmt.Errorf("%s is %q", unit, got)
		}
		return nil
	})
	if n, ok := serverNote(t, repo, "exits", bad); !ok || n.Result != "rolled-back" {
		t.Errorf("note on the bad commit = %+v (found %v), want rolled-back", n, ok)
	}
	// With no agent running, status reads the state: the good commit is
	// the one in force, and the bad one is named as rolled back.
	status := h.Run(t, agentBin, "status", "--config", configPath, "--socket", "/run/none.sock")
	for _, want := range []string{
		"revision:  " + good + " in force again after a rollback\n",
		"rolled back: " + bad + " ",
	} {
		if !strings.Contains(status, want) {
			t.Errorf("outpost status printed\n%s\nwant a line with %q", status, want)
		}
	}

	// --wait=false does not wait: the failed unit is not rolled back for
	// its health, and the revision is not marked failed.
	mustApply(t, h, 0, "--wait=false")
}

// TestApplyFollowsRegistryWhenDue deploys a container that follows its
// registry with apply: a tag pushed after the last check is deployed once
// the check is due, not before; and `outpost images` shows under RUNNING
// what the engine runs.
func TestApplyFollowsRegistryWhenDue(t *testing.T) {
	t.Parallel()
	name := uniqueName("e2e-due-")
	image := pushWeb(t, name, "1.0.0")
	cleanContainers(t, name, image+":1.0.0", image+":1.1.0")
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(gitserver.Files{"web.yaml": fmt.Sprintf(`kind: container
name: %s
image: %s
update: {policy: semver}
health: {cmd: ["true"], interval: 1s, retries: 1}
stop_timeout: 1s
`, name, image)}, "follow the registry")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir})
	config := func(imagesInterval time.Duration) {
		h.WriteFile(t, configPath, []byte(pushConfig(srv.URL("env"), "due", time.Hour, 30*time.Second, imagesInterval)), 0o600)
	}
	config(time.Hour)
	mustApply(t, h, 0)
	checkRunning := func(when, tag string) {
		t.Helper()
		ref, err := docker("inspect", "-f", "{{.Config.Image}}", name)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		_, digest, _ := strings.Cut(ref, "@")
		out, err := h.Command(context.Background(), agentBin, "images", "--json", "--config", configPath, "--state-dir", stateDir).Output()
		if err != nil {
			t.Fatalf("%s: outpost images: %v", when, err)
		}
		var rows []struct {
			Container, Running, Best string
		}
		if err := json.Unmarshal(out, &rows); err != nil || len(rows) != 1 {
			t.Fatalf("%s: outpost images --json = %s (%v), want one row", when, out, err)
		}
		if want := tag + "@" + digest; rows[0].Running != want {
			t.Errorf("%s: images RUNNING = %q, want what the engine runs, %q", when, rows[0].Running, want)
		}
	}
	checkRunning("after the first apply", "1.0.0")

	// Another image: a tag moved to the same digest would change nothing.
	reg.Push(t, name, registry.Image(t, registry.Config{
		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-p", "8080"},
		Labels:     map[string]string{"version": "1.1.0"},
	}), "1.1.0")
	// The last check stands for an hour: the new tag waits.
	mustApply(t, h, 0)
	if ref, _ := docker("inspect", "-f", "{{index .Config.Labels \"io.outpost.image-digest\"}} {{.Config.Image}}", name); strings.Contains(ref, "1.1.0") {
		t.Errorf("before the check is due, the container runs %s", ref)
	}
	checkRunning("before the check is due", "1.0.0")

	config(time.Second)
	time.Sleep(1100 * time.Millisecond)
	out := mustApply(t, h, 0)
	if !strings.Contains(out.stdout, `"name": "`+name+`"`) {
		t.Errorf("apply once the check is due changed nothing:\n%s", out.stdout)
	}
	checkRunning("once the check is due", "1.1.0")
}

// TestApplyKilledThenPruned kills `outpost apply` (SIGKILL) while its unit
// starts, after it created the files; a later commit removes them, and the
// next apply prunes them: what a killed pass created is owned.
func TestApplyKilledThenPruned(t *testing.T) {
	t.Parallel()
	unit := uniqueName("e2e-killapply-") + ".service"
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	files := gitserver.Files{
		"unit.yaml": strings.Replace(unitManifest(unit), "  [Service]\n", "  [Service]\n  ExecStartPre=/bin/sleep 600\n", 1),
	}
	for i := range 5 {
		files[fmt.Sprintf("f%d.yaml", i)] = fileManifest(fmt.Sprintf("/etc/e2e-killapply/f%d.conf", i), "created\n")
	}
	repo.Commit(files, "files, and a unit that starts slowly")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir})
	h.WriteFile(t, configPath, []byte(agentConfig(srv.URL("env"), "killed", time.Hour, 10*time.Second)), 0o600)
	a := &agent{t: t, h: h, logs: &syncBuffer{},
		args: []string{agentBin, "apply", "--config", configPath, "--state-dir", stateDir, "-vv"}}
	t.Cleanup(func() {
		a.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("apply's log:\n%s", a.logs.String())
		}
	})
	a.start()
	eventually(t, 2*time.Minute, "the unit starting", func() error {
		if got := unitActive(h, unit); got != "activating" {
			return fmt.Errorf("%s is %q", unit, got)
		}
		return nil
	})
	a.kill(syscall.SIGKILL)
	for i := range 5 {
		if _, err := readHostFile(h, fmt.Sprintf("/etc/e2e-killapply/f%d.conf", i)); err != nil {
			t.Fatalf("f%d.conf was not created before the kill: %v", i, err)
		}
	}

	// Every object is removed, on purpose.
	repo.CommitWith(gitserver.CommitOptions{Replace: true, Message: "remove them", Files: gitserver.Files{
		"fleet.yaml":      "targets:\n  - path: common\nallow_mass_prune: true\n",
		"common/app.yaml": fileManifest(managedFile, "after\n"),
	}})
	mustApply(t, h, 0)
	for i := range 5 {
		if _, err := readHostFile(h, fmt.Sprintf("/etc/e2e-killapply/f%d.conf", i)); err == nil {
			t.Errorf("f%d.conf is still there after the commit that removes it", i)
		}
	}
	if body, err := readHostFile(h, "/etc/systemd/system/"+unit); err == nil {
		t.Errorf("the unit that the killed pass was starting is still there:\n%s", body)
	}
	st := readState(t, h)
	for id := range st.Inventory {
		if strings.Contains(id, "e2e-killapply") {
			t.Errorf("state still owns %s", id)
		}
	}
}
