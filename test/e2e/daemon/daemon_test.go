package daemon

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// TestConvergeAndRepairDrift applies a commit with a file, a unit and a
// container, then makes each kind of drift by hand and waits for the agent
// to repair it and count it.
func TestConvergeAndRepairDrift(t *testing.T) {
	t.Parallel()
	name := uniqueName("e2e-web-")
	unit := name + ".service"
	image := pushWeb(t, name, "1.0.0")
	cleanContainers(t, name, image+":1.0.0")

	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	commit := repo.Commit(gitserver.Files{
		"app.yaml":  fileManifest(managedFile, "version one\n"),
		"unit.yaml": unitManifest(unit),
		"web.yaml":  containerManifest(name, image, "1.0.0", `"true"`, "1"),
	}, "file, unit and container")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir})
	a := newAgent(t, h, agentConfig(srv.URL("env"), "web-1", 2*time.Second, 30*time.Second))
	a.start()

	s := a.waitStatus(2*time.Minute, "the first commit applied", func(s *status) bool {
		return s.Commit == commit && s.Result == "applied"
	})
	if s.LastGood != commit {
		t.Errorf("status last_good = %q, want %q", s.LastGood, commit)
	}
	if len(s.Resources) != 3 {
		t.Errorf("status lists %d resources, want 3: %+v", len(s.Resources), s.Resources)
	}
	for _, r := range s.Resources {
		if r.State != "converged" {
			t.Errorf("resource %s:%s is %q (%s), want converged", r.Kind, r.Name, r.State, r.Error)
		}
	}
	if got, err := readHostFile(h, managedFile); err != nil || got != "version one\n" {
		t.Errorf("%s = %q, %v; want %q", managedFile, got, err, "version one\n")
	}
	if got := unitActive(h, unit); got != "active" {
		t.Errorf("%s is %q, want active", unit, got)
	}
	eventually(t, time.Minute, "the container runs healthy", func() error {
		st, err := containerState(name)
		if err != nil || st != "running healthy" {
			return fmt.Errorf("container %s: %q, %v", name, st, err)
		}
		return nil
	})
	if ids := ownedContainers(t, name); len(ids) != 1 {
		t.Fatalf("owned containers named %s: %d, want 1", name, len(ids))
	}

	repaired := s.DriftRepaired
	drifts := []struct {
		name     string
		resource string
		make     func() error
		repaired func() error
	}{
		{
			name:     "file edited",
			resource: managedFile,
			make: func() error {
				return h.WriteFileErr(context.Background(), managedFile, []byte("edited by hand\n"), 0o644)
			},
			repaired: func() error {
				got, err := readHostFile(h, managedFile)
				if err != nil || got != "version one\n" {
					return fmt.Errorf("%s = %q, %v", managedFile, got, err)
				}
				return nil
			},
		},
		{
			name:     "unit stopped",
			resource: unit,
			make: func() error {
				_, err := h.Exec(context.Background(), "systemctl", "stop", unit)
				return err
			},
			repaired: func() error {
				if got := unitActive(h, unit); got != "active" {
					return fmt.Errorf("%s is %q", unit, got)
				}
				return nil
			},
		},
		{
			name:     "container killed",
			resource: name,
			make: func() error {
				_, err := docker("kill", name)
				return err
			},
			repaired: containerRunning(t, name),
		},
		{
			name:     "container removed",
			resource: name,
			make: func() error {
				_, err := docker("rm", "-f", name)
				return err
			},
			repaired: containerRunning(t, name),
		},
	}
	for _, d := range drifts {
		t.Run(d.name, func(t *testing.T) {
			if err := d.make(); err != nil {
				t.Fatal(err)
			}
			eventually(t, time.Minute, "drift repaired", d.repaired)
			s := a.waitStatus(30*time.Second, "the repair counted", func(s *status) bool {
				return s.DriftRepaired > repaired
			})
			repaired = s.DriftRepaired
			for _, r := range s.Resources {
				if r.Name == d.resource && r.Repairs == 0 {
					t.Errorf("status of %s:%s counts no repair", r.Kind, r.Name)
				}
			}
		})
	}
	if s := a.mustControl("status"); s.Commit != commit || s.Result != "applied" {
		t.Errorf("after the repairs, status = %s %s, want %s applied", s.Commit, s.Result, commit)
	}
}

// containerRunning returns a check that exactly one owned container named
// name exists and runs.
func containerRunning(t testing.TB, name string) func() error {
	return func() error {
		st, err := containerState(name)
		if err != nil || !strings.HasPrefix(st, "running") {
			return fmt.Errorf("container %s: %q, %v", name, st, err)
		}
		if ids := ownedContainers(t, name); len(ids) != 1 {
			return fmt.Errorf("%d owned containers named %s, want 1", len(ids), name)
		}
		return nil
	}
}

// TestRollbackOnFailedHealthcheck applies a commit whose container never
// becomes healthy: the host goes back to the previous commit, does not try
// the failed one again on its own, and tries it again on `outpost retry`.
func TestRollbackOnFailedHealthcheck(t *testing.T) {
	t.Parallel()
	name := uniqueName("e2e-rb-")
	image := pushWeb(t, name, "1.0.0")
	cleanContainers(t, name, image+":1.0.0")

	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	good := repo.Commit(gitserver.Files{
		"app.yaml": fileManifest(managedFile, "good\n"),
		"web.yaml": containerManifest(name, image, "1.0.0", `"true"`, "good"),
	}, "healthy")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir})
	a := newAgent(t, h, agentConfig(srv.URL("env"), "web-1", 2*time.Second, 10*time.Second))
	a.start()
	a.waitStatus(2*time.Minute, "the healthy commit applied", func(s *status) bool {
		return s.Commit == good && s.Result == "applied"
	})

	bad := repo.Commit(gitserver.Files{
		"app.yaml": fileManifest(managedFile, "bad\n"),
		"web.yaml": containerManifest(name, image, "1.0.0", `"false"`, "bad"),
	}, "unhealthy")
	s := a.waitStatus(2*time.Minute, "the unhealthy commit rolled back", func(s *status) bool {
		return s.Result == "rolled-back"
	})
	if s.Commit != good || s.LastGood != good {
		t.Errorf("after the rollback, status commit %s last good %s, want %s for both", s.Commit, s.LastGood, good)
	}
	if _, ok := s.Failed[bad]; !ok {
		t.Errorf("status failed = %v, want it to hold %s", keys(s.Failed), bad)
	}
	checkGood := func(when string) string {
		t.Helper()
		if got, _ := readHostFile(h, managedFile); got != "good\n" {
			t.Errorf("%s: %s = %q, want the good commit's %q", when, managedFile, got, "good\n")
		}
		env, err := docker("inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", name)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if !strings.Contains(env, "VERSION=good") {
			t.Errorf("%s: container env %q, want VERSION=good", when, env)
		}
		ids := ownedContainers(t, name)
		if len(ids) != 1 {
			t.Fatalf("%s: %d owned containers, want 1", when, len(ids))
		}
		return ids[0]
	}
	id := checkGood("after the rollback")
	eventually(t, time.Minute, "the previous container healthy again", func() error {
		st, err := containerState(name)
		if st != "running healthy" {
			return fmt.Errorf("container %s: %q, %v", name, st, err)
		}
		return nil
	})
	tries := strings.Count(a.logs.String(), "revision failed")
	if tries != 1 {
		t.Errorf("the log says %d times that a revision failed, want 1", tries)
	}

	// Neither the next polls nor an explicit reconcile try it again.
	time.Sleep(5 * time.Second)
	s = a.mustControl("reconcile")
	if s.Commit != good || s.RolledBack != bad || s.exit != 1 {
		t.Errorf("after reconcile, status commit = %s rolled back %q, exit %d; want the good %s, %s rolled back, exit 1", s.Commit, s.RolledBack, s.exit, good, bad)
	}
	// The text names the commit the host runs and the one rolled back.
	text, err := a.outpost(context.Background(), "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"revision:  " + good + " in force again after a rollback\n", "rolled back: " + bad + " "} {
		if !strings.Contains(string(text), want) {
			t.Errorf("outpost status printed\n%s\nwant a line with %q", text, want)
		}
	}
	if got := strings.Count(a.logs.String(), "revision failed"); got != tries {
		t.Errorf("the failed commit was tried again without retry: %d failures in the log, want %d", got, tries)
	}
	if got := checkGood("after reconcile"); got != id {
		t.Errorf("reconcile replaced the container %s with %s", id, got)
	}

	// retry tries it again, and it fails again.
	s = a.mustControl("retry")
	if s.Result != "rolled-back" || s.Commit != good || s.exit != 1 {
		t.Errorf("after retry, status = %s %s exit %d, want %s rolled-back exit 1", s.Commit, s.Result, s.exit, good)
	}
	if _, ok := s.Failed[bad]; !ok {
		t.Errorf("after retry, status failed = %v, want it to hold %s", keys(s.Failed), bad)
	}
	if got := strings.Count(a.logs.String(), "revision failed"); got != tries+1 {
		t.Errorf("after retry, the log says %d times that a revision failed, want %d", got, tries+1)
	}
	checkGood("after retry")

	// While suspended, reconcile changes nothing and says so with exit 3.
	a.mustControl("suspend")
	if s = a.mustControl("reconcile"); !s.Suspended || s.exit != 3 {
		t.Errorf("reconcile while suspended: suspended %v, exit %d; want true, 3", s.Suspended, s.exit)
	}
	a.mustControl("resume")
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReloadKeepsOldConfigWhenBroken sends SIGHUP after breaking the
// configuration file: the agent keeps running on the old one, answers
// status and applies the next commit; a valid configuration is then taken.
func TestReloadKeepsOldConfigWhenBroken(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(gitserver.Files{"app.yaml": fileManifest(managedFile, "first\n")}, "first")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{BinDir: binDir, NoDocker: true})
	cfg := agentConfig(srv.URL("env"), "web-1", 2*time.Second, 30*time.Second)
	a := newAgent(t, h, cfg)
	a.start()
	a.waitStatus(2*time.Minute, "the first commit applied", func(s *status) bool {
		return s.Commit == first && s.Result == "applied"
	})

	h.WriteFile(t, configPath, []byte(cfg+"colour: blue\nsource: [\n"), 0o600)
	a.signal(syscall.SIGHUP)
	eventually(t, 30*time.Second, "the broken configuration refused", func() error {
		if !strings.Contains(a.logs.String(), "configuration not reloaded") {
			return fmt.Errorf("no refusal in the log")
		}
		return nil
	})
	// The refusal says what is wrong and where, not only an exit status.
	if logs := a.logs.String(); !strings.Contains(logs, `err="`+configPath+":") || strings.Contains(logs, "exit status 2") {
		t.Errorf("the refusal does not name the configuration's error:\n%s", logs)
	}
	if a.exited() {
		t.Fatal("the agent exited after SIGHUP with a broken configuration")
	}
	second := repo.Commit(gitserver.Files{"app.yaml": fileManifest(managedFile, "second\n")}, "second")
	a.waitStatus(time.Minute, "the second commit applied on the old configuration", func(s *status) bool {
		return s.Commit == second && s.Result == "applied"
	})
	if got, _ := readHostFile(h, managedFile); got != "second\n" {
		t.Errorf("%s = %q, want %q", managedFile, got, "second\n")
	}

	// A valid configuration is taken, and the agent goes on.
	h.WriteFile(t, configPath, []byte(strings.Replace(cfg, "name: web-1", "name: web-2", 1)), 0o600)
	a.signal(syscall.SIGHUP)
	eventually(t, 30*time.Second, "the new configuration taken", func() error {
		if !strings.Contains(a.logs.String(), "configuration reloaded") {
			return fmt.Errorf("no reload in the log")
		}
		return nil
	})
	third := repo.Commit(gitserver.Files{"app.yaml": fileManifest(managedFile, "third\n")}, "third")
	a.waitStatus(time.Minute, "the third commit applied on the new configuration", func(s *status) bool {
		return s.Commit == third && s.Result == "applied"
	})
	if a.exited() {
		t.Fatal("the agent exited")
	}
}
