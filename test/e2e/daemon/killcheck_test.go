package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	outpost "github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/state"
	dockertarget "github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// inspector looks at what the kill test's agent left on its host: the
// host's files through /proc/PID/root (no process per file), its units
// through one shell in the host, and the containers through the Docker API.
type inspector struct {
	t          testing.TB
	h          *host.Host
	name       string // the container resource
	unitPrefix string
	docker     *client.Client
}

func newInspector(t testing.TB, h *host.Host, name, unitPrefix string) *inspector {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed to check the notes repository (apt-get install git)")
	}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &inspector{t: t, h: h, name: name, unitPrefix: unitPrefix, docker: c}
}

// path is p inside the host, as seen from this machine. The paths read
// through it are regular files and directories of the host's own.
func (in *inspector) path(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", in.h.PID()), p)
}

// control sends op to the agent over its control socket, reached from this
// machine: no process is started, so a round's timing is the agent's.
func (in *inspector) control(op string) (*outpost.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return outpost.Control(ctx, in.path(socketPath), op)
}

// waitApplied polls the agent's status until it says that commit applied,
// and fails the test after timeout with the last status seen.
func (in *inspector) waitApplied(what, commit string, timeout time.Duration) {
	in.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *outpost.Status
	var lastErr error
	for {
		s, err := in.control("status")
		if err == nil {
			last, lastErr = s, nil
			if s.Source == "daemon" && s.Commit == commit && s.Result == outpost.ResultApplied {
				return
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(last, "", "  ")
			in.t.Fatalf("%s: after %v, the commit is still not applied; last status: %s; last error: %v", what, timeout, b, lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitApply waits until the agent starts to apply a new commit: its status
// lists the commit's resources as pending. It returns false when done is
// closed first (the converge was over before it was seen).
func (in *inspector) waitApply(done <-chan struct{}) bool {
	in.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if s, err := in.control("status"); err == nil {
			for _, r := range s.Resources {
				if r.State == "pending" {
					return true
				}
			}
		}
		select {
		case <-done:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	in.t.Fatal("the agent did not start to apply the commit within a minute")
	return false
}

// ownedContainer is one container that Outpost owns for the resource.
type ownedContainer struct {
	ID, Name, State string
	Env             string // its VERSION
}

// containers lists the owned containers of the resource, running or not.
// A container that goes away between the list and its inspection (the
// engine was still removing it when the agent died) is listed again.
func (in *inspector) containers() []ownedContainer {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for try := 0; ; try++ {
		out, err := in.listContainers(ctx)
		if err == nil {
			return out
		}
		if !errdefs.IsNotFound(err) || try == 10 {
			in.t.Fatalf("owned containers: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (in *inspector) listContainers(ctx context.Context) ([]ownedContainer, error) {
	list, err := in.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", dockertarget.LabelManaged+"=true"),
		filters.Arg("label", dockertarget.LabelResource+"="+in.name),
	)})
	if err != nil {
		return nil, err
	}
	var out []ownedContainer
	for _, s := range list {
		c, err := in.docker.ContainerInspect(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		oc := ownedContainer{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), State: c.State.Status}
		for _, e := range c.Config.Env {
			if v, ok := strings.CutPrefix(e, "VERSION="); ok {
				oc.Env = v
			}
		}
		out = append(out, oc)
	}
	return out, nil
}

// fileSums returns the SHA-256 of each managed file of s, "" for a missing
// one.
func (in *inspector) fileSums(s *killState) map[string]string {
	sums := map[string]string{}
	for p := range s.hashes {
		data, err := os.ReadFile(in.path(p))
		if err != nil {
			sums[p] = ""
			continue
		}
		sum := sha256.Sum256(data)
		sums[p] = hex.EncodeToString(sum[:])
	}
	return sums
}

// unitFile reads a unit file and returns its content under the marker, and
// whether the marker is there.
func (in *inspector) unitFile(unit string) (body string, marked bool, err error) {
	data, err := os.ReadFile(in.path(filepath.Join(systemd.DefaultUnitDir, unit)))
	if err != nil {
		return "", false, err
	}
	first, rest, _ := strings.Cut(string(data), "\n")
	return rest, strings.HasPrefix(first, systemd.MarkerPrefix), nil
}

// killed checks the host right after a kill during the converge from prev
// to next, before the restart: every managed file and unit file is whole,
// the container is kept (the old one, the new one, or both while one is
// set aside for the other), and the state directory is readable. It returns the
// owned containers and how many managed files were the new version's.
func (in *inspector) killed(what string, prev, next *killState) (cs []ownedContainer, newFiles int) {
	t := in.t
	t.Helper()
	for p, sum := range in.fileSums(next) {
		switch sum {
		case next.hashes[p]:
			newFiles++
		case prev.hashes[p]:
		default:
			t.Errorf("%s: %s is neither version %d nor %d: partly written or missing", what, p, prev.v, next.v)
		}
	}
	in.onlyOurUnits(what, next)
	for unit, want := range next.units {
		body, marked, err := in.unitFile(unit)
		switch {
		case err != nil:
			t.Errorf("%s: unit file of %s: %v", what, unit, err)
		case !marked:
			t.Errorf("%s: unit file of %s lost its marker line", what, unit)
		case body != prev.units[unit] && body != want:
			t.Errorf("%s: unit file of %s is neither version %d nor %d: half written:\n%s", what, unit, prev.v, next.v, body)
		}
	}
	cs = in.containers()
	if len(cs) == 0 || len(cs) > 2 {
		t.Errorf("%s: %d owned containers %+v, want the old one, the new one or both", what, len(cs), cs)
	}
	names := map[string]bool{}
	for _, c := range cs {
		switch {
		case names[c.Name]:
			t.Errorf("%s: two owned containers named %s: %+v", what, c.Name, cs)
		case c.Name != in.name && c.Name != in.name+"-outpost-old":
			t.Errorf("%s: owned container under an unknown name: %+v", what, c)
		case c.Env != prev.web && c.Env != next.web:
			t.Errorf("%s: owned container of neither version: %+v", what, c)
		}
		names[c.Name] = true
	}
	if len(cs) == 2 && cs[0].Env == cs[1].Env {
		t.Errorf("%s: two owned containers of the same version: %+v", what, cs)
	}
	in.stateReadable(what, false)
	return cs, newFiles
}

// onlyOurUnits checks that every unit file that carries Outpost's marker is
// one of the version's units: none is left under another name.
func (in *inspector) onlyOurUnits(what string, s *killState) {
	in.t.Helper()
	dir := in.path(systemd.DefaultUnitDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		in.t.Errorf("%s: %v", what, err)
		return
	}
	for _, e := range entries {
		if _, ours := s.units[e.Name()]; ours || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(string(data), systemd.MarkerPrefix) {
			in.t.Errorf("%s: %s in %s carries the marker but is no unit of the version", what, e.Name(), systemd.DefaultUnitDir)
		}
	}
}

// converged checks that the host runs s and that nothing of an interrupted
// write is left behind.
func (in *inspector) converged(s *killState) {
	t := in.t
	t.Helper()
	what := fmt.Sprintf("version %d", s.v)
	for p, sum := range in.fileSums(s) {
		if sum != s.hashes[p] {
			t.Errorf("%s: %s is not the version's content", what, p)
		}
	}
	in.noStray(what, killDir, func(n string) bool { return strings.HasSuffix(n, ".conf") && !strings.HasPrefix(n, ".") })
	for unit, want := range s.units {
		if body, marked, err := in.unitFile(unit); err != nil || !marked || body != want {
			t.Errorf("%s: unit file of %s = %q (marker %v, %v), want the version's %q", what, unit, body, marked, err, want)
		}
	}
	in.noStray(what, systemd.DefaultUnitDir, func(n string) bool { return !strings.HasPrefix(n, "."+in.unitPrefix) })

	// One shell in the host for every unit.
	var script strings.Builder
	for unit := range s.units {
		fmt.Fprintf(&script, "echo \"%[1]s $(systemctl is-active %[1]s) $(systemctl show -p Environment --value %[1]s)\"\n", unit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := in.h.Exec(ctx, "sh", "-c", script.String())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(s.units) {
		t.Errorf("%s: units say %q, want a line per unit", what, out)
	}
	for _, line := range lines {
		if !strings.HasSuffix(line, " active "+s.unitEnv()) {
			t.Errorf("%s: unit %q, want active with %s", what, line, s.unitEnv())
		}
	}

	cs := in.containers()
	if len(cs) != 1 || cs[0].Name != in.name || cs[0].State != "running" || cs[0].Env != s.web {
		t.Errorf("%s: owned containers %+v, want exactly one, %s, running with VERSION=%s", what, cs, in.name, s.web)
	}

	st := in.stateReadable(what, true)
	if st != nil {
		if st.Commit != s.commit || st.LastGood != s.commit {
			t.Errorf("%s: state.json records commit %.12s, last good %.12s; want %.12s for both", what, st.Commit, st.LastGood, s.commit)
		}
		if want := len(s.hashes) + len(s.units) + 1; len(st.Inventory) != want {
			t.Errorf("%s: state.json owns %d objects, want %d: %v", what, len(st.Inventory), want, keys(st.Inventory))
		}
	}
	in.noStray(what, stateDir, func(n string) bool { return !strings.Contains(n, ".outpost-") })
}

// noStray fails the test for each entry of dir that keep refuses.
func (in *inspector) noStray(what, dir string, keep func(name string) bool) {
	in.t.Helper()
	entries, err := os.ReadDir(in.path(dir))
	if err != nil {
		in.t.Errorf("%s: %v", what, err)
		return
	}
	for _, e := range entries {
		if !keep(e.Name()) {
			in.t.Errorf("%s: %s is left in %s", what, e.Name(), dir)
		}
	}
}

// stateReadable checks the state directory as an agent starting now would
// read it: state.json and images.json parse, and the notes repository
// passes git fsck; once the host converged, that repository must be there.
// It returns the state document.
func (in *inspector) stateReadable(what string, converged bool) *state.State {
	t := in.t
	t.Helper()
	data, err := os.ReadFile(in.path(filepath.Join(stateDir, state.FileName)))
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return nil
	}
	var st state.State
	if err := json.Unmarshal(data, &st); err != nil || st.Schema < 1 {
		t.Errorf("%s: %s does not parse (%v): %q", what, state.FileName, err, data)
		return nil
	}
	data, err = os.ReadFile(in.path(filepath.Join(stateDir, registry.StoreFile)))
	if err == nil && !json.Valid(data) {
		t.Errorf("%s: %s does not parse: %q", what, registry.StoreFile, data)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: %v", what, err)
	}
	notes := in.path(filepath.Join(stateDir, "notes"))
	if _, err := os.Stat(filepath.Join(notes, "HEAD")); err != nil && converged {
		// The source is a Git server: every outcome is written as a note.
		t.Errorf("%s: no notes repository in the state directory: %v", what, err)
	} else if err == nil {
		// git resolves the path it is given, and /proc/PID/root/... then
		// leads to this machine's own /var/lib/outpost: it checks a copy.
		copied := filepath.Join(t.TempDir(), "notes")
		if err := os.CopyFS(copied, os.DirFS(notes)); err != nil {
			t.Errorf("%s: copy the notes repository: %v", what, err)
			return &st
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "git", "--git-dir="+copied, "fsck", "--no-progress", "--no-dangling")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: git fsck of the notes repository: %v\n%s", what, err, out.String())
		}
	}
	return &st
}
