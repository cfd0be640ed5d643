package install

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// Where the test binds the packages and the provisioning script into the
// host.
const (
	hostDist1     = "/srv/outpost-dist/" + version1
	hostDist2     = "/srv/outpost-dist/" + version2
	hostProvision = "/srv/outpost-provision.sh"
)

// managedFile is the file resource that the environment repository puts on
// the host: a template, so its content shows which labels the agent ran
// with.
const managedFile = "/etc/outpost-e2e/hello.conf"

func manifest(greeting string) gitserver.Files {
	return gitserver.Files{"hello.yaml": fmt.Sprintf(`kind: file
path: %s
template: true
mode: "0644"
content: |
  %s from {{ .Host.Name }} with role={{ .Host.Labels.role }}
`, managedFile, greeting)}
}

// TestDebLifecycle installs the .deb on a booted Debian 12 host with
// test/vagrant/provision.sh, follows a repository on a git server, upgrades
// to a second build and removes the package, under the host's own systemd.
func TestDebLifecycle(t *testing.T) {
	b := packages(t)
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	first := repo.Commit(manifest("hello"), "first desired state")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})

	h := host.Start(t, host.Options{
		NoDocker: true,
		Binds: []host.Bind{
			{Source: b.Dist1, Target: hostDist1, ReadOnly: true},
			{Source: b.Dist2, Target: hostDist2, ReadOnly: true},
			{Source: filepath.Join(b.Root, "test/vagrant/provision.sh"), Target: hostProvision, ReadOnly: true},
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := h.Exec(context.Background(), "journalctl", "-u", "outpost.service", "--no-pager", "-n", "80")
			t.Logf("outpost.service's journal:\n%s", out)
		}
	})
	name := strings.TrimSpace(h.Run(t, "hostname"))

	// Install and start, as on a Vagrant machine.
	start := time.Now()
	out := h.Run(t, "sh", hostProvision, hostDist1, srv.URL("env"), "main", "role=web,site=lab")
	t.Logf("provision.sh took %v:\n%s", time.Since(start).Round(time.Millisecond), out)

	show := unitProperties(t, h)
	want := map[string]string{"ActiveState": "active", "SubState": "running", "Type": "notify", "UnitFileState": "enabled", "LoadState": "loaded"}
	for k, v := range want {
		if show[k] != v {
			t.Errorf("systemctl show outpost: %s=%q, want %q", k, show[k], v)
		}
	}
	// A Type=notify unit stays activating until the service sends READY=1,
	// so active means READY arrived; STATUS= fills in StatusText.
	if show["StatusText"] == "" {
		t.Errorf("systemctl show outpost: StatusText is empty, want the agent's STATUS= line")
	}
	if show["WatchdogUSec"] == "0" || show["WatchdogUSec"] == "" {
		t.Errorf("systemctl show outpost: WatchdogUSec=%q, want the unit's watchdog", show["WatchdogUSec"])
	}
	if got := strings.TrimSpace(h.Run(t, "outpost", "version")); !strings.Contains(got, version1) {
		t.Errorf("outpost version = %q, want %s", got, version1)
	}

	waitFile(t, h, managedFile, "hello from "+name+" with role=web\n")
	waitNote(t, repo, name, first)

	// A new commit on the server reaches the running agent.
	second := repo.Commit(manifest("hi again"), "second desired state")
	waitFile(t, h, managedFile, "hi again from "+name+" with role=web\n")
	waitNote(t, repo, name, second)

	// Upgrade with the operator's own changes to agent.yaml.
	cfg := h.ReadFile(t, "/etc/outpost/agent.yaml")
	changed := strings.Replace(string(cfg), `role: "web"`, `role: "db"`, 1)
	if changed == string(cfg) {
		t.Fatalf("agent.yaml written by provision.sh has no role label:\n%s", cfg)
	}
	changed = "# changed by hand\n" + changed
	h.WriteFile(t, "/etc/outpost/agent.yaml", []byte(changed), 0o600)
	stateBefore := readState(t, h)
	if stateBefore.Commit != second {
		t.Errorf("state.json commit = %s before the upgrade, want %s", stateBefore.Commit, second)
	}
	pidBefore := show["MainPID"]

	start = time.Now()
	out = h.Run(t, "env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i", filepath.Join(hostDist2, filepath.Base(b.Deb2)))
	t.Logf("dpkg -i (upgrade) took %v:\n%s", time.Since(start).Round(time.Millisecond), out)

	show = unitProperties(t, h)
	if show["ActiveState"] != "active" || show["SubState"] != "running" {
		t.Errorf("after the upgrade outpost is %s/%s, want active/running", show["ActiveState"], show["SubState"])
	}
	if show["MainPID"] == pidBefore || show["MainPID"] == "0" {
		t.Errorf("after the upgrade MainPID = %s, before %s: want a restarted agent", show["MainPID"], pidBefore)
	}
	if exe := strings.TrimSpace(h.Run(t, "readlink", "/proc/"+show["MainPID"]+"/exe")); exe != "/usr/bin/outpost" {
		t.Errorf("the agent runs %q, want /usr/bin/outpost of the new package", exe)
	}
	if got := strings.TrimSpace(h.Run(t, "outpost", "version")); !strings.Contains(got, version2) {
		t.Errorf("outpost version = %q after the upgrade, want %s", got, version2)
	}
	if got := string(h.ReadFile(t, "/etc/outpost/agent.yaml")); got != changed {
		t.Errorf("agent.yaml after the upgrade =\n%s\nwant the changed one:\n%s", got, changed)
	}
	checkMode(t, h, "/etc/outpost/agent.yaml", "600")
	stateAfter := readState(t, h)
	if stateAfter.Commit != second || stateAfter.LastGood != second {
		t.Errorf("state.json after the upgrade: commit %s, last good %s; want %s kept", stateAfter.Commit, stateAfter.LastGood, second)
	}
	// The restarted agent runs with the changed configuration.
	waitFile(t, h, managedFile, "hi again from "+name+" with role=db\n")

	// Removal stops and disables the agent and takes its files away.
	out = h.Run(t, "dpkg", "-r", "outpost")
	t.Logf("dpkg -r:\n%s", out)
	show = unitProperties(t, h)
	if show["LoadState"] != "not-found" || show["ActiveState"] != "inactive" {
		t.Errorf("after removal outpost.service is %s/%s, want not-found/inactive", show["LoadState"], show["ActiveState"])
	}
	if out, err := h.Exec(context.Background(), "pgrep", "-a", "outpost"); err == nil {
		t.Errorf("after removal these processes run:\n%s", out)
	}
	for _, p := range []string{
		"/usr/bin/outpost",
		"/usr/bin/outpost-import",
		"/usr/lib/systemd/system/outpost.service",
		"/etc/systemd/system/multi-user.target.wants/outpost.service",
		"/run/outpost",
	} {
		if exists(t, h, p) {
			t.Errorf("%s exists after removal", p)
		}
	}
	// Removal keeps the configuration and the state, as dpkg -r keeps
	// every configuration file; what the agent deployed stays too.
	for _, p := range []string{"/etc/outpost/agent.yaml", "/var/lib/outpost/state.json", managedFile} {
		if !exists(t, h, p) {
			t.Errorf("%s is gone after dpkg -r, want it kept until a purge", p)
		}
	}
	h.Run(t, "dpkg", "-P", "outpost")
	for _, p := range []string{"/etc/outpost", "/var/lib/outpost"} {
		if exists(t, h, p) {
			t.Errorf("%s exists after dpkg -P", p)
		}
	}
}

// unitProperties returns systemctl show's properties of outpost.service.
func unitProperties(t *testing.T, h *host.Host) map[string]string {
	t.Helper()
	out := h.Run(t, "systemctl", "show", "outpost.service",
		"-p", "LoadState,ActiveState,SubState,Type,MainPID,StatusText,UnitFileState,WatchdogUSec,NRestarts")
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	return props
}

// waitFile waits until path inside h holds want.
func waitFile(t *testing.T, h *host.Host, path, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var got string
	for time.Now().Before(deadline) {
		out, err := h.Exec(context.Background(), "cat", path)
		got = string(out)
		if err == nil && got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s in the host = %q after 2 minutes, want %q", path, got, want)
}

// note is the part of a status note that the test reads.
type note struct {
	Host         string `json:"host"`
	Commit       string `json:"commit"`
	Result       string `json:"result"`
	AgentVersion string `json:"agent_version"`
}

// waitNote waits until the server's repository holds host's note on commit,
// and checks that it says applied.
func waitNote(t *testing.T, repo *gitserver.Repo, hostName, commit string) {
	t.Helper()
	ref := "outpost/" + hostName
	deadline := time.Now().Add(2 * time.Minute)
	var lastErr error
	for time.Now().Before(deadline) {
		out, err := gitOutput(repo.Path, "notes", "--ref="+ref, "show", commit)
		if err == nil {
			var n note
			if err := json.Unmarshal([]byte(out), &n); err != nil {
				t.Fatalf("note on %s in refs/notes/%s is not JSON: %v\n%s", commit, ref, err, out)
			}
			if n.Host != hostName || n.Commit != commit || n.Result != "applied" {
				t.Fatalf("note on %s = host %q, commit %q, result %q; want %s, %s, applied", commit, n.Host, n.Commit, n.Result, hostName, commit)
			}
			return
		}
		lastErr = err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("no note from %s on %s in the server's repository after 2 minutes: %v", hostName, commit, lastErr)
}

// state is the part of state.json that the test reads.
type state struct {
	Commit   string `json:"commit"`
	LastGood string `json:"last_good"`
}

func readState(t *testing.T, h *host.Host) state {
	t.Helper()
	b := h.ReadFile(t, "/var/lib/outpost/state.json")
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("state.json: %v\n%s", err, b)
	}
	return s
}

func exists(t *testing.T, h *host.Host, path string) bool {
	t.Helper()
	_, err := h.Exec(context.Background(), "test", "-e", path)
	return err == nil
}

func checkMode(t *testing.T, h *host.Host, path, want string) {
	t.Helper()
	if got := strings.TrimSpace(h.Run(t, "stat", "-c", "%a", path)); got != want {
		t.Errorf("mode of %s = %s, want %s", path, got, want)
	}
}
