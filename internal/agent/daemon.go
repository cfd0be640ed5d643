package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/internal/status"
)

// Defaults of the daemon's timers.
const (
	DefaultSocket       = "/run/outpost/outpost.sock"
	DefaultFullInterval = 10 * time.Minute
	// driftDebounce gathers the burst of events that one edit makes (an
	// editor's write, chmod and rename) into one repair.
	driftDebounce = 20 * time.Millisecond
)

// DaemonOptions configure Run beyond the agent's configuration.
type DaemonOptions struct {
	Logger *slog.Logger
	// Socket is the control socket's path; empty means DefaultSocket.
	Socket string
	// FullInterval is the period of the backstop full converge; 0 means
	// DefaultFullInterval.
	FullInterval time.Duration
	// Reload delivers a newly read configuration (SIGHUP); the daemon
	// swaps it in between two passes. A configuration that failed to load
	// never reaches this channel: the caller keeps the old one.
	Reload <-chan *Config
	// Notify receives the daemon's lifecycle for the service manager
	// (sd_notify); nil ignores it.
	Notify Notifier

	// newSource, newImages and newPusher build the clients that hold
	// credentials: the source's, the registries' and the notes remote's.
	// Run builds each at start, and every reload builds them all again,
	// so that no client keeps a credential that was rotated. nil means
	// the real ones; tests set them, and drivers.
	newSource func(*Config, *slog.Logger) (revSource, error)
	newImages func(*Config, *slog.Logger, *registry.Store) (*images, error)
	newPusher func(*status.Notes, status.PushOptions) (notesPusher, error)
	// drivers builds the driver of each kind; nil means converge.Drivers().
	drivers map[spec.Kind]converge.NewDriverFunc
}

// Notifier tells the service manager about the daemon's lifecycle.
type Notifier interface {
	Ready(status string)
	Status(status string)
	Watchdog()
}

// daemon is the state of one `outpost run`: the loop around the pass. It
// adds to the runner what a loop adds: timers, watchers, the control
// socket, drift repair and the registry polls. Everything that converges
// runs in the loop goroutine, so no two converges of one resource ever
// overlap; the control server only sends requests to the loop and reads
// status.
type daemon struct {
	*runner
	opts DaemonOptions

	requests chan request
	drift    chan spec.ID

	// Made in Run, owned by the loop goroutine.
	pollT, fullT, imagesT, debounce *time.Timer
	// polls carries the outcome of the source poll in flight, imagesDone
	// that of the registry poll in flight; each runs in a goroutine of
	// its own, counted by work, and at most one of each at a time.
	polls      chan sourcePolled
	imagesDone chan imagesPolled
	work       sync.WaitGroup
	pollBusy   bool
	imagesBusy bool
	// pollRetry asks the poll in flight to apply its revision even when
	// it is in force or failed; waiting are the control requests answered
	// when it lands; reloadTo are the configurations that wait for it,
	// in order, since the poll holds the source.
	pollRetry bool
	waiting   []request
	reloadTo  []*Config

	stopWatch func()
	// pollFailures counts the transient poll failures in a row.
	pollFailures int
	// pollFailing is the class of the last poll's failure; "" after a
	// poll that succeeded.
	pollFailing string
	// pending are the resources a watcher reported, repaired when
	// debounce fires.
	pending map[spec.ID]bool

	// heartbeat is when the loop last woke (unix nanoseconds).
	heartbeat atomic.Int64
}

// Run is `outpost run`: it keeps this host converged to cfg's source until
// ctx is done, then finishes the resource in hand, saves its state and
// returns nil.
func Run(ctx context.Context, cfg *Config, opts DaemonOptions) error {
	opts = opts.withDefaults()
	lock, err := state.Lock(cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	log := opts.Logger.With("host", cfg.Host.Name)
	if r, err := EnsureSecretKey(cfg); err != nil {
		log.Warn("the host's age key cannot be made; encrypted files will not decrypt", "err", err)
	} else if r != "" {
		log.Debug("the host's age key", "recipient", r)
	}
	p, err := newRunner(cfg, log, seams{drivers: opts.drivers, newSource: opts.newSource, newImages: opts.newImages, newPusher: opts.newPusher})
	if err != nil {
		return err
	}
	d := &daemon{
		runner:     p,
		opts:       opts,
		requests:   make(chan request),
		drift:      make(chan spec.ID, 256),
		polls:      make(chan sourcePolled, 1),
		imagesDone: make(chan imagesPolled, 1),
		pending:    map[spec.ID]bool{},
	}
	p.notify = opts.Notify.Status
	p.track = true
	p.watch = func(ctx context.Context) { d.startWatchers(ctx, d.drivers, d.desired) }
	p.unwatch = d.stopWatchers

	// The socket listens before the first converge, so that `outpost
	// status` answers during a slow start.
	var wg sync.WaitGroup
	defer wg.Wait()
	stop, err := d.serve(ctx, &wg)
	defer stop()
	if err != nil {
		return err
	}
	if err := d.start(ctx); err != nil {
		return err
	}
	defer d.makeTimers()()
	// Watchers stop before the drivers they watch through are closed; a
	// reload replaces d.notes, so the one in use is closed at the end.
	defer d.close()

	// First converge from local state: the last good commit needs no
	// network, so a host that boots offline enforces it at once.
	d.convergeLocal(ctx)
	opts.Notify.Ready(d.statusLine())
	d.beat()
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watchdog(wctx)
	}()

	err = d.loop(ctx)
	if ctx.Err() != nil {
		// A cancelled context is how the daemon is asked to stop.
		d.log.Info("stopping")
		return nil
	}
	return err
}

func (o DaemonOptions) withDefaults() DaemonOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.FullInterval <= 0 {
		o.FullInterval = DefaultFullInterval
	}
	if o.Notify == nil {
		o.Notify = nopNotifier{}
	}
	return o
}

// start builds the clients that hold credentials: the source's, the
// registries' and the notes'.
func (d *daemon) start(ctx context.Context) error {
	var err error
	if d.src, err = d.seams.newSource(d.cfg, d.log); err != nil {
		return err
	}
	if d.images, err = d.seams.newImages(d.cfg, d.log, nil); err != nil {
		return err
	}
	// Status notes are a report, not a duty: without them the host still
	// converges.
	if d.notes, err = newReporter(d.cfg, d.log, d.seams.newPusher); err != nil {
		d.log.Warn("status notes disabled", "err", err)
	}
	d.notes.start(ctx)
	d.setStatus(func(s *Status) { s.Suspended = d.st.Suspended })
	return nil
}

// serve starts the control socket and, when configured, the metrics
// listener, each in a goroutine counted by wg; stop closes them.
func (d *daemon) serve(ctx context.Context, wg *sync.WaitGroup) (stop func(), err error) {
	var closers []func() error
	stop = func() {
		for _, c := range closers {
			c()
		}
	}
	listen := func(what string, ln net.Listener, h http.Handler) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		closers = append(closers, srv.Close)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error(what, "err", err)
			}
		}()
	}
	ln, err := listenControl(d.opts.Socket)
	if err != nil {
		return stop, err
	}
	listen("control socket", ln, d.controlHandler(ctx))
	if d.cfg.Metrics.Listen != "" {
		mln, err := net.Listen("tcp", d.cfg.Metrics.Listen)
		if err != nil {
			return stop, fmt.Errorf("metrics: %w", err)
		}
		listen("metrics", mln, d.m.handler())
	}
	return stop, nil
}

type nopNotifier struct{}

func (nopNotifier) Ready(string)  {}
func (nopNotifier) Status(string) {}
func (nopNotifier) Watchdog()     {}
