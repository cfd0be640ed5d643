package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// engineTestLabel marks what a test makes by hand on the engine.
const engineTestLabel = "io.outpost.test"

// engineFixture is a registry holding web:1 and a client of the real
// Docker engine; everything named with prefix is removed when the test
// ends.
type engineFixture struct {
	cli    *client.Client
	ref    string // web:1, pulled
	repo   string // web, for manifests
	prefix string
}

func newEngineFixture(t *testing.T) *engineFixture {
	t.Helper()
	reg := registry.Start(t)
	reg.Push(t, "web", registry.Image(t, registry.Config{
		Entrypoint: []string{"/bin/sleep", "600"},
		StopSignal: "SIGKILL",
	}), "1")
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	f := &engineFixture{cli: cli, ref: reg.Ref("web", "1"), repo: reg.Repo("web"), prefix: "outpost-test-policy-" + hex.EncodeToString(b) + "-"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", f.prefix))})
		for _, c := range list {
			cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
		vols, _ := cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", f.prefix))})
		for _, v := range vols.Volumes {
			cli.VolumeRemove(ctx, v.Name, true)
		}
		nets, _ := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", f.prefix))})
		for _, n := range nets {
			cli.NetworkRemove(ctx, n.ID)
		}
		cli.ImageRemove(ctx, f.ref, image.RemoveOptions{Force: true})
		cli.Close()
	})
	rc, err := cli.ImagePull(testCtx(t), f.ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull %s: %v; the Docker engine must run", f.ref, err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	return f
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// exists reports whether the engine has a container called name.
func (f *engineFixture) exists(t *testing.T, name string) bool {
	t.Helper()
	list, err := f.cli.ContainerList(testCtx(t), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", "^/"+name+"$"))})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	return len(list) > 0
}

// TestApplyRefusesHostileContainersOnTheEngine applies, with the default
// configuration and the real Docker driver, each container that reached
// the host before: the commit is refused as a whole with the resource's
// position, nothing is written, and the engine holds no such container.
// An ordinary container (a bind of a plain directory, a named volume, a
// network of its own) is still created.
func TestApplyRefusesHostileContainersOnTheEngine(t *testing.T) {
	t.Parallel()
	f := newEngineFixture(t)
	ctx := testCtx(t)

	// A container on the host's network, made by hand, for another to
	// join with network_mode: container:NAME.
	hostNet := f.prefix + "hostnet"
	if _, err := f.cli.ContainerCreate(ctx, &container.Config{Image: f.ref, Labels: map[string]string{engineTestLabel: "1"}},
		&container.HostConfig{NetworkMode: "host"}, nil, nil, hostNet); err != nil {
		t.Fatalf("create %s: %v", hostNet, err)
	}
	var containerd string
	for _, p := range []string{"/run/containerd/containerd.sock", "/run/docker/containerd/containerd.sock"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			containerd = p
			break
		}
	}
	if containerd == "" {
		t.Fatal("no containerd socket at /run/containerd or /run/docker/containerd; the Docker engine must run")
	}

	for _, tc := range []struct {
		name, extra, want string
	}{
		{"networks-host", "networks: [host]\n", "networks: host (the host's network) is not allowed on this host (set containers.allow_privileged"},
		{"unconfined", "security_opt: [no-new-privileges, seccomp=unconfined]\n", "security_opt: seccomp=unconfined is not allowed on this host (set containers.allow_privileged"},
		{"networks-host-second", "networks: [" + f.prefix + "net, host]\n", "networks: host (the host's network)"},
		{"container-network", "network_mode: \"container:" + hostNet + "\"\n", "network_mode: container:" + hostNet},
		{"socket-via-proc", "volumes: [\"/proc/self/root/run/docker.sock:/s\"]\n", "a bind mount of /proc/self/root/run/docker.sock (the Docker socket) is not allowed on this host (set containers.allow_docker_socket"},
		{"root-via-proc", "volumes: [\"/proc/self/root:/host:ro\"]\n", "the host's root directory, is not allowed on this host (set containers.allow_privileged"},
		{"containerd-socket", "volumes: [\"" + containerd + ":/c\"]\n", "a bind mount of " + containerd + ", a unix socket, is not allowed on this host (set containers.allow_sockets"},
		{"run-directory", "volumes: [\"/var/run:/r\"]\n", "which holds the Docker socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := f.prefix + tc.name
			repo := t.TempDir()
			writeTree(t, repo, map[string]string{"m.yaml": "kind: container\nname: " + name + "\nimage: " + f.repo + "\ntag: \"1\"\n" + tc.extra})
			cfg := sandbox(t, repo)
			rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
			if err != nil {
				t.Fatalf("Apply() error = %v, want an invalid report", err)
			}
			if rep.Valid {
				t.Errorf("Apply() report valid with changes %+v, want the commit refused", rep.Changes)
			}
			var msgs []string
			for _, p := range rep.Errors {
				if p.File != filepath.Join(repo, "m.yaml") || p.Line != 1 || p.Col != 1 {
					t.Errorf("error %q at %s:%d:%d, want %s:1:1", p.Message, p.File, p.Line, p.Col, filepath.Join(repo, "m.yaml"))
				}
				msgs = append(msgs, p.Message)
			}
			if all := strings.Join(msgs, "\n"); !strings.Contains(all, tc.want) {
				t.Errorf("Apply() errors =\n%s\nwant one holding %q", all, tc.want)
			}
			untouched(t, cfg)
			if f.exists(t, name) {
				t.Errorf("the engine has container %s after a refused commit", name)
			}
		})
	}

	// The host network named by its ID passes the policy, which decides
	// on names, and the driver refuses it before it creates anything.
	t.Run("network-by-id", func(t *testing.T) {
		hn, err := f.cli.NetworkInspect(ctx, "host", network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		name := f.prefix + "netid"
		repo := t.TempDir()
		writeTree(t, repo, map[string]string{"m.yaml": "kind: container\nname: " + name + "\nimage: " + f.repo + "\ntag: \"1\"\nnetworks: [\"" + hn.ID[:12] + "\"]\n"})
		rep, err := Apply(ctx, sandbox(t, repo), nil, ApplyOptions{})
		if err != nil {
			t.Fatalf("Apply() error = %v", err)
		}
		if rep.Summary.Failed != 1 || len(rep.Changes) != 1 || !strings.Contains(rep.Changes[0].Error, docker.ErrNetworkByID.Error()) {
			t.Errorf("Apply() = %+v, want the container failed with %q", rep, docker.ErrNetworkByID)
		}
		if f.exists(t, name) {
			t.Errorf("the engine has container %s, on the host network by its ID", name)
		}
	})

	t.Run("ordinary", func(t *testing.T) {
		name := f.prefix + "ordinary"
		data := t.TempDir()
		repo := t.TempDir()
		writeTree(t, repo, map[string]string{"m.yaml": "kind: container\nname: " + name + "\nimage: " + f.repo + "\ntag: \"1\"\n" +
			"volumes: [\"" + data + ":/data:ro\", \"" + name + "-cache:/cache\"]\nnetworks: [" + f.prefix + "net]\n"})
		rep, err := Apply(ctx, sandbox(t, repo), nil, ApplyOptions{})
		if err != nil || !rep.Valid || rep.Summary.Create != 1 || rep.Summary.Failed != 0 {
			t.Fatalf("Apply() = %+v, %v; want the container created", rep, err)
		}
		in, err := f.cli.ContainerInspect(ctx, name)
		if err != nil {
			t.Fatalf("inspect %s: %v", name, err)
		}
		if got := string(in.HostConfig.NetworkMode); got != f.prefix+"net" {
			t.Errorf("network mode = %s, want %snet", got, f.prefix)
		}
		if !slices.Contains(in.HostConfig.Binds, data+":/data:ro") {
			t.Errorf("binds = %v, want %s:/data:ro among them", in.HostConfig.Binds, data)
		}
	})
}

// TestDaemonRefusesHostileContainer has the daemon reconcile a revision
// that changes a file and adds a container on the host's network with the
// host's root bound: the revision is invalid, the file keeps the last good
// content, and the engine holds no such container.
func TestDaemonRefusesHostileContainer(t *testing.T) {
	t.Parallel()
	f := newEngineFixture(t)
	root := t.TempDir()
	src := &historySource{}
	src.push("r1", fileManifest("/etc/app.conf", "one\n"))
	socket := startDaemon(t, src, &Config{Root: root})
	waitFor(t, "the first revision", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.LastGood == "r1"
	})
	name := f.prefix + "daemon"
	hostile := fileManifest("/etc/app.conf", "two\n")
	hostile["c.yaml"] = &fstest.MapFile{Data: []byte("kind: container\nname: " + name + "\nimage: " + f.repo + "\ntag: \"1\"\n" +
		"networks: [host]\nvolumes: [\"/proc/self/root:/host\"]\n")}
	src.push("hostile", hostile)
	reconcileInvalid(t, socket, "hostile", filepath.Join(root, "etc/app.conf"), "one\n")
	if f.exists(t, name) {
		t.Errorf("the engine has container %s after the daemon refused its revision", name)
	}
}

// TestDaemonChecksBindsAgainBeforeRecreating runs a container whose bind
// was a plain directory when its revision was checked; then a process on
// the host replaces the directory by a link to one holding a socket, and
// the container is removed by hand. The daemon's next pass checks the bind
// again, as it now resolves, and does not make the container again.
func TestDaemonChecksBindsAgainBeforeRecreating(t *testing.T) {
	t.Parallel()
	f := newEngineFixture(t)
	dir := t.TempDir()
	data, sockets := filepath.Join(dir, "data"), filepath.Join(dir, "sockets")
	for _, d := range []string{data, sockets} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("unix", filepath.Join(sockets, "daemon.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })

	name := f.prefix + "recheck"
	src := &historySource{}
	src.push("r1", fstest.MapFS{"c.yaml": {Data: []byte("kind: container\nname: " + name + "\nimage: " + f.repo + "\ntag: \"1\"\n" +
		"volumes: [\"" + data + ":/data\"]\n")}})
	socket := startDaemon(t, src, &Config{Root: t.TempDir()})
	waitFor(t, "the container of r1", func() bool {
		s, err := Control(context.Background(), socket, "status")
		return err == nil && s.LastGood == "r1" && f.exists(t, name)
	})

	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sockets, data); err != nil {
		t.Fatal(err)
	}
	if err := f.cli.ContainerRemove(testCtx(t), name, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Control(context.Background(), socket, "reconcile"); err != nil {
		t.Fatal(err)
	}
	if f.exists(t, name) {
		in, _ := f.cli.ContainerInspect(testCtx(t), name)
		t.Errorf("the daemon made %s again with binds %v, now a directory holding a socket", name, in.HostConfig.Binds)
	}
}
