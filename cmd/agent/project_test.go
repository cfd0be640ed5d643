package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// docker runs the docker CLI and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestComposeProject runs a Compose-style project through the command
// line, against a Git server, a registry and the Docker engine: a web
// service, a database with a named volume and a healthcheck, and a worker
// that comes after the database, on a network of the project's own with an
// alias and a fixed subnet, and the project's default network. The worker
// starts only once the database is healthy, on the first create too. The
// services reach each other by their service names. Then: nothing to do;
// one field changed replaces that one container; the daemon repairs a
// container removed by hand; the worker, the network and a volume that
// says prune: true leave, while the volume that does not stays.
func TestComposeProject(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	env := root.Create("env")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	reg := registry.Start(t)
	// The database is healthy 5 s after it starts.
	reg.Push(t, "db", registry.Image(t, registry.Config{
		Entrypoint: []string{"/bin/sh", "-c", "sleep 5; touch /tmp/ready; exec /bin/busybox httpd -f -p 5432 -h /"},
		StopSignal: "SIGKILL",
	}), "1")
	reg.Push(t, "app", registry.Image(t, registry.Config{
		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"},
		StopSignal: "SIGKILL",
	}), "1")

	// Names of the test's own: the project, its networks and volumes.
	p := fmt.Sprintf("op%d", os.Getpid())
	names := []string{p + "-web", p + "-db", p + "-worker"}
	t.Cleanup(func() {
		exec.Command("docker", append([]string{"rm", "-f", "-v"}, names...)...).Run()
		exec.Command("docker", "network", "rm", p+"_back", p+"_default").Run()
		exec.Command("docker", "volume", "rm", p+"_data", p+"_cache").Run()
	})
	subnet := fmt.Sprintf("10.%d.%d.0/24", 150+os.Getpid()%50, os.Getpid()/50%250)
	container := func(service, image, extra string) string {
		return fmt.Sprintf("kind: container\nname: %s-%s\nproject: %s\nimage: %s\ntag: \"1\"\n%s", p, service, p, reg.Repo(image), extra)
	}
	manifests := gitserver.Files{
		"fleet.yaml":   "targets:\n  - path: .\n",
		"network.yaml": fmt.Sprintf("kind: network\nname: %s_back\nproject: %s\ninternal: true\nipam:\n  config:\n    - subnet: %s\n", p, p, subnet),
		"volumes.yaml": fmt.Sprintf("kind: volume\nname: %s_data\nproject: %s\nprune: true\n---\nkind: volume\nname: %s_cache\nproject: %s\n", p, p, p, p),
		"db.yaml": container("db", "db", fmt.Sprintf("volumes: [\"%s_data:/data\", \"%s_cache:/cache\"]\n"+
			"networks:\n  %s_default:\n  %s_back: {aliases: [database]}\n"+
			"health: {cmd: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"], interval: 500ms, retries: 30}\n", p, p, p, p)),
		"web.yaml":    container("web", "app", "env: {MODE: web}\nenv_file: [common.env, web.env]\n"),
		"common.env":  "# shared\nFROM=common\nLEVEL=info\n",
		"web.env":     "export LEVEL=\"debug two\"\nMODE=file # env wins\n",
		"worker.yaml": container("worker", "app", fmt.Sprintf("networks: [%s_back]\nafter: [container:%s-db]\n", p, p)),
	}
	env.Commit(manifests, "the project")

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("source:\n  url: http://%s/env.git\n  interval: 1s\nhost: {name: shop-1}\nstate_dir: %s\n",
		srv.Addr, filepath.Join(dir, "state")), 0o600)
	common := []string{"--config", cfgPath, "--root", filepath.Join(dir, "root")}
	out := emitted{}
	out.outpost(t, "apply", 0, append([]string{"apply", "-v"}, common...)...)

	// The worker started after the database passed its healthcheck.
	var dbState struct {
		StartedAt time.Time
		Health    struct {
			Log []struct {
				Start    time.Time
				ExitCode int
			}
		}
	}
	mustJSON(t, docker(t, "inspect", "--format", "{{json .State}}", p+"-db"), &dbState)
	healthy := time.Time{}
	for _, l := range dbState.Health.Log {
		if l.ExitCode == 0 {
			healthy = l.Start
			break
		}
	}
	workerStart, err := time.Parse(time.RFC3339Nano, docker(t, "inspect", "--format", "{{.State.StartedAt}}", p+"-worker"))
	if err != nil {
		t.Fatal(err)
	}
	if healthy.IsZero() || !workerStart.After(healthy) {
		t.Errorf("the worker started at %v, the database's first passing healthcheck began at %v: want the worker after it", workerStart, healthy)
	}

	// env_file: the files of the repository in order, env over them.
	envs := docker(t, "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", p+"-web")
	for _, want := range []string{"FROM=common", "LEVEL=debug two", "MODE=web"} {
		if !slices.Contains(strings.Split(envs, "\n"), want) {
			t.Errorf("web's environment =\n%s\nwant %s", envs, want)
		}
	}

	// docker ps sees a Compose project, through the filters that
	// docker compose (v2) -p NAME ps and logs list a project's
	// containers by.
	ps := docker(t, "ps", "--filter", "label=com.docker.compose.project="+p, "--filter", "label=com.docker.compose.config-hash",
		"--filter", "label=com.docker.compose.oneoff=False", "--format", `{{.Names}} {{.Label "com.docker.compose.service"}}`)
	got := strings.Split(ps, "\n")
	slices.Sort(got)
	if want := []string{p + "-db db", p + "-web web", p + "-worker worker"}; !slices.Equal(got, want) {
		t.Errorf("docker ps --filter label=com.docker.compose.project=%s:\n%s\nwant %q", p, ps, want)
	}
	// The services find each other by name, as the engine's DNS answers
	// on each network: on the default network web and db, on the
	// project's internal one the worker and db, also under its alias.
	addr := func(service, network string) string {
		return docker(t, "inspect", "--format", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, network), p+"-"+service)
	}
	for _, c := range []struct{ from, name, to, network string }{
		{"web", "db", "db", p + "_default"},
		{"db", "web", "web", p + "_default"},
		{"worker", "db", "db", p + "_back"},
		{"worker", "database", "db", p + "_back"},
	} {
		if got, want := resolve(t, p+"-"+c.from, c.name), addr(c.to, c.network); got != want {
			t.Errorf("in %s, %s resolves to %q, want %s's address on %s, %s", c.from, c.name, got, c.to, c.network, want)
		}
	}
	if got := resolve(t, p+"-worker", "web"); got != "" {
		t.Errorf("in worker, web resolves to %s; web is on no network of the worker's", got)
	}
	if got := docker(t, "network", "inspect", "--format", `{{.Internal}} {{range .IPAM.Config}}{{.Subnet}}{{end}} {{index .Labels "com.docker.compose.project"}}`, p+"_back"); got != "true "+subnet+" "+p {
		t.Errorf("network %s_back = %q, want internal, subnet %s, project %s", p, got, subnet, p)
	}
	if got := docker(t, "volume", "inspect", "--format", `{{index .Labels "com.docker.compose.project"}} {{index .Labels "com.docker.compose.volume"}}`, p+"_data"); got != p+" data" {
		t.Errorf("volume %s_data labels = %q, want project %s, volume data", p, got, p)
	}
	ids := func() map[string]string {
		m := map[string]string{}
		for _, n := range names {
			m[n] = docker(t, "inspect", "--format", "{{.Id}}", n)
		}
		return m
	}
	before := ids()

	// Nothing to do.
	if got := out.outpost(t, "apply (no-op)", 0, append([]string{"apply", "--json"}, common...)...); !strings.Contains(got, `"changes": []`) {
		t.Errorf("a second apply =\n%s\nwant no changes", got)
	}
	if after := ids(); !maps.Equal(before, after) {
		t.Errorf("containers after a no-op: %v, want %v", after, before)
	}

	// One field of one service at a time: that container only. The
	// worker is not replaced when the database it comes after is.
	for _, c := range []struct{ service, file, manifest string }{
		{"web", "web.yaml", container("web", "app", "env: {MODE: web2}\nenv_file: [common.env, web.env]\n")},
		{"db", "db.yaml", manifests["db.yaml"] + "labels: {tier: data}\n"},
		{"worker", "worker.yaml", manifests["worker.yaml"] + "restart: unless-stopped\n"},
	} {
		env.Commit(gitserver.Files{c.file: c.manifest}, c.service+" changed")
		out.outpost(t, "apply ("+c.service+" changed)", 0, append([]string{"apply"}, common...)...)
		now := ids()
		for _, n := range names {
			if changed := now[n] != before[n]; changed != (n == p+"-"+c.service) {
				t.Errorf("%s replaced = %v after only %s changed", n, changed, c.service)
			}
		}
		before = now
	}
	after := before

	// A line of an env file that Compose would fill from its environment:
	// the container fails with the file and line and keeps running.
	env.Commit(gitserver.Files{"web.env": "MODE=file\nexport LEVEL=debug\nHOME\n"}, "a bare variable")
	msg := out.outpost(t, "apply (bad env file)", -1, append([]string{"apply"}, common...)...) + out["apply (bad env file) stderr"]
	if !strings.Contains(msg, "env_file web.env: line 3: HOME has no value") {
		t.Errorf("apply with a bare variable in web.env said:\n%s\nwant the file and the line", msg)
	}
	if got := docker(t, "inspect", "--format", "{{.Id}}", p+"-web"); got != after[p+"-web"] {
		t.Errorf("web was replaced (%s) when its env file could not be read", got)
	}
	env.Commit(gitserver.Files{"web.env": manifests["web.env"]}, "web.env as it was")

	// The network's manifest changes: the engine cannot change a network,
	// so it is recreated, and the containers on it are connected again
	// with their aliases.
	env.Commit(gitserver.Files{"network.yaml": strings.Replace(manifests["network.yaml"], "internal: true", "internal: false", 1)}, "back not internal")
	out.outpost(t, "apply (network)", 0, append([]string{"apply", "-v"}, common...)...)
	if got := docker(t, "network", "inspect", "--format", `{{.Internal}} {{len .Containers}}`, p+"_back"); got != "false 2" {
		t.Errorf("network %s_back after its manifest changed = %q, want not internal, with db and worker on it", p, got)
	}
	if got, want := resolve(t, p+"-worker", "database"), addr("db", p+"_back"); got != want || got == "" {
		t.Errorf("in worker, after the network was recreated, database resolves to %q, want %q", got, want)
	}
	// A volume's options change: a volume is never recreated; the pass
	// says so and changes nothing else.
	env.Commit(gitserver.Files{"volumes.yaml": manifests["volumes.yaml"] + "options: {type: tmpfs, device: tmpfs}\n"}, "cache on tmpfs")
	msg = out.outpost(t, "apply (volume options)", -1, append([]string{"apply"}, common...)...) + out[`apply (volume options) stderr`]
	if !strings.Contains(msg, "volume "+p+"_cache") || !strings.Contains(msg, "never recreated") {
		t.Errorf("apply after a volume's options changed said:\n%s\nwant the volume named and why it stays", msg)
	}
	if got := docker(t, "volume", "inspect", "--format", "{{len .Options}}", p+"_cache"); got != "0" {
		t.Errorf("volume %s_cache options = %s after a refused change, want none", p, got)
	}
	env.Commit(gitserver.Files{"volumes.yaml": manifests["volumes.yaml"]}, "cache as it was")
	before = ids()

	// The daemon repairs a container removed by hand.
	sock := filepath.Join(dir, "outpost.sock")
	ctx, cancel := context.WithCancel(context.Background())
	var dout, derr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"run", "-v", "--socket", sock}, common...), &dout, &derr)
	}()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	head := env.Commit(gitserver.Files{"motd.yaml": "kind: file\npath: /etc/motd\ncontent: shop\n"}, "motd")
	waitDaemonNote(t, sock, cfgPath, head, env.Path, &derr)
	docker(t, "rm", "-f", p+"-worker")
	deadline := time.Now().Add(90 * time.Second)
	for exec.Command("docker", "inspect", p+"-worker").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not bring back %s-worker, removed by hand\nlogs:\n%s", p, derr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()

	// The worker, the network and the volumes leave, and the database
	// mounts neither volume any more: the volume that says prune: true is
	// removed, the other stays.
	env.CommitWith(gitserver.CommitOptions{Message: "retire the worker", Remove: []string{"worker.yaml", "network.yaml", "volumes.yaml"},
		Files: gitserver.Files{"db.yaml": container("db", "db", "")}})
	out.outpost(t, "apply (prune)", 0, append([]string{"apply", "-v"}, common...)...)
	for _, gone := range [][]string{{"inspect", p + "-worker"}, {"network", "inspect", p + "_back"}, {"volume", "inspect", p + "_data"}} {
		if exec.Command("docker", gone...).Run() == nil {
			t.Errorf("docker %s: still there after it left the repository", strings.Join(gone, " "))
		}
	}
	if exec.Command("docker", "volume", "inspect", p+"_cache").Run() != nil {
		t.Errorf("volume %s_cache was removed; without prune: true a volume stays", p)
	}
}

// resolve looks name up in container c with busybox's nslookup, which asks
// the engine's DNS server, and returns the address, or "" when there is
// none.
func resolve(t *testing.T, c, name string) string {
	t.Helper()
	out, _ := exec.Command("docker", "exec", c, "/bin/busybox", "nslookup", name).CombinedOutput()
	addr := ""
	if _, answer, ok := strings.Cut(string(out), "Name:"); ok {
		for _, l := range strings.Split(answer, "\n") {
			if a, ok := strings.CutPrefix(strings.TrimSpace(l), "Address:"); ok && addr == "" {
				addr = strings.TrimSpace(a)
			}
		}
	}
	return addr
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
}
