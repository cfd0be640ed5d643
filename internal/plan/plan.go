// Package plan owns the fleet plan of a change, for a merge request: it
// renders every host that the fleet knows at a base and a head revision of
// the environment repository, compares what each would run by hash, shows
// the differences as diffs, and groups hosts whose changes are identical.
// No host is touched and no driver is called.
//
// plan imports spec, pull, status and diff; never agent, converge or a
// target.
package plan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/outpost-gitops/outpost/internal/diff"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
)

// Options say what to plan.
type Options struct {
	// Repo is the path of a local Git repository (a work tree or a bare
	// repository) that holds both revisions and the hosts' notes refs.
	Repo string
	// Base and Head are revisions: hashes, branches, tags, HEAD~1.
	Base, Head string
	// Hosts are hosts given on the command line, added to the fleet (a
	// host of the notes with the same name gets these labels over its own).
	Hosts []spec.Host
	// GroupBy is the label that the summary counts changed hosts by;
	// "" means "role".
	GroupBy string
	// Log receives debug lines; nil discards them.
	Log *slog.Logger
}

// Plan is what a change does to the fleet, and the JSON document that
// `outpost plan --json` prints.
type Plan struct {
	Base string `json:"base"`
	Head string `json:"head"`
	// Hosts counts the hosts rendered.
	Hosts int `json:"hosts"`
	// Failures lists the hosts whose render fails, at head or at base; a
	// repository that does not load at all is one failure with no host.
	Failures []Failure `json:"failures"`
	// Groups lists the hosts that change, hosts with identical changes
	// together, the largest group first.
	Groups []Group `json:"groups"`
	// Unchanged lists the hosts that nothing changes for.
	Unchanged []string `json:"unchanged"`
	Summary   Summary  `json:"summary"`
}

// Failure is a host whose render fails.
type Failure struct {
	// Host is "" when the repository itself does not load.
	Host string `json:"host,omitempty"`
	// Revision is "base" or "head".
	Revision string   `json:"revision"`
	Errors   []string `json:"errors"`
}

// Group is a set of hosts with the same changes.
type Group struct {
	Hosts   []string `json:"hosts"`
	Changes []Change `json:"changes"`
}

// Change is what happens to one resource on the hosts of a group.
type Change struct {
	Kind   string   `json:"kind"`
	Name   string   `json:"name"`
	Action string   `json:"action"` // create, update, delete
	Fields []string `json:"fields"`
	// Diff is the unified diff of contents and drop-ins, secrets masked.
	Diff string `json:"diff,omitempty"`
}

// Summary counts the outcome.
type Summary struct {
	Changed int `json:"changed"`
	// ByLabel counts changed hosts by the value of the summary's label
	// (Options.GroupBy); hosts without it count under "".
	ByLabel   map[string]int `json:"by_label"`
	Label     string         `json:"label"`
	Failed    int            `json:"failed"`
	Unchanged int            `json:"unchanged"`
}

// Exit statuses of outpost plan.
const (
	ExitNone    = 0 // nothing changes
	ExitChanges = 1 // some host changes
	ExitFailed  = 2 // a render fails
)

// ExitCode is plan's exit status: 2 when a render fails, 1 when a host
// changes, 0 otherwise.
func (p *Plan) ExitCode() int {
	switch {
	case len(p.Failures) > 0:
		return ExitFailed
	case len(p.Groups) > 0:
		return ExitChanges
	}
	return ExitNone
}

// Run plans the change from o.Base to o.Head for every host the fleet
// knows: the hosts and labels of the notes refs (refs/notes/outpost/*),
// the hosts that fleet.yaml names at either revision, and o.Hosts.
func Run(ctx context.Context, o Options) (*Plan, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	repo, err := pull.Open("", pull.Config{URL: o.Repo}, log)
	if err != nil {
		return nil, err
	}
	defer repo.Close()
	p := &Plan{Failures: []Failure{}, Groups: []Group{}, Unchanged: []string{}}
	if p.Base, err = repo.Revision(o.Base); err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	if p.Head, err = repo.Revision(o.Head); err != nil {
		return nil, fmt.Errorf("--head: %w", err)
	}
	base, err := load(ctx, repo, p.Base)
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", p.Base, err)
	}
	head, err := load(ctx, repo, p.Head)
	if err != nil {
		return nil, fmt.Errorf("head %s: %w", p.Head, err)
	}
	hosts, err := fleet(ctx, o, base.repo, head.repo)
	if err != nil {
		return nil, err
	}
	p.Hosts = len(hosts)
	for _, l := range []*loaded{head, base} {
		if l.errs != nil {
			p.Failures = append(p.Failures, Failure{Revision: l.name(p), Errors: l.errs})
		}
	}
	if len(p.Failures) == 0 {
		compare(p, hosts, base.repo, head.repo)
	}
	label := o.GroupBy
	if label == "" {
		label = "role"
	}
	p.summarize(label, hosts)
	return p, nil
}

// loaded is one revision, loaded: the repository, or its errors.
type loaded struct {
	commit string
	repo   *spec.Repo
	errs   []string
}

func (l *loaded) name(p *Plan) string {
	if l.commit == p.Head {
		return "head"
	}
	return "base"
}

// load reads and validates the repository at commit. An invalid
// repository is not an error of load: its errors are kept.
func load(ctx context.Context, repo *pull.Repo, commit string) (*loaded, error) {
	fsys, err := repo.Tree(ctx, commit)
	if err != nil {
		return nil, err
	}
	l := &loaded{commit: commit}
	l.repo, err = spec.Load(fsys, spec.Options{})
	var es spec.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			l.errs = append(l.errs, e.Error())
		}
		return l, nil
	}
	return l, err
}

// fleet gathers the hosts: those of the notes, those fleet.yaml names,
// and those of the command line, by name.
func fleet(ctx context.Context, o Options, repos ...*spec.Repo) ([]spec.Host, error) {
	byName := map[string]spec.Host{}
	for _, r := range repos {
		if r == nil {
			continue
		}
		for _, h := range r.NamedHosts() {
			byName[h.Name] = h
		}
	}
	noted, err := status.Fleet(ctx, o.Repo, status.FleetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the hosts' notes: %w", err)
	}
	for _, hs := range noted {
		h := spec.Host{Name: hs.Host, Labels: map[string]string{}}
		if hs.Note != nil {
			maps.Copy(h.Labels, hs.Note.Labels)
		}
		byName[h.Name] = h
	}
	for _, h := range o.Hosts {
		if old, ok := byName[h.Name]; ok && old.Labels != nil {
			merged := maps.Clone(old.Labels)
			maps.Copy(merged, h.Labels)
			h.Labels = merged
		}
		byName[h.Name] = h
	}
	out := make([]spec.Host, 0, len(byName))
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[n])
	}
	return out, nil
}

// compare renders each host at both revisions and groups the hosts by
// their changes. Every container env value of every host's render, at
// either revision, is a secret for every diff: a password that one role's
// container holds must not show in another role's file.
func compare(p *Plan, hosts []spec.Host, base, head *spec.Repo) {
	type pending struct {
		host  string
		pairs []pair
	}
	var todo []pending
	var secrets []string
	for _, h := range hosts {
		pairs, sec, fail := hostChanges(h, base, head)
		secrets = append(secrets, sec...)
		switch {
		case fail != nil:
			p.Failures = append(p.Failures, *fail)
		case len(pairs) == 0:
			p.Unchanged = append(p.Unchanged, h.Name)
		default:
			todo = append(todo, pending{h.Name, pairs})
		}
	}
	slices.Sort(secrets)
	secrets = slices.Compact(secrets)
	m := diff.NewMasker(secrets...)
	red := status.NewRedactor(secrets...)
	groups := map[string]*Group{}
	var order []string
	for _, t := range todo {
		changes := make([]Change, len(t.pairs))
		for i, pr := range t.pairs {
			changes[i] = change(m, red, pr)
		}
		key := groupKey(changes)
		g, ok := groups[key]
		if !ok {
			g = &Group{Changes: changes}
			groups[key] = g
			order = append(order, key)
		}
		g.Hosts = append(g.Hosts, t.host)
	}
	for _, k := range order {
		p.Groups = append(p.Groups, *groups[k])
	}
	// The largest group first; among equals, the first host's name.
	slices.SortStableFunc(p.Groups, func(a, b Group) int {
		if len(a.Hosts) != len(b.Hosts) {
			return len(b.Hosts) - len(a.Hosts)
		}
		return strings.Compare(a.Hosts[0], b.Hosts[0])
	})
}

// pair is one resource that differs between the revisions.
type pair struct {
	action        spec.Action
	before, after *spec.Resource
}

// hostChanges renders h at both revisions and returns the resources whose
// hashes differ and the secrets of both renders, or the failure of a
// render.
func hostChanges(h spec.Host, base, head *spec.Repo) ([]pair, []string, *Failure) {
	after, err := head.Render(h)
	if err != nil {
		return nil, nil, &Failure{Host: h.Name, Revision: "head", Errors: lines(err)}
	}
	before, err := base.Render(h)
	if err != nil {
		return nil, nil, &Failure{Host: h.Name, Revision: "base", Errors: lines(err)}
	}
	secrets := append(status.Secrets(before), status.Secrets(after)...)
	var out []pair
	old := make(map[spec.ID]*spec.Resource, len(before.Resources))
	for _, r := range before.Resources {
		old[r.ID] = r
	}
	for _, r := range after.Resources {
		was := old[r.ID]
		delete(old, r.ID)
		switch {
		case was == nil:
			out = append(out, pair{spec.ActionCreate, nil, r})
		case was.Hash() != r.Hash():
			out = append(out, pair{spec.ActionUpdate, was, r})
		}
	}
	for _, r := range before.Resources {
		if _, gone := old[r.ID]; gone {
			out = append(out, pair{spec.ActionDelete, r, nil})
		}
	}
	return out, secrets, nil
}

func change(m *diff.Masker, red *status.Redactor, pr pair) Change {
	r := pr.after
	if r == nil {
		r = pr.before
	}
	fields, text := m.Resource(pr.before, pr.after)
	for i, f := range fields {
		fields[i] = red.String(f)
	}
	if fields == nil {
		fields = []string{}
	}
	return Change{Kind: string(r.ID.Kind), Name: r.ID.Name, Action: string(pr.action), Fields: fields, Diff: red.String(text)}
}

// lines splits a render error into its lines: spec.Errors holds one error
// per line.
func lines(err error) []string {
	return strings.Split(err.Error(), "\n")
}

// groupKey is the same for identical lists of changes.
func groupKey(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%s\x00%s\x00%s\x00%q\x00%s\x01", c.Kind, c.Name, c.Action, c.Fields, c.Diff)
	}
	return b.String()
}

func (p *Plan) summarize(label string, hosts []spec.Host) {
	labels := map[string]string{}
	for _, h := range hosts {
		labels[h.Name] = h.Labels[label]
	}
	p.Summary = Summary{Label: label, ByLabel: map[string]int{}, Failed: len(p.Failures), Unchanged: len(p.Unchanged)}
	for _, g := range p.Groups {
		for _, h := range g.Hosts {
			p.Summary.Changed++
			p.Summary.ByLabel[labels[h]]++
		}
	}
}
