package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/oci"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/redact"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// reporter writes this host's status notes into a bare repository of its own
// in the state directory (never the clone cache, which is cloned again when
// damaged) and pushes them in the background to the source, or to
// status.remote. Offline, notes queue in the local ref.
type reporter struct {
	notes  *status.Notes
	pusher notesPusher // nil when status.push is false
	log    *slog.Logger
	wg     sync.WaitGroup
	cancel context.CancelFunc
	// wrote is set once a note is written: a single pass then pushes.
	wrote bool
}

// notesPusher sends the notes ref to its remote: a *status.Pusher.
type notesPusher interface {
	// Notify asks Run to push soon.
	Notify()
	// Run pushes until ctx is done.
	Run(ctx context.Context) error
	// Push makes one attempt.
	Push(ctx context.Context) error
}

// newNotesPusher is DaemonOptions.newPusher's default.
func newNotesPusher(notes *status.Notes, o status.PushOptions) (notesPusher, error) {
	return status.NewPusher(notes, o)
}

// newReporter opens the notes repository and builds the pusher with the
// credentials that cfg names, without starting it (start does). A source
// that is a plain directory has no Git to write to: it gets no reporter.
func newReporter(cfg *Config, log *slog.Logger, newPusher func(*status.Notes, status.PushOptions) (notesPusher, error)) (*reporter, error) {
	url := cfg.Status.Remote
	if url == "" {
		// An OCI source is not Git: its notes go to status.remote only.
		if isOCIURL(cfg.Source.URL) {
			return nil, nil
		}
		if !gitURL.MatchString(cfg.Source.URL) && !isGitRepo(cfg.Source.URL) {
			return nil, nil
		}
		url = cfg.Source.URL
	}
	dir := filepath.Join(cfg.StateDir, "notes")
	if _, err := git.PlainOpen(dir); errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("status notes: %w", err)
		}
		if _, err := git.PlainInit(dir, true); err != nil {
			return nil, fmt.Errorf("status notes: %w", err)
		}
	}
	notes, err := status.OpenPath(dir, cfg.Host.Name)
	if err != nil {
		return nil, fmt.Errorf("status notes: %w", err)
	}
	r := &reporter{notes: notes, log: log}
	if !cfg.Status.Push {
		return r, nil
	}
	tr, err := notesPullConfig(cfg, url).Transport()
	if err != nil {
		return nil, fmt.Errorf("status notes: %w", err)
	}
	r.pusher, err = newPusher(notes, status.PushOptions{
		URL: tr.URL, Auth: tr.Auth, CABundle: tr.CABundle, Logger: log,
		MinBackoff: time.Second, MaxBackoff: time.Duration(cfg.Source.Interval),
		AuthHint: authHint,
	})
	if err != nil {
		return nil, fmt.Errorf("status notes: %w", err)
	}
	return r, nil
}

// start runs the pusher until ctx is done or close is called.
func (r *reporter) start(ctx context.Context) {
	if r == nil || r.pusher == nil {
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.pusher.Run(pctx); err != nil && pctx.Err() == nil {
			r.log.Warn("status notes are no longer pushed", "err", err)
		}
	}()
}

// pushTimeout bounds the push at the end of a single pass: a notes remote
// that is away delays apply by at most this much, and the note waits in the
// local ref for the next push.
const pushTimeout = 30 * time.Second

// pushNotes pushes the notes that a single pass wrote, once: apply has no
// pusher running in the background.
func (p *runner) pushNotes(ctx context.Context) {
	r := p.notes
	if r == nil || r.pusher == nil || !r.wrote {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := r.pusher.Push(pctx); err != nil {
		p.log.Warn("status note not pushed; it is pushed with the next one", "err", err)
	}
}

// isGitRepo reports whether path is a local Git repository (bare or not).
func isGitRepo(path string) bool {
	_, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	return err == nil
}

// close stops the pusher and waits for it.
func (r *reporter) close() {
	if r == nil || r.cancel == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
}

// report records the outcome of a revision on this host: in the log, and as
// a status note on the revision when there is Git to write to. Notes are
// written when the outcome changes, not on every poll.
func (p *runner) report(ctx context.Context, rev, result string, res *converge.Result, reason string) {
	p.log.Debug("outcome", append(p.revArgs(rev), "result", result)...)
	if p.notes == nil {
		return
	}
	commit, digest := rev, ""
	if cs, ok := p.src.(commitSource); ok && cs.Commit(rev) != rev {
		commit, digest = cs.Commit(rev), rev
	}
	if commit == "" {
		if !p.noCommit[rev] {
			p.log.Warn("status note not written: the artifact names no commit it was packed from (annotation "+oci.AnnotationRevision+"), so there is none to attach the note to",
				"revision", rev, "result", result)
			if p.noCommit == nil {
				p.noCommit = map[string]bool{}
			}
			p.noCommit[rev] = true
		}
		return
	}
	n := status.New(p.cfg.Host.Name, commit, status.Result(result), time.Now())
	n.Digest = digest
	n.Labels = p.cfg.Host.Labels
	n.AgentVersion = Version
	n.Message = redact.URLs(reason)
	p.mu.Lock()
	n.HealthyAt = p.status.HealthyAt
	if res != nil && !p.status.LastConverge.IsZero() {
		// applied_at is when the converge ended, before the health
		// wait: healthy_at is never older than it.
		n.AppliedAt = p.status.LastConverge.UTC().Truncate(time.Second)
	}
	p.mu.Unlock()
	n.DriftRepairs = p.driftSinceNote
	n.Images = map[string]string{}
	if p.desired != nil {
		for _, r := range p.desired.Resources {
			if c := docker.Of(r); c != nil {
				n.Images[c.Name] = imageRef(c)
			}
		}
	}
	if res != nil {
		for _, it := range res.Failed() {
			n.Failed = append(n.Failed, status.Failure{Resource: it.ID.String(), Error: it.Err.Error()})
		}
	}
	n.Platform, n.BadImages = p.imageNote()
	_, n.Recipients = hostKeys(p.cfg)
	p.lastNote = n
	p.writeNote(ctx, n)
}

// reportHold writes the last note again with the commit that this host
// holds back: when the hold is news, and as a heartbeat every third of
// the rollout's alive time, so that the other hosts count this one.
func (p *runner) reportHold(ctx context.Context) {
	if p.notes == nil || p.lastNote.Commit == "" {
		return
	}
	p.writeNote(ctx, p.lastNote)
}

// writeNote writes n, with the hold of the state when there is one.
func (p *runner) writeNote(ctx context.Context, n status.Note) {
	force := false
	if h := p.st.Held; h != nil {
		now := time.Now()
		n.Rollout = holdNote(h)
		n.ReportedAt = now
		if p.policy != nil && p.policy.rollout != nil {
			force = now.Sub(p.holdNoteAt) >= aliveTime(p.cfg, p.policy.rollout)/3
		}
	}
	wrote, err := p.notes.notes.Write(ctx, n, status.WriteOptions{Secrets: status.Secrets(p.desired), Force: force})
	if err != nil {
		p.log.Warn("status note not written", "revision", n.Commit, "err", err)
		return
	}
	if wrote && n.Rollout != nil {
		p.holdNoteAt = n.ReportedAt
	}
	if wrote {
		p.driftSinceNote = 0
		p.notes.wrote = true
		if p.notes.pusher != nil {
			p.notes.pusher.Notify()
		}
	}
}

// revArgs are the log attributes that name rev: the revision, and for an
// OCI artifact the commit it was packed from beside it.
func (p *runner) revArgs(rev string) []any {
	if cs, ok := p.src.(commitSource); ok {
		if c := cs.Commit(rev); c != "" && c != rev {
			return []any{"revision", rev, "commit", c}
		}
	}
	return []any{"revision", rev}
}

// commitSource is a revision source whose revisions are made from Git
// commits: Commit returns the commit of rev ("" when it is not known).
type commitSource interface {
	Commit(rev string) string
}

// imageRef is what a container runs, as tag@digest when the digest is known.
func imageRef(c *docker.Container) string {
	return docker.Reference("", c.Tag, c.Digest)
}

// FleetOptions returns where `outpost fleet` reads the fleet's notes (the
// status remote, else the source) and how to reach it.
func FleetOptions(cfg *Config) (status.FleetOptions, string, error) {
	url := cfg.Status.Remote
	if url == "" {
		url = cfg.Source.URL
	}
	if url == "" {
		return status.FleetOptions{}, "", fmt.Errorf("%w: no source: set source.url in the configuration or pass --source", ErrSource)
	}
	tr, err := notesPullConfig(cfg, url).Transport()
	if err != nil {
		return status.FleetOptions{}, "", fmt.Errorf("%w: %w", ErrSource, err)
	}
	src := tr.URL
	if tr.Local {
		src = tr.LocalPath
	}
	return status.FleetOptions{Branch: cfg.Source.Branch, Auth: tr.Auth, CABundle: tr.CABundle}, src, nil
}

// notesPullConfig is how the notes repository at url is reached: with the
// source's settings, except that the user name, password and token of an
// oci:// source are the registry's and are never sent to a Git server (an
// SSH key, known hosts and CAs still apply).
func notesPullConfig(cfg *Config, url string) pull.Config {
	pc := pullConfig(cfg)
	pc.URL = url
	if isOCIURL(cfg.Source.URL) {
		pc.Auth.Username, pc.Auth.PasswordFile, pc.Auth.TokenFile = "", "", ""
	}
	return pc
}

// authHint is logged with a refusal of the source's or the notes remote's
// credentials.
const authHint = "check source.auth: token and password files are read again at every request, " +
	"so writing the new one is enough; a key, CA or URL change needs a reload (SIGHUP). " +
	"A token is sent as the user name unless source.auth.username is set: GitLab wants oauth2, Bitbucket x-token-auth"

// imageNote is what the note says for `outpost images update`: the
// host's platform when it runs containers, and the tags that failed here.
func (p *runner) imageNote() (string, []status.BadImage) {
	if p.desired == nil {
		return "", nil
	}
	var cs []*docker.Container
	for _, r := range p.desired.Resources {
		if c := docker.Of(r); c != nil {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return "", nil
	}
	var bad []status.BadImage
	if p.images != nil {
		for _, c := range cs {
			e, ok := p.images.store.Entry(c.Name)
			// A tag written in Git (update mode git) is marked bad
			// without ever being resolved here: its entry has no image.
			if !ok || (e.Image != "" && e.Image != c.Image) {
				continue
			}
			for _, b := range e.Bad {
				bad = append(bad, status.BadImage{Container: c.Name, Tag: b.Tag, Digest: b.Digest, Reason: b.Reason})
			}
		}
	}
	return registry.HostPlatform().String(), bad
}
