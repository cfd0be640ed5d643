// Package docker owns Outpost's container target: it converges Docker
// containers, and the networks they name, over the Docker Engine API.
//
// Every object it creates carries the label io.outpost.managed=true, and it
// never stops, changes or removes an object without it, whatever its name.
// Drift is found by comparing a container's observed configuration with the
// spec field by field; the spec hash label only tells a desired change from a
// change made by hand. Updates pull first, keep the old container aside until
// the new one is healthy, and put it back when the new one fails.
//
// docker imports spec and the Docker client libraries. It must not import
// converge or another target: it satisfies converge's interfaces by shape.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// The labels that mark Outpost's objects.
const (
	LabelManaged       = "io.outpost.managed"
	LabelResource      = "io.outpost.resource"
	LabelSpecHash      = "io.outpost.spec-hash"
	LabelImageDigest   = "io.outpost.image-digest"
	LabelRemoveVolumes = "io.outpost.remove-volumes"
	// LabelSecrets is the keyed hash of the container's secret files:
	// a new secret value recreates the container.
	LabelSecrets = "io.outpost.secrets"
)

// Defaults of Options.
const (
	DefaultCallTimeout   = 30 * time.Second
	DefaultPullTimeout   = 10 * time.Minute
	DefaultSettle        = 3 * time.Second
	DefaultHealthTimeout = 2 * time.Minute
	DefaultStopTimeout   = 10 * time.Second
)

// Errors a resource fails with; test for them with errors.Is.
var (
	// ErrConflict: an object that Outpost does not own has the name of a
	// managed one. Outpost leaves it alone.
	ErrConflict = errors.New("name taken by a container that Outpost does not own")
	// ErrPull: the image could not be pulled; the running container was
	// left as it was.
	ErrPull = errors.New("image pull failed")
	// ErrUnhealthy: a new container did not become healthy; the old one
	// was put back.
	ErrUnhealthy = errors.New("new container not healthy")
	// ErrNetworkByID: a network is written as what the engine reads as
	// another network's ID; nothing was created.
	ErrNetworkByID = errors.New("network named by its ID")
)

// Options configure a Driver. The zero value is usable.
type Options struct {
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
	// Host is the engine's address (unix:///var/run/docker.sock); empty
	// uses DOCKER_HOST and the other DOCKER_* variables, or the default.
	Host string
	// CallTimeout bounds each Engine API call but pulls; 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// PullTimeout bounds one image pull; 0 means DefaultPullTimeout.
	PullTimeout time.Duration
	// Settle is how long a new container without a healthcheck must stay
	// running to count as healthy; 0 means DefaultSettle.
	Settle time.Duration
	// HealthTimeout bounds the wait for a new container to become healthy;
	// 0 means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// DockerConfigDir holds the config.json whose credentials (and
	// credential helpers) pulls use; empty means DOCKER_CONFIG or
	// ~/.docker of the user running Outpost.
	DockerConfigDir string
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reopen a dropped event stream; 0 means 250ms and 30s.
	ReconnectMin, ReconnectMax time.Duration
}

// api is the part of the Engine API client that the driver uses.
type api interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerRename(ctx context.Context, containerID, newContainerName string) error
	ContainerRestart(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerUnpause(ctx context.Context, containerID string) error
	ContainerUpdate(ctx context.Context, containerID string, updateConfig container.UpdateConfig) (container.UpdateResponse, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, refStr string, options image.PullOptions) (io.ReadCloser, error)
	Info(ctx context.Context) (system.Info, error)
	NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	NetworkRemove(ctx context.Context, networkID string) error
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
	Close() error
}

// Driver converges containers. It implements converge's Driver, Restarter,
// HealthChecker and Watcher. Its methods may be called concurrently; calls
// for one container are serialized.
type Driver struct {
	api  api
	opts Options
	log  *slog.Logger
	// logDriver is the engine's default log driver, compared when a spec
	// names none.
	logDriver string

	mu     sync.Mutex
	locks  map[string]*sync.Mutex
	images map[string]*image.InspectResponse // by ID
}

// newClient makes a client of the engine at host (empty: DOCKER_HOST and
// the other DOCKER_* variables, or the default) that negotiates the API
// version.
func newClient(host string) (*client.Client, error) {
	copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		copts = append(copts, client.WithHost(host))
	}
	cli, err := client.NewClientWithOpts(copts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// Connect returns a client of the engine at host, as New makes it, once the
// engine answers: the network and volume kinds drive the engine with it.
func Connect(ctx context.Context, host string) (*client.Client, error) {
	cli, err := newClient(host)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	if _, err := cli.Ping(cctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	return cli, nil
}

// ObjectLabels are the labels of an engine object that a kind of its own
// declares (a network, a volume): its manifest's labels, Outpost's mark,
// and its resource ID, which tells it from the networks that the container
// kind makes for its containers.
func ObjectLabels(id spec.ID, labels map[string]string) map[string]string {
	l := make(map[string]string, len(labels)+2)
	for k, v := range labels {
		l[k] = v
	}
	l[LabelManaged] = "true"
	l[LabelResource] = id.String()
	return l
}

// New connects to the Docker engine (negotiating the API version) and checks
// that it answers.
func New(ctx context.Context, opts Options) (*Driver, error) {
	cli, err := newClient(opts.Host)
	if err != nil {
		return nil, err
	}
	d, err := newDriver(ctx, cli, opts)
	if err != nil {
		cli.Close()
		return nil, err
	}
	return d, nil
}

func newDriver(ctx context.Context, cli api, opts Options) (*Driver, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.PullTimeout <= 0 {
		opts.PullTimeout = DefaultPullTimeout
	}
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = DefaultHealthTimeout
	}
	if opts.ReconnectMin <= 0 {
		opts.ReconnectMin = 250 * time.Millisecond
	}
	if opts.ReconnectMax <= 0 {
		opts.ReconnectMax = 30 * time.Second
	}
	d := &Driver{api: cli, opts: opts, log: opts.Logger, locks: map[string]*sync.Mutex{}, images: map[string]*image.InspectResponse{}}
	cctx, cancel := d.call(ctx)
	defer cancel()
	info, err := cli.Info(cctx)
	if err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	d.logDriver = info.LoggingDriver
	if d.logDriver == "" {
		d.logDriver = "json-file"
	}
	return d, nil
}

// Close releases the connection to the engine.
func (d *Driver) Close() error { return d.api.Close() }

// call returns a context for one Engine API call.
func (d *Driver) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.opts.CallTimeout)
}

// lock serializes the calls for one container name.
func (d *Driver) lock(name string) func() {
	d.mu.Lock()
	m, ok := d.locks[name]
	if !ok {
		m = &sync.Mutex{}
		d.locks[name] = m
	}
	d.mu.Unlock()
	m.Lock()
	return m.Unlock
}
