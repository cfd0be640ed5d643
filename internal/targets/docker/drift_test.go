package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// watch runs d.Watch over rs until the test ends and returns the channel of
// its notifications, after the one it sends at start.
func watch(t *testing.T, d *Driver, rs ...*spec.Resource) <-chan spec.ID {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan spec.ID, 64)
	done := make(chan error, 1)
	go func() {
		done <- d.Watch(ctx, rs, func(id spec.ID) {
			select {
			case ch <- id:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch = %v, want nil once its context is done", err)
		}
	})
	for range rs {
		waitNotify(t, ch, rs[0].ID)
	}
	return ch
}

// waitNotify waits for a notification of id; a missing one fails the test
// after a minute, which only a broken event stream takes.
func waitNotify(t *testing.T, ch <-chan spec.ID, id spec.ID) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case got := <-ch:
			if got == id {
				return
			}
		case <-timeout:
			t.Fatalf("Watch did not notify %s", id)
		}
	}
}

func drain(ch <-chan spec.ID) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// recreateWithPorts replaces the container by hand with a copy of it that
// publishes other ports, as an operator would with docker run.
func recreateWithPorts(t *testing.T, cli *client.Client, name string) {
	t.Helper()
	ctx := testCtx(t)
	in := inspect(t, cli, name)
	if err := cli.ContainerRemove(ctx, in.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	host := in.HostConfig
	host.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}}
	resp, err := cli.ContainerCreate(ctx, in.Config, host, &network.NetworkingConfig{}, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestDrift(t *testing.T) {
	tests := []struct {
		name  string
		drift func(t *testing.T, cli *client.Client, name string)
		want  spec.Change
	}{
		{"stop", func(t *testing.T, cli *client.Client, name string) {
			if err := cli.ContainerStop(testCtx(t), name, container.StopOptions{}); err != nil {
				t.Fatal(err)
			}
		}, spec.Change{Action: spec.ActionUpdate, Fields: []string{"state stopped -> running"}}},
		{"kill", func(t *testing.T, cli *client.Client, name string) {
			if err := cli.ContainerKill(testCtx(t), name, "KILL"); err != nil {
				t.Fatal(err)
			}
		}, spec.Change{Action: spec.ActionUpdate, Fields: []string{"state stopped -> running"}}},
		{"pause", func(t *testing.T, cli *client.Client, name string) {
			if err := cli.ContainerPause(testCtx(t), name); err != nil {
				t.Fatal(err)
			}
		}, spec.Change{Action: spec.ActionUpdate, Fields: []string{"state paused -> running"}}},
		{"rm -f", func(t *testing.T, cli *client.Client, name string) {
			if err := cli.ContainerRemove(testCtx(t), name, container.RemoveOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
		}, spec.Change{Action: spec.ActionCreate}},
		{"rename", func(t *testing.T, cli *client.Client, name string) {
			if err := cli.ContainerRename(testCtx(t), name, name+"-renamed"); err != nil {
				t.Fatal(err)
			}
		}, spec.Change{Action: spec.ActionUpdate}},
		{"update --restart=no", func(t *testing.T, cli *client.Client, name string) {
			if _, err := cli.ContainerUpdate(testCtx(t), name, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "no"}}); err != nil {
				t.Fatal(err)
			}
		}, spec.Change{Action: spec.ActionUpdate, Fields: []string{"restart no -> unless-stopped"}}},
		{"recreated with other ports", func(t *testing.T, cli *client.Client, name string) {
			recreateWithPorts(t, cli, name)
		}, spec.Change{Action: spec.ActionUpdate}},
	}
	for _, tt := range tests {
		for _, mode := range []spec.DriftMode{spec.DriftRevert, spec.DriftWarn} {
			t.Run(tt.name+"/"+string(mode), func(t *testing.T) {
				if mode == spec.DriftWarn && tt.want.Action == spec.ActionCreate {
					// A removed container is missing, not drifted: it is
					// created again whatever the mode.
					mode = spec.DriftRevert
				}
				d := newDriverT(t, Options{})
				cli := rawClient(t)
				name := uniqueName(t, "drift")
				port := freePort(t)
				r := web(name)
				r.Drift = mode
				Of(r).Restart = "unless-stopped"
				Of(r).Ports = []Port{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 8080}}
				apply(t, d, r)
				events := watch(t, d, r)
				drain(events)

				tt.drift(t, cli, name)
				waitNotify(t, events, r.ID)

				ch, err := d.CheckApply(testCtx(t), r, true)
				if err != nil {
					t.Fatalf("CheckApply after %s = %v", tt.name, err)
				}
				if ch.Action != tt.want.Action || (tt.want.Fields != nil && (len(ch.Fields) == 0 || ch.Fields[0] != tt.want.Fields[0])) {
					t.Errorf("CheckApply after %s = %v, want %v", tt.name, ch, tt.want)
				}
				if mode == spec.DriftWarn {
					if last := ch.Fields[len(ch.Fields)-1]; !strings.Contains(last, "left alone") {
						t.Errorf("CheckApply with drift: warn = %v, want it to say the container was left alone", ch)
					}
					// Still drifted.
					again, err := d.CheckApply(testCtx(t), r, false)
					if err != nil || again.Action != spec.ActionUpdate {
						t.Errorf("CheckApply again = %v, %v; want the drift still reported", again, err)
					}
					return
				}
				noop(t, d, r)
				in := inspect(t, cli, name)
				if !in.State.Running || in.HostConfig.RestartPolicy.Name != "unless-stopped" {
					t.Errorf("container after the repair: running=%v restart=%s, want running, unless-stopped", in.State.Running, in.HostConfig.RestartPolicy.Name)
				}
				if got := get(t, port); got != "v1" {
					t.Errorf("GET after the repair = %q, want v1", got)
				}
			})
		}
	}
}

func TestDriftIgnore(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	name := uniqueName(t, "ignore")
	r := web(name)
	r.Drift = spec.DriftIgnore
	apply(t, d, r)
	if err := cli.ContainerStop(testCtx(t), name, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	noop(t, d, r)
	// A desired change still applies.
	Of(r).Tag = "2"
	if ch := apply(t, d, r); ch.Action != spec.ActionUpdate {
		t.Errorf("CheckApply(tag 2) with drift: ignore = %v, want update", ch)
	}
	if in := inspect(t, cli, name); !in.State.Running || in.Config.Image != reg.Ref("web", "2") {
		t.Errorf("container = running %v image %s, want running web:2", in.State.Running, in.Config.Image)
	}
}

// TestInterruptedUpdate leaves the old container aside and stopped, as an
// update cut short after its stop and rename would, and expects the next
// CheckApply to put it back.
func TestInterruptedUpdate(t *testing.T) {
	d := newDriverT(t, Options{})
	cli := rawClient(t)
	ctx := testCtx(t)
	name := uniqueName(t, "aside")
	r := web(name)
	apply(t, d, r)
	id := inspect(t, cli, name).ID
	if err := cli.ContainerStop(ctx, id, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerRename(ctx, id, name+asideSuffix); err != nil {
		t.Fatal(err)
	}
	want := spec.Change{Action: spec.ActionUpdate, Fields: []string{"name " + name + asideSuffix + " -> " + name, "state stopped -> running"}}
	if ch := apply(t, d, r); ch.String() != want.String() {
		t.Errorf("CheckApply = %v, want %v", ch, want)
	}
	if in := inspect(t, cli, name); in.ID != id || !in.State.Running {
		t.Errorf("container %s = %s running %v, want %s running", name, in.ID, in.State.Running, id)
	}
	noop(t, d, r)
}
