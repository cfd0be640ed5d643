package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/outpost-gitops/outpost/internal/redact"
)

// trackingRef holds, in the Pusher's mirror, the remote's notes ref as
// last fetched.
const trackingRef = plumbing.ReferenceName("refs/outpost/notes-remote")

// remoteName is the name of the in-memory remote the Pusher uses; it is
// never written to the repository's configuration.
const remoteName = "outpost-status"

// PushOptions say where and how a Pusher pushes.
type PushOptions struct {
	// URL is the repository that receives the notes: the source's URL, or
	// status.remote.
	URL string
	// Auth authenticates to URL; nil uses none (or, for http(s), the user
	// information of URL).
	Auth transport.AuthMethod
	// CABundle adds trusted CAs for https.
	CABundle []byte
	// MinBackoff and MaxBackoff bound the wait between failed pushes in
	// Run; 0 means 2s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one push attempt (fetch and push), so that a network
	// that drops packets without a word does not hold Run forever; 0 means
	// 2m.
	Timeout time.Duration
	// Logger receives what Run does; nil discards it.
	Logger *slog.Logger
	// AuthHint, when set, is logged with a push that the server refused
	// for its credentials: what the operator can do about it.
	AuthHint string
}

// Pusher sends one host's notes ref to a remote repository, fast-forward
// only. Before its first push, and after any failed one, it fetches the
// remote's copy of the ref and rebuilds the local notes that the remote
// lacks on top of it, so a host whose clone was wiped keeps the history the
// remote holds.
//
// go-git's repositories are not safe for concurrent use, so a Pusher does
// its network work in a mirror of the notes in memory, and touches the
// local repository only briefly, under the lock that Notes.Write takes: a
// push that hangs on a dead network never holds up a Write.
type Pusher struct {
	notes  *Notes
	o      PushOptions
	log    *slog.Logger
	kick   chan struct{}
	mirror *memory.Storage // owned by Push, under mu
	remote *git.Remote     // on mirror

	mu     sync.Mutex // serializes Push
	synced bool       // the remote ref was fetched and the local one built on it

	stateMu   sync.Mutex
	remoteHas map[plumbing.Hash]bool // notes commits the remote is known to have
}

// NewPusher returns a Pusher of notes to o.URL.
func NewPusher(notes *Notes, o PushOptions) (*Pusher, error) {
	if o.URL == "" {
		return nil, errors.New("push status notes: no remote URL")
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 2 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mirror := memory.NewStorage()
	return &Pusher{
		notes:     notes,
		o:         o,
		log:       log.With("remote", redact.URLs(o.URL), "ref", string(notes.ref)),
		kick:      make(chan struct{}, 1),
		mirror:    mirror,
		remote:    git.NewRemote(mirror, &config.RemoteConfig{Name: remoteName, URLs: []string{o.URL}}),
		remoteHas: map[plumbing.Hash]bool{},
	}, nil
}

// Notify asks Run to push soon; it never blocks. Call it after a Write that
// wrote.
func (p *Pusher) Notify() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run pushes at start and after every Notify, retrying a failed push with
// exponential backoff (and jitter) until it succeeds. It returns nil when
// ctx is done; the caller that starts it waits for it.
func (p *Pusher) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	failing, refused := false, false
	var retry <-chan time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	p.Notify()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-retry:
		}
		retry = nil
		err := p.Push(ctx)
		// A push that landed is reported even when ctx ended just after
		// it: the recovery happened.
		if err != nil && ctx.Err() != nil {
			return nil
		}
		if err == nil {
			if failing {
				p.log.Info("status notes pushed again")
			}
			failing, refused, backoff = false, false, 0
			continue
		}
		switch {
		case backoff == 0:
			backoff = p.o.MinBackoff
		case backoff < p.o.MaxBackoff:
			backoff = min(2*backoff, p.o.MaxBackoff)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		// Warn once per change of state: when pushes start failing, and
		// when the server starts or stops refusing the credentials.
		auth := IsAuthError(err)
		switch {
		case auth && (!failing || !refused):
			attrs := []any{"error", err.Error(), "retry_in", wait}
			if p.o.AuthHint != "" {
				attrs = append(attrs, "hint", p.o.AuthHint)
			}
			p.log.Warn("status notes not pushed: the server refused the credentials; notes stay queued in the local ref", attrs...)
		case !auth && (!failing || refused):
			p.log.Warn("status notes not pushed; notes stay queued in the local ref", "error", err.Error(), "retry_in", wait)
		default:
			p.log.Debug("status notes still not pushed", "error", err.Error(), "retry_in", wait)
		}
		failing, refused = true, auth
		// A Notify while waiting pushes at once; the timer is then moot.
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(wait)
		retry = timer.C
	}
}

// Push makes one attempt to send the local notes ref to the remote. Errors
// are redacted: they carry no URL credentials.
func (p *Pusher) Push(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	if err := p.push(ctx); err != nil {
		p.synced = false
		return &redactedError{msg: fmt.Sprintf("push status notes to %s: %s", redact.URLs(p.o.URL), redact.URLs(err.Error())), err: err}
	}
	return nil
}

func (p *Pusher) push(ctx context.Context) error {
	if !p.synced {
		remoteTip, err := p.fetch(ctx)
		if err != nil {
			return err
		}
		err = p.notes.locked(func() error {
			if !remoteTip.IsZero() {
				if err := copyNotes(p.notes.repo.Storer, p.mirror, remoteTip); err != nil {
					return err
				}
			}
			return p.notes.rebaseOnto(remoteTip)
		})
		if err != nil {
			return err
		}
		has := map[plumbing.Hash]bool{}
		if !remoteTip.IsZero() {
			if has, err = ancestors(p.mirror, remoteTip); err != nil {
				return err
			}
		}
		p.setRemoteHas(has)
		p.synced = true
	}
	var local plumbing.Hash
	err := p.notes.locked(func() error {
		ref, err := p.notes.tip()
		if err != nil || ref == nil {
			return err
		}
		local = ref.Hash()
		return copyNotes(p.mirror, p.notes.repo.Storer, local)
	})
	if err != nil {
		return err
	}
	if local.IsZero() || p.has(local) {
		return nil // nothing written, or nothing new
	}
	if err := p.mirror.SetReference(plumbing.NewHashReference(p.notes.ref, local)); err != nil {
		return fmt.Errorf("stage notes: %w", err)
	}
	spec := config.RefSpec(string(p.notes.ref) + ":" + string(p.notes.ref))
	err = p.remote.PushContext(ctx, &git.PushOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{spec},
		Auth:       p.o.Auth,
		CABundle:   p.o.CABundle,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return err
	}
	has, err := ancestors(p.mirror, local)
	if err != nil {
		return err
	}
	p.setRemoteHas(has)
	p.log.Debug("status notes pushed", "notes_commit", local.String())
	return nil
}

func (p *Pusher) setRemoteHas(has map[plumbing.Hash]bool) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.remoteHas = has
}

func (p *Pusher) has(h plumbing.Hash) bool {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.remoteHas[h]
}

// fetch brings the remote's notes ref of this host into the mirror and
// returns its hash; the zero hash when the remote has none.
func (p *Pusher) fetch(ctx context.Context) (plumbing.Hash, error) {
	spec := config.RefSpec("+" + string(p.notes.ref) + ":" + string(trackingRef))
	err := p.remote.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{spec},
		Auth:       p.o.Auth,
		CABundle:   p.o.CABundle,
		Tags:       git.NoTags,
	})
	var noMatch git.NoMatchingRefSpecError
	switch {
	case errors.As(err, &noMatch), errors.Is(err, transport.ErrEmptyRemoteRepository):
		return plumbing.ZeroHash, nil
	case err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate):
		return plumbing.ZeroHash, fmt.Errorf("fetch %s: %w", p.notes.ref, err)
	}
	ref, err := p.mirror.Reference(trackingRef)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read fetched notes: %w", err)
	}
	return ref.Hash(), nil
}

// Pending returns how many local notes commits the remote lacks, as far as
// the last fetch or push knows.
func (p *Pusher) Pending() (int, error) {
	n := 0
	err := p.notes.locked(func() error {
		ref, err := p.notes.tip()
		if err != nil || ref == nil {
			return err
		}
		for h := ref.Hash(); !h.IsZero() && !p.has(h); n++ {
			c, err := object.GetCommit(p.notes.repo.Storer, h)
			if err != nil {
				return fmt.Errorf("read notes commit %s: %w", h, err)
			}
			h = plumbing.ZeroHash
			if len(c.ParentHashes) > 0 {
				h = c.ParentHashes[0]
			}
		}
		return nil
	})
	return n, err
}

// IsAuthError reports whether err is the server's refusal of the
// credentials (HTTP 401 or 403, or an SSH key that it did not accept).
func IsAuthError(err error) bool {
	return errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) ||
		// x/crypto/ssh has no error type for a refused key.
		strings.Contains(err.Error(), "unable to authenticate")
}

// redactedError carries an error whose text had credentials removed; the
// original stays reachable for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
