package docker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/go-connections/nat"
	"github.com/google/go-cmp/cmp"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// The comparison of a spec with an observed container, without an engine.

func baseSpec() *Container {
	return &Container{Name: "web", Image: "registry.example/web", Tag: "1"}
}

func baseImage() *image.InspectResponse {
	return &image.InspectResponse{ID: "sha256:img", Config: &dockerspec.DockerOCIImageConfig{}}
}

// observedFor is the container the engine makes from c on img.
func observedFor(c *Container, img *image.InspectResponse) container.InspectResponse {
	cfg, host, _ := createConfig(c, specHash(c), "")
	ic := img.Config
	if len(cfg.Entrypoint) == 0 {
		cfg.Entrypoint = ic.Entrypoint
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = ic.Cmd
		}
	}
	cfg.Env = append(append([]string(nil), ic.Env...), cfg.Env...)
	for k, v := range ic.Labels {
		if _, ok := cfg.Labels[k]; !ok {
			cfg.Labels[k] = v
		}
	}
	if host.LogConfig.Type == "" {
		host.LogConfig.Type = "json-file"
	}
	nets := map[string]*network.EndpointSettings{}
	for _, n := range Networks(c) {
		nets[n] = &network.EndpointSettings{}
	}
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			Name:       "/" + c.Name,
			Image:      img.ID,
			State:      &container.State{Running: true},
			HostConfig: host,
		},
		Config:          cfg,
		NetworkSettings: &container.NetworkSettings{Networks: nets},
	}
}

func TestDiff(t *testing.T) {
	img := baseImage()
	img.Config.Env = []string{"PATH=/bin", "FROM_IMAGE=1"}
	img.Config.Labels = map[string]string{"image.label": "x"}
	img.Config.Entrypoint = []string{"/bin/app"}
	img.Config.Cmd = []string{"serve"}

	tests := []struct {
		name  string
		spec  func(c *Container)
		mutal func(in *container.InspectResponse)
		want  []string
	}{
		{"same", nil, nil, nil},
		{"image adds env and labels", func(c *Container) {
			c.Env = map[string]string{"A": "1"}
			c.Labels = map[string]string{"b": "2"}
		}, nil, nil},
		{"env changed by hand prints no value", func(c *Container) { c.Env = map[string]string{"TOKEN": "secret"} },
			func(in *container.InspectResponse) {
				in.Config.Env = []string{"PATH=/bin", "FROM_IMAGE=1", "TOKEN=other"}
			},
			[]string{"env TOKEN changed (secret)"}},
		{"an env added by hand", nil,
			func(in *container.InspectResponse) { in.Config.Env = append(in.Config.Env, "EXTRA=1") },
			[]string{"env EXTRA removed"}},
		{"restart changed by hand", func(c *Container) { c.Restart = "unless-stopped" },
			func(in *container.InspectResponse) { in.HostConfig.RestartPolicy = container.RestartPolicy{Name: "no"} },
			[]string{"restart no -> unless-stopped"}},
		{"ports", func(c *Container) { c.Ports = []Port{{HostPort: 80, ContainerPort: 8080}} },
			func(in *container.InspectResponse) {
				in.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "0.0.0.0", HostPort: "81"}}}
			},
			[]string{"ports [:81:8080/tcp] -> [:80:8080/tcp]"}},
		{"0.0.0.0 is any address", func(c *Container) { c.Ports = []Port{{HostPort: 80, ContainerPort: 8080}} },
			func(in *container.InspectResponse) {
				in.HostConfig.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "0.0.0.0", HostPort: "80"}}}
			}, nil},
		{"caps in other spellings", func(c *Container) { c.CapAdd = []string{"net_admin", "SYS_TIME"} },
			func(in *container.InspectResponse) { in.HostConfig.CapAdd = []string{"CAP_SYS_TIME", "CAP_NET_ADMIN"} }, nil},
		{"entrypoint given drops the image's command", func(c *Container) { c.Entrypoint = []string{"/bin/other"} },
			func(in *container.InspectResponse) { in.Config.Cmd = []string{"serve"} },
			[]string{`command ["serve"] -> []`}},
		{"health fills the image's values", func(c *Container) { c.Health = &Health{Cmd: []string{"true"}} }, nil, nil},
		{"renamed and stopped", nil, func(in *container.InspectResponse) {
			in.Name = "/web-x"
			in.State.Running = false
		}, []string{"name web-x -> web", "state stopped -> running"}},
		{"paused", nil, func(in *container.InspectResponse) { in.State.Paused = true },
			[]string{"state paused -> running"}},
		{"another image ID", nil, func(in *container.InspectResponse) { in.Image = "sha256:other" },
			[]string{"image registry.example/web:1 (another image ID)"}},
		{"log options the engine adds", func(c *Container) {
			c.Log = &Log{Driver: "json-file", Options: map[string]string{"max-size": "1m"}}
		},
			func(in *container.InspectResponse) { in.HostConfig.LogConfig.Config["max-file"] = "3" }, nil},
		{"an env value in the command is masked", func(c *Container) {
			c.Env = map[string]string{"TOKEN": "s3cr3t-token"}
			c.Command = []string{"serve", "--token=s3cr3t-token"}
		},
			func(in *container.InspectResponse) {
				in.Config.Env = append(in.Config.Env, "TOKEN=s3cr3t-token")
				in.Config.Cmd = []string{"serve"}
			},
			[]string{`command ["serve"] -> ["serve" "--token=[redacted]"]`}},
		{"a label added by hand", nil, func(in *container.InspectResponse) { in.Config.Labels["x"] = "y" }, []string{`labels x "y" -> (unset)`}},
		{"devices default their container path", func(c *Container) { c.Devices = []string{"/dev/null"} },
			func(in *container.InspectResponse) {
				in.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/dev/null", CgroupPermissions: "rwm"}}
			}, nil},
		{"stop timeout", func(c *Container) { d := 1500 * time.Millisecond; c.StopTimeout = &d },
			func(in *container.InspectResponse) { in.Config.StopTimeout = nil },
			[]string{"stop_timeout default -> 2"}},
		{"cpus changed by hand", func(c *Container) { c.CPUs = 1.5 },
			func(in *container.InspectResponse) { in.HostConfig.NanoCPUs = 1e9 },
			[]string{"cpus 1 -> 1.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseSpec()
			if tt.spec != nil {
				tt.spec(c)
			}
			in := observedFor(c, img)
			if tt.mutal != nil {
				tt.mutal(&in)
			}
			var got []string
			for _, f := range diff(expected(c, img, "json-file"), observed(in)) {
				got = append(got, f.Text)
			}
			if !cmp.Equal(got, tt.want) {
				t.Errorf("diff = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSpecHash(t *testing.T) {
	a, b := baseSpec(), baseSpec()
	a.Ports = []Port{{ContainerPort: 1}, {ContainerPort: 2}}
	b.Ports = []Port{{ContainerPort: 2}, {ContainerPort: 1}}
	b.Update = &UpdatePolicy{Policy: "semver"}
	if specHash(a) != specHash(b) {
		t.Errorf("specHash differs by port order or update policy: %s, %s", specHash(a), specHash(b))
	}
	b.Env = map[string]string{"A": "1"}
	if specHash(a) == specHash(b) {
		t.Errorf("specHash(a) = specHash(b with env) = %s, want them to differ", specHash(a))
	}
}

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in   string
		want container.DeviceMapping
	}{
		{"/dev/null", container.DeviceMapping{PathOnHost: "/dev/null", PathInContainer: "/dev/null", CgroupPermissions: "rwm"}},
		{"/dev/null:/dev/x", container.DeviceMapping{PathOnHost: "/dev/null", PathInContainer: "/dev/x", CgroupPermissions: "rwm"}},
		{"/dev/null:r", container.DeviceMapping{PathOnHost: "/dev/null", PathInContainer: "/dev/null", CgroupPermissions: "r"}},
		{"/dev/null:/dev/x:rw", container.DeviceMapping{PathOnHost: "/dev/null", PathInContainer: "/dev/x", CgroupPermissions: "rw"}},
	}
	for _, tt := range tests {
		if got := parseDevice(tt.in); got != tt.want {
			t.Errorf("parseDevice(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// fakeEvents is an engine whose event stream fails on demand; only the
// calls Watch and New make are implemented.
type fakeEvents struct {
	api
	mu      sync.Mutex
	streams []chan error
	msgs    chan events.Message
}

func (f *fakeEvents) Info(context.Context) (system.Info, error) { return system.Info{}, nil }
func (f *fakeEvents) Close() error                              { return nil }

func (f *fakeEvents) Events(ctx context.Context, _ events.ListOptions) (<-chan events.Message, <-chan error) {
	errs := make(chan error, 1)
	f.mu.Lock()
	f.streams = append(f.streams, errs)
	f.mu.Unlock()
	return f.msgs, errs
}

func (f *fakeEvents) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams[len(f.streams)-1] <- errors.New("unexpected EOF")
}

func TestWatchReconnects(t *testing.T) {
	f := &fakeEvents{msgs: make(chan events.Message)}
	d, err := newDriver(context.Background(), f, Options{Logger: slog.New(slog.DiscardHandler), ReconnectMin: time.Millisecond, ReconnectMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a, b := web("a"), web("b")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan spec.ID, 16)
	done := make(chan error, 1)
	go func() { done <- d.Watch(ctx, []*spec.Resource{a, b}, func(id spec.ID) { got <- id }) }()

	next := func() spec.ID {
		select {
		case id := <-got:
			return id
		case <-time.After(time.Minute):
			t.Fatal("no notification")
			return spec.ID{}
		}
	}
	pair := func(stage string) {
		t.Helper()
		ids := []spec.ID{next(), next()}
		if want := []spec.ID{a.ID, b.ID}; !cmp.Equal(ids, want) {
			t.Errorf("notifications %s = %v, want %v", stage, ids, want)
		}
	}
	pair("at start")
	f.msgs <- events.Message{Action: events.ActionKill, Actor: events.Actor{Attributes: map[string]string{LabelResource: "b"}}}
	if id := next(); id != b.ID {
		t.Errorf("notification for b's kill = %v, want %v", id, b.ID)
	}
	f.msgs <- events.Message{Action: "exec_start", Actor: events.Actor{Attributes: map[string]string{LabelResource: "a"}}}
	f.msgs <- events.Message{Action: events.ActionDie, Actor: events.Actor{Attributes: map[string]string{LabelResource: "unknown"}}}
	f.drop()
	pair("after the stream dropped")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch = %v, want nil when its context is done", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.streams) != 2 {
		t.Errorf("streams opened = %d, want 2", len(f.streams))
	}
}
