package agent

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// policyHost lays out a host in a temporary directory: an engine socket,
// containerd's sockets where the engine and containerd keep them, /var/run
// as a link to /run, the agent's configuration and state, and ordinary
// data. Every socket is a real one.
func policyHost(t *testing.T) string {
	t.Helper()
	h := t.TempDir()
	for _, d := range []string{"run/containerd", "run/docker/containerd", "srv/web", "etc/outpost", "state", "var"} {
		if err := os.MkdirAll(filepath.Join(h, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"run/docker.sock", "run/containerd/containerd.sock", "run/docker/containerd/containerd.sock"} {
		l, err := net.Listen("unix", filepath.Join(h, s))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	}
	for link, target := range map[string]string{"var/run": "../run", "srv/link": "../run", "srv/dangling": "missing"} {
		if err := os.Symlink(target, filepath.Join(h, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(h, "run/docker.sock"), filepath.Join(h, "srv/hard.sock")); err != nil {
		t.Fatal(err)
	}
	writeTree(t, h, map[string]string{"srv/web/index.html": "ok", "etc/outpost/agent.yaml": "{}\n"})
	return h
}

// renderOne renders a repository of the one manifest m for host h1.
func renderOne(t testing.TB, m string) *spec.State {
	t.Helper()
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{"m.yaml": m})
	snap, err := dirSnapshot(repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := spec.Load(snap.FS, spec.Options{})
	if err != nil {
		t.Fatalf("Load(%q) = %v", m, err)
	}
	st, err := r.Render(spec.Host{Name: "h1"})
	if err != nil {
		t.Fatalf("Render(%q) = %v", m, err)
	}
	return st
}

// TestContainerPolicy checks the policy on rendered desired states, against
// a host laid out with real links and sockets: each way that a commit
// reached the host before (a host network spelled as networks, another
// container's network, the engine's socket through /proc/self/root or a
// link, the host's root through /proc/self/root, containerd's sockets) is
// refused, the option that lifts it lifts only it, and ordinary containers
// pass.
func TestContainerPolicy(t *testing.T) {
	t.Parallel()
	h := policyHost(t)
	const head = "kind: container\nname: web\nimage: busybox\ntag: \"1\"\n"
	vol := func(v string) string { return head + "volumes: [\"" + strings.ReplaceAll(v, "H", h) + "\"]\n" }
	hv := func(m string) string { return strings.ReplaceAll(m, "H", h) }
	for _, tc := range []struct {
		name     string
		manifest string
		allow    ContainersConfig
		want     []string // one substring per error, in any order
	}{
		{"networks host", head + "networks: [host]\n", ContainersConfig{}, []string{"networks: host (the host's network) is not allowed on this host (set containers.allow_privileged: true"}},
		{"networks host second", head + "networks: [front, host]\n", ContainersConfig{}, []string{"networks: host (the host's network)"}},
		{"network_mode host", head + "network_mode: host\n", ContainersConfig{}, []string{"network_mode: host is not allowed"}},
		{"network_mode container", head + "network_mode: \"container:db\"\n", ContainersConfig{}, []string{"network_mode: container:db (it shares that container's network, which may be the host's) is not allowed on this host (set containers.allow_privileged"}},
		{"engine socket through /proc/self/root", vol("/proc/self/rootH/run/docker.sock:/s"), ContainersConfig{}, []string{
			"a bind mount of /proc/self/rootH/run/docker.sock (the Docker socket) is not allowed on this host (set containers.allow_docker_socket: true",
			"(resolves to H/run/docker.sock), the host's kernel interface, is not allowed on this host (set containers.allow_privileged",
		}},
		{"host root through /proc/self/root", head + "volumes: [\"/proc/self/root:/host:ro\"]\n", ContainersConfig{}, []string{
			"a bind mount of /proc/self/root (resolves to /), the host's root directory, is not allowed on this host (set containers.allow_privileged",
			"which holds the Docker socket",
			"which reaches the agent's own",
		}},
		{"containerd socket", vol("H/run/containerd/containerd.sock:/c"), ContainersConfig{}, []string{"a bind mount of H/run/containerd/containerd.sock, a unix socket, is not allowed on this host (set containers.allow_sockets: true"}},
		{"engine's containerd socket", vol("H/run/docker/containerd/containerd.sock:/c"), ContainersConfig{}, []string{"H/run/docker/containerd/containerd.sock, a unix socket"}},
		{"engine socket through a link", vol("H/srv/link/docker.sock:/s"), ContainersConfig{}, []string{"a bind mount of H/srv/link/docker.sock (the Docker socket)"}},
		{"engine socket hard link", vol("H/srv/hard.sock:/s"), ContainersConfig{}, []string{"a bind mount of H/srv/hard.sock (the Docker socket)"}},
		{"directory holding the sockets", vol("H/var/run:/r"), ContainersConfig{}, []string{
			"a bind mount of H/var/run (resolves to H/run), which holds the Docker socket H/run/docker.sock, is not allowed on this host (set containers.allow_docker_socket",
			"which holds the unix socket H/run/containerd/containerd.sock and 1 more, is not allowed on this host (set containers.allow_sockets",
		}},
		{"sockets allowed, engine not", vol("H/var/run:/r"), ContainersConfig{AllowSockets: true}, []string{"which holds the Docker socket"}},
		{"engine allowed, other sockets not", vol("H/var/run:/r"), ContainersConfig{AllowDockerSocket: true}, []string{"which holds the unix socket"}},
		{"sysfs", head + "volumes: [\"/sys/fs/cgroup:/c:ro\"]\n", ContainersConfig{}, []string{"a bind mount of /sys/fs/cgroup, the host's kernel interface, is not allowed"}},
		{"agent's configuration", vol("H/etc:/e:ro"), ContainersConfig{AllowPrivileged: true, AllowDockerSocket: true, AllowSockets: true}, []string{
			"a bind mount of H/etc, which reaches the agent's own H/etc/outpost, is not allowed on this host (no setting",
		}},
		{"agent's state", vol("H/state/x:/x"), ContainersConfig{}, []string{"which reaches the agent's own H/state"}},
		{"log to a host socket", head + "log: {driver: syslog, options: {syslog-address: \"unixgram:///dev/log\"}}\n", ContainersConfig{}, []string{
			"log option syslog-address: unixgram:///dev/log (a unix socket of the host) is not allowed on this host (set containers.allow_sockets",
		}},
		{"outside allowed_binds", vol("H/etc/outpost-not:/x"), ContainersConfig{AllowedBinds: []string{h + "/srv"}}, []string{
			"a bind mount of H/etc/outpost-not outside containers.allowed_binds (H/srv) is not allowed on this host (no setting",
		}},
		{"allowed_binds through a link", vol("H/srv/link/new:/x"), ContainersConfig{AllowedBinds: []string{h + "/srv"}}, []string{
			"a bind mount of H/srv/link/new (resolves to H/run/new) outside containers.allowed_binds",
		}},
		{"dangling link", vol("H/srv/dangling:/x"), ContainersConfig{AllowPrivileged: true}, []string{"cannot be resolved to a plain path on this host"}},

		{"plain", head + "volumes: [\"" + h + "/srv/web:/data:ro\", \"cache:/cache\"]\nnetworks: [front, back]\n", ContainersConfig{}, nil},
		{"new directory", vol("H/srv/new/dir:/d"), ContainersConfig{}, nil},
		{"named volume called run", head + "volumes: [\"run:/run\"]\n", ContainersConfig{}, nil},
		{"bridge and none", head + "network_mode: none\n", ContainersConfig{}, nil},
		{"within allowed_binds", vol("H/srv/web:/d"), ContainersConfig{AllowedBinds: []string{h + "/srv"}}, nil},
		{"engine socket allowed", vol("H/var/run/docker.sock:/s"), ContainersConfig{AllowDockerSocket: true}, nil},
		{"containerd allowed", vol("H/run/containerd/containerd.sock:/c"), ContainersConfig{AllowSockets: true}, nil},
		{"log to the network", head + "log: {driver: syslog, options: {syslog-address: \"udp://192.0.2.1:514\"}}\n", ContainersConfig{}, nil},
		{"privileged allowed", head + "networks: [host]\ncap_add: [NET_ADMIN]\nvolumes: [\"/sys:/sys:ro\"]\n", ContainersConfig{AllowPrivileged: true}, nil},
		{"container network allowed", head + "network_mode: \"container:db\"\n", ContainersConfig{AllowPrivileged: true}, nil},
		{"volume bound to the host's root", "kind: volume\nname: v\noptions: {type: none, o: bind, device: /}\n", ContainersConfig{}, []string{
			"volume:v: a bind mount of /, the host's root directory, is not allowed on this host (set containers.allow_privileged",
			"which holds the Docker socket",
			"which reaches the agent's own",
		}},
		{"volume bound to the agent's state", hv("kind: volume\nname: v\noptions: {type: none, o: \"rbind,ro\", device: H/state}\n"), ContainersConfig{AllowPrivileged: true}, []string{"which reaches the agent's own H/state"}},
		{"volume bound outside allowed_binds", hv("kind: volume\nname: v\noptions: {o: bind, device: H/etc/x}\n"), ContainersConfig{AllowedBinds: []string{h + "/srv"}}, []string{"outside containers.allowed_binds"}},
		{"volume bound to a relative path", "kind: volume\nname: v\noptions: {o: bind, device: srv}\n", ContainersConfig{AllowPrivileged: true}, []string{"a bind of \"srv\", which is not an absolute path"}},
		{"volume of a disk", "kind: volume\nname: v\noptions: {type: ext4, device: /dev/sda1}\n", ContainersConfig{}, []string{"volume:v: options: a mount of type \"ext4\" from \"/dev/sda1\" is not allowed on this host (set containers.allow_privileged"}},
		{"volume of a share", "kind: volume\nname: v\noptions: {type: nfs, o: \"addr=192.0.2.1\", device: \":/export\"}\n", ContainersConfig{}, []string{"a mount of type \"nfs\""}},
		{"volume plugin", "kind: volume\nname: v\ndriver: rexray/ebs\n", ContainersConfig{}, []string{"driver: rexray/ebs (a volume plugin)"}},
		{"macvlan network", "kind: network\nname: lan\ndriver: macvlan\noptions: {parent: eth0}\n", ContainersConfig{}, []string{"network:lan: driver: macvlan (a network beyond the engine's own bridges"}},
		{"plain volume and network", "kind: volume\nname: v\n---\nkind: volume\nname: t\noptions: {type: tmpfs, device: tmpfs, o: size=64m}\n---\nkind: network\nname: n\ninternal: true\n", ContainersConfig{}, nil},
		{"volume bound within allowed_binds", hv("kind: volume\nname: v\noptions: {type: none, o: bind, device: H/srv/web}\n"), ContainersConfig{AllowedBinds: []string{h + "/srv"}}, nil},
		{"macvlan allowed", "kind: network\nname: lan\ndriver: macvlan\n", ContainersConfig{AllowPrivileged: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &containerPolicy{allow: tc.allow, engineSockets: []string{h + "/run/docker.sock"}, own: []string{h + "/etc/outpost", h + "/state"}}
			err := p.check(renderOne(t, tc.manifest))
			var es spec.Errors
			if err != nil && !errors.As(err, &es) {
				t.Fatalf("check() = %v, want spec.Errors", err)
			}
			var msgs []string
			for _, e := range es {
				if e.Pos.File != "m.yaml" || e.Pos.Line != 1 {
					t.Errorf("error %q at %s, want m.yaml:1:1", e.Msg, e.Pos)
				}
				msgs = append(msgs, e.Msg)
			}
			all := strings.Join(msgs, "\n")
			if len(es) != len(tc.want) {
				t.Errorf("check() = %d errors:\n%s\nwant %d", len(es), all, len(tc.want))
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "H", h)
				if !strings.Contains(all, w) {
					t.Errorf("check() errors =\n%s\nwant one holding %q", all, w)
				}
			}
		})
	}
}

// policyFields says, for each field of a container, how the policy treats
// it. A field added to the container kind fails TestPolicyCoversContainer
// until it is classified here, and checked if it reaches the host.
var policyFields = map[string]string{
	"Name": "inside", "Image": "inside", "Tag": "inside", "Digest": "inside", "Update": "inside",
	"Command": "inside", "Entrypoint": "inside", "Env": "inside", "Restart": "inside",
	"Labels": "inside (Outpost's prefix is refused by spec)", "User": "inside (the container's users)",
	"Workdir": "inside", "Health": "inside", "Memory": "inside", "CPUs": "inside",
	"StopTimeout": "inside", "StopSignal": "inside", "RemoveVolumes": "inside", "CapDrop": "inside",
	"Tmpfs":       "inside (memory mounted in the container)",
	"Ports":       "published on the host's addresses, as asked",
	"Volumes":     "checked: binds resolved",
	"NetworkMode": "checked", "Networks": "checked",
	"Devices": "checked", "CapAdd": "checked", "Privileged": "checked",
	"Log":      "checked: unix socket addresses",
	"Hostname": "inside", "ExtraHosts": "inside (the container's /etc/hosts)",
	"DNS": "inside (the container's resolv.conf)", "ReadOnly": "inside (tightens)", "Init": "inside",
	"TTY": "inside", "GroupAdd": "inside (the container's groups; binds are checked)",
	"PidsLimit": "inside (tightens)", "Cpuset": "inside (tightens)",
	"Sysctls":          "inside: the engine takes only namespaced parameters, and none with the host's network",
	"SecurityOpt":      "checked: no-new-privileges only",
	"SecretFiles":      "the agent's own files under secrets.run_dir, bound read-only (Volume.Secret)",
	"SecretsDigest":    "inside (a label)",
	"SecretEnv":        "inside (names of Env)",
	"SecretEnvDigests": "inside (the spec hash)",
	"ShmSize":          "inside (its /dev/shm, counted in its memory cgroup)",
	"Ulimits":          "inside (setrlimit of its processes; its cgroups bound what they use)",
	"Expose":           "inside (metadata: nothing is published on the host)",
	"Endpoints":        "inside (names and addresses on networks that Networks already names, which are checked)",
	"Project":          "inside (labels, and a network name and aliases in Networks and Endpoints, which are checked)",
	"EnvFileErr":       "inside (an error the resource fails with)",
}

func TestPolicyCoversContainer(t *testing.T) {
	t.Parallel()
	ty := reflect.TypeFor[docker.Container]()
	for i := range ty.NumField() {
		if _, ok := policyFields[ty.Field(i).Name]; !ok {
			t.Errorf("docker.Container.%s is not classified by the container policy: check it in containers.go if it reaches the host, and add it to policyFields", ty.Field(i).Name)
		}
	}
}

// BenchmarkContainerPolicy checks 20 containers with two binds each, a
// directory and a file, on a laid-out host: the policy's cost on every
// pass, no-op passes included.
func BenchmarkContainerPolicy(b *testing.B) {
	h := b.TempDir()
	writeTree(b, h, map[string]string{"srv/web/index.html": "ok", "etc/app.conf": "x"})
	var m strings.Builder
	for i := range 20 {
		if i > 0 {
			m.WriteString("---\n")
		}
		m.WriteString("kind: container\nname: web" + strconv.Itoa(i) + "\nimage: busybox\ntag: \"1\"\nvolumes: [\"" + h + "/srv/web:/data:ro\", \"" + h + "/etc/app.conf:/app.conf:ro\"]\n")
	}
	st := renderOne(b, m.String())
	p := &containerPolicy{engineSockets: defaultEngineSockets, own: []string{"/etc/outpost"}}
	for b.Loop() {
		if err := p.check(st); err != nil {
			b.Fatal(err)
		}
	}
}
