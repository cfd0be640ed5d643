package docker

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func get(t testing.TB, port uint16) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(int(port)) + "/index.html")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET :%d = %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCreateNoopUpdate(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	name := uniqueName(t, "life")
	port := freePort(t)
	r := web(name)
	Of(r).Ports = []Port{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 8080}}

	ch, err := d.CheckApply(testCtx(t), r, false)
	if err != nil || ch.Action != spec.ActionCreate {
		t.Fatalf("CheckApply(dry run) on an empty host = %v, %v; want create", ch, err)
	}
	if _, err := cli.ContainerInspect(testCtx(t), name); err == nil {
		t.Fatalf("a dry run created the container")
	}
	if ch := apply(t, d, r); ch.Action != spec.ActionCreate {
		t.Fatalf("CheckApply(apply) = %v, want create", ch)
	}
	first := inspect(t, cli, name)
	if got := get(t, port); got != "v1" {
		t.Errorf("GET = %q, want v1", got)
	}
	wantLabels := map[string]string{
		LabelManaged:       "true",
		LabelResource:      name,
		LabelSpecHash:      specHash(Of(r)),
		LabelImageDigest:   digests["web:1"],
		LabelRemoveVolumes: "false",
	}
	for k, v := range wantLabels {
		if got := first.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}

	noop(t, d, r)
	if ch := apply(t, d, r); ch.Action != spec.ActionNone {
		t.Errorf("CheckApply(apply) again = %v, want none", ch)
	}
	if got := inspect(t, cli, name).ID; got != first.ID {
		t.Errorf("container ID after a no-op = %s, want %s (not recreated)", got, first.ID)
	}

	Of(r).Tag = "2"
	ch, err = d.CheckApply(testCtx(t), r, false)
	want := spec.Change{Action: spec.ActionUpdate, Fields: []string{"image " + reg.Ref("web", "1") + " -> " + reg.Ref("web", "2")}}
	if err != nil || !cmp.Equal(ch, want) {
		t.Fatalf("CheckApply(dry run, tag 2) = %v, %v; want %v", ch, err, want)
	}
	if got := inspect(t, cli, name).ID; got != first.ID {
		t.Fatalf("a dry run replaced the container")
	}
	apply(t, d, r)
	if got := get(t, port); got != "v2" {
		t.Errorf("GET after the update = %q, want v2", got)
	}
	second := inspect(t, cli, name)
	if second.ID == first.ID {
		t.Errorf("the update kept the container %s", first.ID)
	}
	if _, err := cli.ContainerInspect(testCtx(t), first.ID); err == nil {
		t.Errorf("the old container %s is still there", first.ID)
	}
	noop(t, d, r)
}

// TestUpdateFieldGroups changes one group of settings at a time and expects
// the driver to name that group alone, recreate the container, and find
// nothing to do afterwards.
func TestUpdateFieldGroups(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	name := uniqueName(t, "fields")
	net1, net2 := uniqueName(t, "net"), uniqueName(t, "net")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("bound"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := web(name)
	apply(t, d, r)
	c := Of(r)
	stop := 3 * time.Second

	steps := []struct {
		name string
		mod  func()
		want string // the only field's prefix
	}{
		{"image", func() { c.Tag = "2" }, "image "},
		{"command", func() { c.Command = []string{"-p", "8080", "-v"} }, "command"},
		{"entrypoint", func() { c.Entrypoint = []string{"/bin/httpd", "-f", "-h", "/www"} }, "entrypoint"},
		{"env", func() { c.Env = map[string]string{"SECRET": "hunter2"} }, "env"},
		{"ports", func() {
			c.Ports = []Port{{HostIP: "127.0.0.1", HostPort: freePort(t), ContainerPort: 8080}, {ContainerPort: 9000, Protocol: "udp"}}
		}, "ports"},
		{"volumes", func() { c.Volumes = []Volume{{Source: dir, Target: "/data", ReadOnly: true}} }, "volumes"},
		{"named volume", func() {
			c.Volumes = append(c.Volumes, Volume{Source: uniqueName(t, "vol"), Target: "/state", Named: true})
		}, "volumes"},
		{"tmpfs", func() { c.Tmpfs = []string{"/scratch:size=1m"} }, "tmpfs"},
		{"restart", func() { c.Restart = "unless-stopped" }, "restart no -> unless-stopped"},
		{"restart retries", func() { c.Restart = "on-failure:3" }, "restart unless-stopped -> on-failure:3"},
		{"labels", func() { c.Labels = map[string]string{"team": "edge"} }, "labels"},
		{"user", func() { c.User = "1000:1000" }, `user "" -> "1000:1000"`},
		{"workdir", func() { c.Workdir = "/tmp" }, `workdir "" -> "/tmp"`},
		{"network", func() { c.Networks = []string{net1} }, "network_mode bridge -> " + net1},
		{"networks", func() { c.Networks = []string{net1, net2} }, "networks"},
		{"devices", func() { c.Devices = []string{"/dev/null:/dev/xnull"} }, "devices"},
		{"cap_add", func() { c.CapAdd = []string{"NET_ADMIN"} }, "cap_add"},
		{"cap_drop", func() { c.CapDrop = []string{"mknod"} }, "cap_drop"},
		{"privileged", func() { c.Privileged = true }, "privileged false -> true"},
		{"health", func() { c.Health = &Health{Cmd: []string{"true"}, Interval: 300 * time.Millisecond, Retries: 2} }, "health"},
		{"log", func() { c.Log = &Log{Driver: "json-file", Options: map[string]string{"max-size": "1m"}} }, "log options"},
		{"log driver", func() { c.Log = &Log{Driver: "none"} }, "log json-file -> none"},
		{"memory", func() { c.Memory = 64 << 20 }, "memory 0 -> 67108864"},
		{"cpus", func() { c.CPUs = 0.5 }, "cpus unlimited -> 0.5"},
		{"stop_timeout", func() { c.StopTimeout = &stop }, "stop_timeout default -> 3"},
		{"remove_volumes", func() { c.RemoveVolumes = true }, "remove_volumes false -> true"},
		{"hostname", func() { c.Hostname = "web-1" }, `hostname "" -> "web-1"`},
		{"extra_hosts", func() { c.ExtraHosts = []string{"db.internal:10.0.0.5", "gw:host-gateway"} }, "extra_hosts"},
		{"dns", func() { c.DNS = []string{"10.0.0.2", "10.0.0.3"} }, "dns"},
		{"read_only", func() { c.ReadOnly = true }, "read_only false -> true"},
		{"init", func() { c.Init = true }, "init false -> true"},
		{"tty", func() { c.TTY = true }, "tty false -> true"},
		{"security_opt", func() { c.SecurityOpt = []string{"no-new-privileges"} }, "security_opt"},
		{"group_add", func() { c.GroupAdd = []string{"100"} }, "group_add"},
		{"pids_limit", func() { c.PidsLimit = 64 }, "pids_limit 0 -> 64"},
		{"sysctls", func() { c.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"} }, "sysctls"},
		{"cpuset", func() { c.Cpuset = "0" }, `cpuset "" -> "0"`},
		{"shm_size", func() { c.ShmSize = 32 << 20 }, "shm_size 67108864 -> 33554432"},
		{"aliases", func() { c.Endpoints = map[string]Endpoint{net2: {Aliases: []string{"api", "web-alias"}}} }, "networks." + net2 + " (aliases"},
		{"expose", func() { c.Expose = []string{"3000/tcp", "5000/udp"} }, "expose"},
		{"ulimits", func() {
			c.Ulimits = []Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 512, Hard: 512}}
		}, "ulimits"},
		// Last: httpd ignores SIGINT, so that every later stop waits.
		{"stop_signal", func() { c.StopSignal = "SIGINT" }, "stop_signal SIGKILL -> SIGINT"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := inspect(t, cli, name).ID
			s.mod()
			ch, err := d.CheckApply(testCtx(t), r, false)
			if err != nil || ch.Action != spec.ActionUpdate || len(ch.Fields) != 1 || !strings.HasPrefix(ch.Fields[0], s.want) {
				t.Fatalf("CheckApply(dry run) = %v, %v; want update (%s...)", ch, err, s.want)
			}
			if strings.Contains(ch.String(), "hunter2") {
				t.Errorf("the change %q prints an env value", ch)
			}
			apply(t, d, r)
			noop(t, d, r)
			after := inspect(t, cli, name)
			if after.ID == before {
				t.Errorf("container ID = %s after the update, want a new one", after.ID)
			}
			if !after.State.Running {
				t.Errorf("container state = %s, want running", after.State.Status)
			}
		})
	}
	// The settings reached the engine as Docker's own names for them.
	in := inspect(t, cli, name)
	if got, want := in.HostConfig.Devices, []container.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/dev/xnull", CgroupPermissions: "rwm"}}; !cmp.Equal(got, want) {
		t.Errorf("devices = %v, want %v", got, want)
	}
	if _, ok := in.NetworkSettings.Networks[net2]; !ok {
		t.Errorf("networks = %v, want %s among them", in.NetworkSettings.Networks, net2)
	}
	if in.HostConfig.NanoCPUs != 5e8 || in.HostConfig.Memory != 64<<20 {
		t.Errorf("cpus, memory = %d, %d; want 5e8, 64MiB", in.HostConfig.NanoCPUs, in.HostConfig.Memory)
	}
	h := in.HostConfig
	if in.Config.Hostname != "web-1" || !in.Config.Tty || !h.ReadonlyRootfs || h.Init == nil || !*h.Init {
		t.Errorf("hostname, tty, read-only, init = %q, %v, %v, %v; want web-1 and all on", in.Config.Hostname, in.Config.Tty, h.ReadonlyRootfs, h.Init)
	}
	if want := []string{"db.internal:10.0.0.5", "gw:host-gateway"}; !cmp.Equal(h.ExtraHosts, want) {
		t.Errorf("extra hosts = %q, want %q", h.ExtraHosts, want)
	}
	if want := []string{"10.0.0.2", "10.0.0.3"}; !cmp.Equal(h.DNS, want) {
		t.Errorf("dns = %q, want %q", h.DNS, want)
	}
	if h.PidsLimit == nil || *h.PidsLimit != 64 || h.CpusetCpus != "0" || h.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "80" {
		t.Errorf("pids limit, cpuset, sysctls = %v, %q, %v; want 64, 0, the port start at 80", h.PidsLimit, h.CpusetCpus, h.Sysctls)
	}
	want := []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 512, Hard: 512}}
	if es := in.NetworkSettings.Networks[net2]; es == nil || !slices.Contains(es.Aliases, "api") || !slices.Contains(es.Aliases, "web-alias") {
		t.Errorf("endpoint on %s = %+v, want the aliases api and web-alias", net2, es)
	}
	if _, ok := in.Config.ExposedPorts["5000/udp"]; !ok {
		t.Errorf("exposed ports = %v, want 5000/udp among them", in.Config.ExposedPorts)
	}
	if h.ShmSize != 32<<20 || !cmp.Equal(h.Ulimits, want) {
		t.Errorf("shm size, ulimits = %d, %v; want 32MiB, %v", h.ShmSize, h.Ulimits, want)
	}
	// The engine adds label=disable to a privileged container's options.
	if !cmp.Equal(h.SecurityOpt, []string{"no-new-privileges", "label=disable"}) || !cmp.Equal(h.GroupAdd, []string{"100"}) {
		t.Errorf("security options, groups = %q, %q; want no-new-privileges and label=disable, 100", h.SecurityOpt, h.GroupAdd)
	}
}

func TestHostNetworkBindMountDevice(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	name := uniqueName(t, "host")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	r := web(name)
	c := Of(r)
	c.NetworkMode = "host"
	c.Command = []string{"-p", "127.0.0.1:" + strconv.Itoa(int(port))}
	c.Volumes = []Volume{{Source: dir, Target: "/www", ReadOnly: true}}
	c.Devices = []string{"/dev/null:/dev/outpost-null:rw"}
	apply(t, d, r)
	noop(t, d, r)

	in := inspect(t, cli, name)
	if in.HostConfig.NetworkMode != "host" {
		t.Errorf("network mode = %s, want host", in.HostConfig.NetworkMode)
	}
	// Served on the host's loopback from the bind mount.
	if got := get(t, port); got != "from the host" {
		t.Errorf("GET = %q, want the bind-mounted file", got)
	}
	want := []container.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/dev/outpost-null", CgroupPermissions: "rw"}}
	if !cmp.Equal(in.HostConfig.Devices, want) {
		t.Errorf("devices = %v, want %v", in.HostConfig.Devices, want)
	}
}

func TestDigestPin(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	name := uniqueName(t, "pin")
	r := web(name)
	Of(r).Digest = digests["web:2"] // tag 1 names another image
	apply(t, d, r)
	noop(t, d, r)
	in := inspect(t, cli, name)
	if want := reg.Repo("web") + "@" + digests["web:2"]; in.Config.Image != want {
		t.Errorf("image = %s, want %s", in.Config.Image, want)
	}
	if got := in.Config.Labels[LabelImageDigest]; got != digests["web:2"] {
		t.Errorf("image-digest label = %s, want %s", got, digests["web:2"])
	}
}

func TestPrune(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	ctx := testCtx(t)

	for _, removeVolumes := range []bool{false, true} {
		t.Run("remove_volumes="+strconv.FormatBool(removeVolumes), func(t *testing.T) {
			name := uniqueName(t, "prune")
			vol := uniqueName(t, "vol")
			owned := uniqueName(t, "net")
			foreign := uniqueName(t, "net")
			if _, err := cli.NetworkCreate(ctx, foreign, network.CreateOptions{Labels: map[string]string{testLabel: "1"}}); err != nil {
				t.Fatal(err)
			}
			r := web(name)
			Of(r).Volumes = []Volume{{Source: vol, Target: "/state", Named: true}}
			Of(r).Networks = []string{owned, foreign}
			Of(r).RemoveVolumes = removeVolumes
			apply(t, d, r)
			nw, err := cli.NetworkInspect(ctx, owned, network.InspectOptions{})
			if err != nil || nw.Labels[LabelManaged] != "true" {
				t.Fatalf("network %s = %v, %v; want created with Outpost's label", owned, nw.Labels, err)
			}

			ch, err := d.Remove(ctx, r.ID, false)
			if err != nil || ch.Action != spec.ActionDelete {
				t.Fatalf("Remove(dry run) = %v, %v; want delete", ch, err)
			}
			inspect(t, cli, name)
			ch, err = d.Remove(ctx, r.ID, true)
			if err != nil || ch.Action != spec.ActionDelete {
				t.Fatalf("Remove = %v, %v; want delete", ch, err)
			}
			if _, err := cli.ContainerInspect(ctx, name); err == nil {
				t.Errorf("container %s is still there", name)
			}
			_, err = cli.VolumeInspect(ctx, vol)
			if gotKept := err == nil; gotKept == removeVolumes {
				t.Errorf("volume %s kept = %v, want %v", vol, gotKept, !removeVolumes)
			}
			if _, err := cli.NetworkInspect(ctx, owned, network.InspectOptions{}); err == nil {
				t.Errorf("owned network %s is still there", owned)
			}
			if _, err := cli.NetworkInspect(ctx, foreign, network.InspectOptions{}); err != nil {
				t.Errorf("network %s that Outpost does not own: %v, want kept", foreign, err)
			}
			ch, err = d.Remove(ctx, r.ID, true)
			if err != nil || ch.Action != spec.ActionNone {
				t.Errorf("Remove again = %v, %v; want none", ch, err)
			}
		})
	}
}

// unowned starts a container named name without Outpost's label.
func unowned(t testing.TB, name string) string {
	t.Helper()
	cli := rawClient(t)
	ctx := testCtx(t)
	ref := reg.Ref("web", "1")
	pullRaw(t, cli, ref)
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: ref, Labels: map[string]string{testLabel: "1"}}, nil, nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return resp.ID
}

func TestUnownedConflict(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	ctx := testCtx(t)
	name := uniqueName(t, "conflict")
	id := unowned(t, name)
	r := web(name)
	Of(r).Tag = "2"

	for _, applyIt := range []bool{false, true} {
		_, err := d.CheckApply(ctx, r, applyIt)
		if !errors.Is(err, ErrConflict) {
			t.Errorf("CheckApply(apply=%v) = %v, want ErrConflict", applyIt, err)
		}
	}
	ch, err := d.Remove(ctx, r.ID, true)
	if err != nil || ch.Action != spec.ActionNone {
		t.Errorf("Remove = %v, %v; want none", ch, err)
	}
	if err := d.Restart(ctx, r); err == nil {
		t.Errorf("Restart of an unowned container = nil, want an error")
	}
	in := inspect(t, cli, name)
	if in.ID != id || !in.State.Running || in.Config.Image != reg.Ref("web", "1") || in.RestartCount != 0 {
		t.Errorf("the unowned container = %s running=%v image=%s, want %s left running as it was", in.ID, in.State.Running, in.Config.Image, id)
	}
}

func TestFailedUpdateRestoresOld(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *Container)
	}{
		{"exits at once", func(c *Container) { c.Image = reg.Repo("exit") }},
		{"image healthcheck fails", func(c *Container) { c.Image = reg.Repo("sick") }},
		{"spec healthcheck fails", func(c *Container) {
			c.Health = &Health{Cmd: []string{"CMD-SHELL", "exit 1"}, Interval: 200 * time.Millisecond, Retries: 1}
		}},
		{"exits with restart always", func(c *Container) { c.Image = reg.Repo("exit"); c.Restart = "always" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriverT(t, Options{})
			cli := rawClient(t)
			name := uniqueName(t, "fail")
			port := freePort(t)
			r := web(name)
			Of(r).Ports = []Port{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 8080}}
			apply(t, d, r)
			old := inspect(t, cli, name)

			tt.mod(Of(r))
			ch, err := d.CheckApply(testCtx(t), r, true)
			if !errors.Is(err, ErrUnhealthy) || ch.Action != spec.ActionUpdate {
				t.Fatalf("CheckApply(bad update) = %v, %v; want update and ErrUnhealthy", ch, err)
			}
			now := inspect(t, cli, name)
			if now.ID != old.ID || !now.State.Running {
				t.Errorf("container %s = %s running=%v, want the old %s running", name, now.ID, now.State.Running, old.ID)
			}
			if got := get(t, port); got != "v1" {
				t.Errorf("GET = %q, want v1 from the old container", got)
			}
			list, _ := cli.ContainerList(testCtx(t), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelResource+"="+name))})
			if len(list) != 1 {
				t.Errorf("containers of %s = %d, want 1 (the failed one removed)", name, len(list))
			}
		})
	}
}

func TestPullFailureLeavesContainer(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	name := uniqueName(t, "pull")
	r := web(name)
	apply(t, d, r)
	old := inspect(t, cli, name)

	Of(r).Tag = "no-such-tag"
	_, err := d.CheckApply(testCtx(t), r, true)
	if !errors.Is(err, ErrPull) {
		t.Fatalf("CheckApply(missing tag) = %v, want ErrPull", err)
	}
	now := inspect(t, cli, name)
	if now.ID != old.ID || !now.State.Running || now.State.StartedAt != old.State.StartedAt {
		t.Errorf("container = %s running=%v started %s; want %s untouched (started %s)", now.ID, now.State.Running, now.State.StartedAt, old.ID, old.State.StartedAt)
	}
}

func TestPullCredentials(t *testing.T) {
	front := reg.Front(t, registry.FrontOptions{Username: "outpost", Password: "s3cret"})
	pushImages(t)
	repo := front.Host() + "/web"

	helperDir := t.TempDir()
	helper := "#!/bin/sh\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"outpost\",\"Secret\":\"s3cret\"}' \"$server\"\n"
	if err := os.WriteFile(filepath.Join(helperDir, "docker-credential-outposttest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", helperDir+":"+os.Getenv("PATH"))

	tests := []struct {
		name, config string
		wantErr      error
	}{
		{"none", `{}`, ErrPull},
		{"auths", `{"auths":{"` + front.Host() + `":{"auth":"b3V0cG9zdDpzM2NyZXQ="}}}`, nil},
		{"wrong", `{"auths":{"` + front.Host() + `":{"auth":"b3V0cG9zdDp3cm9uZw=="}}}`, ErrPull},
		{"credential helper", `{"credHelpers":{"` + front.Host() + `":"outposttest"}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			d := newDriverT(t, Options{DockerConfigDir: dir})
			name := uniqueName(t, "auth")
			r := web(name)
			Of(r).Image = repo
			// A tag of its own, so that the engine has not pulled it yet.
			Of(r).Tag = "auth-" + strings.ReplaceAll(tt.name, " ", "-") + "-" + name[len(name)-8:]
			reg.Push(t, "web", registry.Image(t, registry.Config{Entrypoint: httpd, Cmd: []string{"-p", "8080"}}), Of(r).Tag)
			cli := rawClient(t)
			t.Cleanup(func() { removeImage(cli, repo+":"+Of(r).Tag) })
			_, err := d.CheckApply(testCtx(t), r, true)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckApply = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRestartAndHealthy(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	ctx := testCtx(t)
	name := uniqueName(t, "restart")
	r := web(name)
	Of(r).Health = &Health{Cmd: []string{"true"}, Interval: 200 * time.Millisecond}
	apply(t, d, r)
	var (
		ok  bool
		why string
		err error
	)
	for deadline := time.Now().Add(30 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ok, why, err = d.Healthy(ctx, r)
		if err != nil {
			t.Fatalf("Healthy = %v", err)
		}
	}
	if !ok {
		t.Errorf("Healthy = false, %q; want true once the healthcheck passes", why)
	}
	before := inspect(t, cli, name)
	if err := d.Restart(ctx, r); err != nil {
		t.Fatalf("Restart = %v", err)
	}
	after := inspect(t, cli, name)
	if after.ID != before.ID || after.State.StartedAt == before.State.StartedAt || !after.State.Running {
		t.Errorf("after Restart: id %s started %s running %v; want %s started later", after.ID, after.State.StartedAt, after.State.Running, before.ID)
	}
	if err := cli.ContainerStop(ctx, name, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	ok, why, err = d.Healthy(ctx, r)
	if err != nil || ok {
		t.Errorf("Healthy of a stopped container = %v, %q, %v; want false", ok, why, err)
	}
}

func TestNetworkModeContainer(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	a := web(uniqueName(t, "ns"))
	b := web(uniqueName(t, "ns"))
	Of(b).NetworkMode = "container:" + Of(a).Name
	Of(b).Command = []string{"-p", "8081"}
	apply(t, d, a)
	apply(t, d, b)
	noop(t, d, b)
	// a is replaced: b's network namespace went with the old a.
	Of(a).Tag = "2"
	apply(t, d, a)
	ch, err := d.CheckApply(testCtx(t), b, false)
	if err != nil || ch.Action != spec.ActionUpdate || !strings.HasPrefix(ch.Fields[0], "network_mode") {
		t.Errorf("CheckApply(b) after a was replaced = %v, %v; want update (network_mode ...)", ch, err)
	}
	apply(t, d, b)
	noop(t, d, b)
	if got, want := string(inspect(t, cli, Of(b).Name).HostConfig.NetworkMode), "container:"+inspect(t, cli, Of(a).Name).ID; got != want {
		t.Errorf("network mode of b = %s, want %s", got, want)
	}
}

// TestNetworkByIDRefused writes the host network's ID, and a prefix of it,
// where a network name goes: the engine would read either as the host
// network. The driver refuses both before it creates anything.
func TestNetworkByIDRefused(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	host, err := cli.NetworkInspect(testCtx(t), "host", network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect the host network: %v", err)
	}
	for _, tc := range []struct {
		name     string
		networks []string
	}{
		{"full ID first", []string{host.ID}},
		{"prefix first", []string{host.ID[:12]}},
		{"prefix second", []string{"bridge", host.ID[:8]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := uniqueName(t, "netid")
			r := web(name)
			Of(r).Networks = tc.networks
			_, err := d.CheckApply(testCtx(t), r, true)
			if !errors.Is(err, ErrNetworkByID) {
				t.Fatalf("CheckApply(networks: %v) = %v, want ErrNetworkByID", tc.networks, err)
			}
			if in, err := cli.ContainerInspect(testCtx(t), name); err == nil {
				t.Errorf("container %s exists with network mode %s, want none created", name, in.HostConfig.NetworkMode)
			}
		})
	}
}
