package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// ErrNotFollowing is matched by errors.Is when Resolve is given a container
// that pins its tag instead of following its registry.
var ErrNotFollowing = errors.New("container does not follow its registry")

// Defaults of Options.
const (
	DefaultMaxTags       = 10000
	DefaultMaxCandidates = 20
	DefaultPageSize      = 1000
)

// maxConfigSize bounds an image's config blob read for its platform.
const maxConfigSize = 4 << 20

// BadTags tells the resolver which tags failed on this host. A tag marked
// with a digest is bad only while it still points to that digest; a tag
// marked without one is bad whatever it points to. Store implements it.
type BadTags interface {
	IsBad(container, tag, digest string) bool
}

// Options tune a Resolver. The zero value is usable.
type Options struct {
	// Keychain finds credentials per registry; nil means
	// authn.DefaultKeychain (the Docker config file and its credential
	// helpers).
	Keychain authn.Keychain
	// Transport is the base HTTP transport; nil means a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	Retry     Retry
	// MaxTags caps the tags read per repository and poll; 0 means
	// DefaultMaxTags.
	MaxTags int
	// PageSize is the number of tags asked for per page; 0 means
	// DefaultPageSize.
	PageSize int
	// MaxCandidates caps how many tags, best first, are checked for the
	// host's platform in one Resolve; 0 means DefaultMaxCandidates.
	MaxCandidates int
	// Bad, when set, lists the tags that are passed over.
	Bad       BadTags
	Logger    *slog.Logger
	UserAgent string
}

// Resolver finds the tag and digest that a following container should run.
// It keeps one authenticated session per repository, and what it learnt of
// each digest's platforms, across calls. It is safe for concurrent use.
type Resolver struct {
	opts     Options
	log      *slog.Logger
	throttle *throttle
	puller   *remote.Puller

	mu        sync.Mutex
	platforms map[string][]Platform // by repository@digest
}

// Resolution is the outcome of Resolve.
type Resolution struct {
	Tag    string `json:"tag,omitempty"`
	Digest string `json:"digest,omitempty"`
	// Skipped lists the tags that the policy ranks above Tag and that were
	// passed over, best first, with the reason.
	Skipped []Skip `json:"skipped,omitempty"`
	// Truncated is true when the repository has more tags than MaxTags and
	// only the first MaxTags were read.
	Truncated bool `json:"truncated,omitempty"`
}

// Ref returns tag@digest.
func (r Resolution) Ref() string {
	return docker.Reference("", r.Tag, r.Digest)
}

// Skip is a tag passed over, and why.
type Skip struct {
	Tag    string `json:"tag"`
	Digest string `json:"digest,omitempty"`
	Reason string `json:"reason"`
}

// NewResolver returns a Resolver.
func NewResolver(o Options) (*Resolver, error) {
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if o.MaxTags <= 0 {
		o.MaxTags = DefaultMaxTags
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.MaxCandidates <= 0 {
		o.MaxCandidates = DefaultMaxCandidates
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	th := &throttle{until: map[string]time.Time{}, now: time.Now}
	ropts := []remote.Option{
		remote.WithAuthFromKeychain(o.Keychain),
		remote.WithTransport(newTransport(o.Transport, o.Retry, th, log)),
		remote.WithPageSize(o.PageSize),
		// Retries are the transport's: go-containerregistry's own would
		// multiply them.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	}
	if o.UserAgent != "" {
		ropts = append(ropts, remote.WithUserAgent(o.UserAgent))
	}
	p, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	return &Resolver{opts: o, log: log, throttle: th, puller: p, platforms: map[string][]Platform{}}, nil
}

// RetryAt returns when the registry of image asked (with Retry-After) to be
// polled again, or the zero time when it did not.
func (r *Resolver) RetryAt(image string) time.Time {
	repo, err := name.NewRepository(image)
	if err != nil {
		return time.Time{}
	}
	return r.throttle.retryAt(repo.RegistryStr())
}

// Resolve lists c's repository, ranks its tags by c's update policy, and
// returns the best tag that has an image for host and is not marked bad,
// with its digest, and the better-ranked tags that it passed over. For
// policy digest it only asks for the followed tag's digest.
//
// An unreachable or failing registry returns an error; the caller keeps
// running what it runs. When no tag qualifies the error wraps
// ErrNoCandidate and the Resolution still lists what was passed over.
func (r *Resolver) Resolve(ctx context.Context, c *docker.Container, host Platform) (Resolution, error) {
	return r.ResolveFor(ctx, c, []Platform{host})
}

// BadReasons is a BadTags that also says why a tag is bad (on which host,
// after what), for the reasons a Resolution gives.
type BadReasons interface {
	BadTags
	BadReason(container, tag, digest string) string
}

// badReason says why tag is passed over, when Bad marks it.
func (r *Resolver) badReason(container, tag, digest string) (string, bool) {
	if r.opts.Bad == nil || !r.opts.Bad.IsBad(container, tag, digest) {
		return "", false
	}
	if br, ok := r.opts.Bad.(BadReasons); ok {
		return br.BadReason(container, tag, digest), true
	}
	return "marked bad on this host", true
}

// ResolveFor is Resolve for a fleet: the tag chosen has an image for every
// platform of hosts (at least one), and the bad tags are the fleet's.
func (r *Resolver) ResolveFor(ctx context.Context, c *docker.Container, hosts []Platform) (Resolution, error) {
	if len(hosts) == 0 {
		return Resolution{}, fmt.Errorf("container %s: no platform to resolve for", c.Name)
	}
	if c.Update == nil {
		return Resolution{}, fmt.Errorf("container %s: %w", c.Name, ErrNotFollowing)
	}
	pol, err := NewPolicy(c.Update)
	if err != nil {
		return Resolution{}, fmt.Errorf("container %s: %w", c.Name, err)
	}
	repo, err := name.NewRepository(c.Image)
	if err != nil {
		return Resolution{}, fmt.Errorf("container %s: image %q: %w", c.Name, c.Image, err)
	}
	var res Resolution
	var cands []string
	if c.Update.Policy == PolicyDigest {
		cands = pol.Candidates([]string{followedTag(c.Update)})
	} else {
		tags, truncated, err := r.list(ctx, repo)
		if err != nil {
			return Resolution{}, err
		}
		res.Truncated = truncated
		cands = pol.Candidates(tags)
	}
	for i, tag := range cands {
		if i == r.opts.MaxCandidates {
			return res, fmt.Errorf("%s: none of the best %d tags runs on %s: %w", repo, i, platformList(hosts), ErrNoCandidate)
		}
		if why, bad := r.badReason(c.Name, tag, ""); bad {
			res.Skipped = append(res.Skipped, Skip{Tag: tag, Reason: why})
			continue
		}
		desc, err := r.puller.Head(ctx, repo.Tag(tag))
		if err != nil {
			if isStatus(err, http.StatusNotFound) && c.Update.Policy != PolicyDigest {
				// Deleted between the listing and now.
				res.Skipped = append(res.Skipped, Skip{Tag: tag, Reason: "manifest not found"})
				continue
			}
			return res, fmt.Errorf("%s:%s: %w", repo, tag, err)
		}
		digest := desc.Digest.String()
		if why, bad := r.badReason(c.Name, tag, digest); bad {
			res.Skipped = append(res.Skipped, Skip{Tag: tag, Digest: digest, Reason: why})
			continue
		}
		plats, err := r.imagePlatforms(ctx, repo, desc)
		if err != nil {
			return res, fmt.Errorf("%s:%s: %w", repo, tag, err)
		}
		if h, ok := missing(plats, hosts); ok {
			res.Skipped = append(res.Skipped, Skip{Tag: tag, Digest: digest, Reason: platformReason(h, plats)})
			continue
		}
		res.Tag, res.Digest = tag, digest
		return res, nil
	}
	return res, fmt.Errorf("%s: %w", repo, ErrNoCandidate)
}

func followedTag(p *docker.UpdatePolicy) string {
	if p.Tag == "" {
		return "latest"
	}
	return p.Tag
}

// list reads the repository's tags, page by page, up to MaxTags.
func (r *Resolver) list(ctx context.Context, repo name.Repository) ([]string, bool, error) {
	l, err := r.puller.Lister(ctx, repo)
	if err != nil {
		return nil, false, fmt.Errorf("list %s: %w", repo, err)
	}
	var tags []string
	for l.HasNext() {
		page, err := l.Next(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("list %s: %w", repo, err)
		}
		tags = append(tags, page.Tags...)
		if len(tags) >= r.opts.MaxTags {
			truncated := len(tags) > r.opts.MaxTags || l.HasNext()
			if truncated {
				// Shown by outpost images; at every poll a warning would be noise.
				r.log.Debug("repository has more tags than are read", "repository", repo.String(), "max_tags", r.opts.MaxTags)
			}
			return tags[:r.opts.MaxTags], truncated, nil
		}
	}
	return tags, false, nil
}

// imagePlatforms returns the platforms of the image or index desc, from the
// cache when this digest was seen before: a digest's content never changes.
func (r *Resolver) imagePlatforms(ctx context.Context, repo name.Repository, desc *v1.Descriptor) ([]Platform, error) {
	key := repo.String() + "@" + desc.Digest.String()
	r.mu.Lock()
	plats, ok := r.platforms[key]
	r.mu.Unlock()
	if ok {
		return plats, nil
	}
	ref := repo.Digest(desc.Digest.String())
	d, err := r.puller.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		idx, err := v1.ParseIndexManifest(bytes.NewReader(d.Manifest))
		if err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		for _, m := range idx.Manifests {
			// Attestations hang in indexes as unknown/unknown.
			if m.Platform == nil || m.Platform.OS == "unknown" {
				continue
			}
			plats = append(plats, Platform{OS: m.Platform.OS, Architecture: m.Platform.Architecture, Variant: m.Platform.Variant})
		}
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		// Too old to say its platform, and Docker no longer pulls it:
		// no platform runs it.
	default:
		m, err := v1.ParseManifest(bytes.NewReader(d.Manifest))
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		cfg, err := r.config(ctx, repo, m.Config.Digest)
		if err != nil {
			return nil, err
		}
		plats = []Platform{{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}
	}
	r.mu.Lock()
	if len(r.platforms) > 4096 {
		clear(r.platforms)
	}
	r.platforms[key] = plats
	r.mu.Unlock()
	return plats, nil
}

func (r *Resolver) config(ctx context.Context, repo name.Repository, h v1.Hash) (*v1.ConfigFile, error) {
	l, err := r.puller.Layer(ctx, repo.Digest(h.String()))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfigSize))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func runsOn(plats []Platform, host Platform) bool {
	for _, p := range plats {
		if host.Runs(p) {
			return true
		}
	}
	return false
}

// missing returns the first of hosts that none of plats runs on.
func missing(plats, hosts []Platform) (Platform, bool) {
	for _, h := range hosts {
		if !runsOn(plats, h) {
			return h, true
		}
	}
	return Platform{}, false
}

func platformList(hosts []Platform) string {
	s := make([]string, len(hosts))
	for i, h := range hosts {
		s[i] = h.String()
	}
	return strings.Join(s, ", ")
}

func platformReason(host Platform, plats []Platform) string {
	s := "no image for " + host.String()
	if len(plats) == 0 {
		return s
	}
	s += " (has "
	for i, p := range plats {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s + ")"
}

func isStatus(err error, code int) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == code
}
