package registry

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// DefaultInterval is the poll interval when none is configured
// (images.interval).
const DefaultInterval = 5 * time.Minute

// PollerOptions tune a Poller.
type PollerOptions struct {
	// HostName seeds the jitter, so that the hosts of a fleet spread their
	// polls the same way after every restart.
	HostName string
	// Platform is the host's; the zero value means HostPlatform().
	Platform Platform
	// Interval is images.interval; 0 means DefaultInterval.
	Interval time.Duration
	// Jitter is the share of Interval that each wait varies by, either
	// way; 0 means 0.1, a negative value none.
	Jitter float64
	// MinInterval is the least time between two polls of one registry,
	// whatever asks for a poll; 0 means 30s, a negative value none.
	MinInterval time.Duration
	Logger      *slog.Logger
}

// Poller polls the registries of the following containers and records what
// it resolves in a Store. Poll runs one pass, for the daemon's own timer or
// an operator's request; Run polls on a jittered timer until its context
// ends.
type Poller struct {
	res   *Resolver
	store *Store
	opts  PollerOptions
	log   *slog.Logger
	now   func() time.Time

	mu   sync.Mutex
	rng  *rand.Rand
	last map[string]time.Time // by registry host
}

// Update is a container whose resolved tag@digest changed in a poll.
type Update struct {
	Container string
	From, To  string // tag@digest; From is empty on the first resolution
}

// NewPoller returns a Poller. The Resolver should have the Store as its
// Options.Bad, so that bad tags are passed over.
func NewPoller(r *Resolver, s *Store, o PollerOptions) *Poller {
	if o.Platform == (Platform{}) {
		o.Platform = HostPlatform()
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = 0.1
	case o.Jitter < 0:
		o.Jitter = 0
	}
	switch {
	case o.MinInterval == 0:
		o.MinInterval = 30 * time.Second
	case o.MinInterval < 0:
		o.MinInterval = 0
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := fnv.New64a()
	h.Write([]byte(o.HostName))
	seed := h.Sum64()
	return &Poller{
		res: r, store: s, opts: o, log: log, now: time.Now,
		rng:  rand.New(rand.NewPCG(seed, seed^0x6f7574706f7374)),
		last: map[string]time.Time{},
	}
}

// Next returns the wait before the next poll: Interval, varied by Jitter.
func (p *Poller) Next() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	j := p.opts.Jitter * (2*p.rng.Float64() - 1)
	return time.Duration(float64(p.opts.Interval) * (1 + j))
}

// first returns the wait before the first poll of Run: a share of the
// jitter window, so that hosts started together do not poll together.
func (p *Poller) first() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(float64(p.opts.Interval) * p.opts.Jitter * p.rng.Float64())
}

// Poll resolves every container of cs that follows its registry, except
// those whose registry was polled less than MinInterval ago or asked to be
// left alone for now (Retry-After), and records each outcome in the store.
// A registry that fails leaves the container's current tag@digest as it
// was. It returns the containers whose tag@digest changed, and the errors
// joined (the store's own errors among them). It logs a container's checks
// when they start failing and when they recover, not at every poll.
func (p *Poller) Poll(ctx context.Context, cs []*docker.Container) ([]Update, error) {
	now := p.now()
	due := map[string]bool{} // by registry host
	var ups []Update
	var errs []error
	for _, c := range cs {
		if !c.Follows() {
			continue
		}
		reg := registryOf(c.Image)
		ok, seen := due[reg]
		if !seen {
			ok = p.due(reg, now)
			due[reg] = ok
		}
		if !ok {
			p.log.Debug("registry not due", "container", c.Name, "registry", reg)
			continue
		}
		before, _ := p.store.Entry(c.Name)
		res, err := p.res.Resolve(ctx, c, p.opts.Platform)
		if ctx.Err() != nil {
			return ups, errors.Join(append(errs, ctx.Err())...)
		}
		failedBefore := before.Check != nil && before.Check.Error != ""
		switch {
		case err != nil && !failedBefore:
			// Logged when a check starts failing, not at every poll.
			p.log.Warn("registry check failing; keeping the current image", "container", c.Name, "image", c.Image, "error", err)
		case err == nil && failedBefore:
			p.log.Info("registry check recovered", "container", c.Name, "image", c.Image)
		}
		if err != nil {
			errs = append(errs, err)
		}
		changed, serr := p.store.Record(c, res, err)
		if serr != nil {
			errs = append(errs, serr)
			continue
		}
		if changed {
			u := Update{Container: c.Name, From: before.Current.String(), To: res.Ref()}
			if before.Image != c.Image {
				u.From = ""
			}
			p.log.Info("new image resolved", "container", c.Name, "image", c.Image, "from", u.From, "to", u.To)
			ups = append(ups, u)
		}
	}
	return ups, errors.Join(errs...)
}

// due reports whether reg may be polled now, and if so counts this as its
// poll.
func (p *Poller) due(reg string, now time.Time) bool {
	if at := p.res.throttle.retryAt(reg); !at.IsZero() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.last[reg]; ok && now.Sub(last) < p.opts.MinInterval {
		return false
	}
	p.last[reg] = now
	return true
}

// Run polls the containers that list returns, first after a short
// host-seeded wait and then every Next(), and calls changed with the
// containers whose tag@digest changed. It returns ctx's error when ctx is
// done; a failing poll does not stop it.
func (p *Poller) Run(ctx context.Context, list func() []*docker.Container, changed func([]Update)) error {
	t := time.NewTimer(p.first())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		ups, err := p.Poll(ctx, list())
		if err != nil && ctx.Err() == nil {
			// Poll logged when checks started failing.
			p.log.Debug("registry poll failed", "error", err)
		}
		if len(ups) > 0 && changed != nil {
			changed(ups)
		}
		t.Reset(p.Next())
	}
}

func registryOf(image string) string {
	repo, err := name.NewRepository(image)
	if err != nil {
		return image
	}
	return repo.RegistryStr()
}
