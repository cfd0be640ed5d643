package writeback

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// Resolver resolves a container's policy for a set of platforms.
// *registry.Resolver is one.
type Resolver interface {
	ResolveFor(ctx context.Context, c *docker.Container, hosts []registry.Platform) (registry.Resolution, error)
}

// Host is one host of the fleet as its note reports it.
type Host struct {
	spec.Host
	Platform registry.Platform
	Bad      []status.BadImage
}

// pin is one container in update mode git, declared once, and what the
// hosts it applies to need of it.
type pin struct {
	file      string
	container *docker.Container
	hosts     []string
	platforms []registry.Platform
}

// pins renders repo for every host and gathers the containers in update
// mode git, by declaration. A host whose render fails is reported and
// left out.
func pins(repo *spec.Repo, hosts []Host) ([]*pin, []Problem) {
	byKey := map[string]*pin{}
	var problems []Problem
	for _, h := range hosts {
		st, err := repo.Render(h.Host)
		if err == nil {
			err = docker.SetUpdateMode(st)
		}
		if err != nil {
			problems = append(problems, Problem{Host: h.Name, Error: err.Error()})
			continue
		}
		for _, r := range st.Resources {
			c := docker.Of(r)
			if c == nil || c.Update == nil || c.Update.Mode != docker.ModeGit {
				continue
			}
			// A template may render one declaration differently per
			// host: each rendering is its own pin, and rewriting refuses
			// a tag that is not written literally.
			key := strings.Join([]string{r.Pos.File, c.Name, c.Image, c.Tag, registry.Describe(c.Update)}, "\x00")
			p := byKey[key]
			if p == nil {
				p = &pin{file: r.Pos.File, container: c}
				byKey[key] = p
			}
			p.hosts = append(p.hosts, h.Name)
			if !slices.Contains(p.platforms, h.Platform) {
				p.platforms = append(p.platforms, h.Platform)
			}
		}
	}
	out := slices.Collect(maps.Values(byKey))
	sort.Slice(out, func(i, j int) bool {
		if out[i].file != out[j].file {
			return out[i].file < out[j].file
		}
		return out[i].container.Name < out[j].container.Name
	})
	return out, problems
}

// fleetBad is the bad tags of the hosts' notes, for the resolver.
type fleetBad struct {
	byContainer map[string][]badOn
}

type badOn struct {
	status.BadImage
	host string
}

func newFleetBad(hosts []Host) *fleetBad {
	b := &fleetBad{byContainer: map[string][]badOn{}}
	for _, h := range hosts {
		for _, x := range h.Bad {
			b.byContainer[x.Container] = append(b.byContainer[x.Container], badOn{x, h.Name})
		}
	}
	return b
}

// find returns the first mark of tag at digest: a mark with a digest holds
// only for that digest; one without holds for any, and is the only kind
// that an empty digest (before the tag's digest is known) finds.
func (b *fleetBad) find(container, tag, digest string) (badOn, bool) {
	for _, x := range b.byContainer[container] {
		if x.Tag == tag && (x.Digest == "" || x.Digest == digest) {
			return x, true
		}
	}
	return badOn{}, false
}

func (b *fleetBad) IsBad(container, tag, digest string) bool {
	_, ok := b.find(container, tag, digest)
	return ok
}

func (b *fleetBad) BadReason(container, tag, digest string) string {
	x, _ := b.find(container, tag, digest)
	s := "marked bad on " + x.host
	if x.Reason != "" {
		s += ": " + x.Reason
	}
	return s
}

var _ registry.BadReasons = (*fleetBad)(nil)

// hostsOf turns the notes into hosts, adding those that fleet.yaml names
// without a note. A host whose note names no platform is given def.
func hostsOf(noted []status.HostStatus, named []spec.Host, def registry.Platform) []Host {
	byName := map[string]Host{}
	for _, h := range named {
		byName[h.Name] = Host{Host: h, Platform: def}
	}
	for _, hs := range noted {
		h := Host{Host: spec.Host{Name: hs.Host, Labels: map[string]string{}}, Platform: def}
		if n := hs.Note; n != nil {
			maps.Copy(h.Labels, n.Labels)
			if p, err := registry.ParsePlatform(n.Platform); err == nil {
				h.Platform = p
			}
			h.Bad = n.BadImages
		}
		byName[h.Name] = h
	}
	out := make([]Host, 0, len(byName))
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[n])
	}
	return out
}

// resolve resolves every pin and returns the changes to make and the
// problems met; a pin whose registry fails keeps its tag. Pins of one
// image, policy and platforms share one resolution, unless a host marked
// one of the container's tags bad: a fleet runs many containers of one
// image, and each resolution costs a tag listing and a HEAD.
func resolve(ctx context.Context, res Resolver, ps []*pin, bad *fleetBad) ([]Change, []Problem) {
	var changes []Change
	var problems []Problem
	type result struct {
		r   registry.Resolution
		err error
	}
	shared := map[string]result{}
	for _, p := range ps {
		c := p.container
		key := ""
		if len(bad.byContainer[c.Name]) == 0 {
			key = fmt.Sprint(c.Image, "\x00", registry.Describe(c.Update), "\x00", c.Update.Loose, "\x00", p.platforms)
		}
		sr, ok := shared[key]
		if !ok || key == "" {
			sr.r, sr.err = res.ResolveFor(ctx, c, p.platforms)
			if key != "" && ctx.Err() == nil {
				shared[key] = sr
			}
		}
		r, err := sr.r, sr.err
		if err != nil {
			if ctx.Err() != nil {
				return changes, append(problems, Problem{File: p.file, Container: c.Name, Error: ctx.Err().Error()})
			}
			problems = append(problems, Problem{File: p.file, Container: c.Name, Error: err.Error(), Skipped: skips(r.Skipped)})
			continue
		}
		if r.Tag == c.Tag {
			continue
		}
		changes = append(changes, Change{
			File: p.file, Container: c.Name, Image: c.Image, From: c.Tag, To: r.Tag, Digest: r.Digest,
			Hosts: len(p.hosts), Skipped: skips(r.Skipped),
		})
	}
	return changes, problems
}

func skips(ss []registry.Skip) []Skip {
	var out []Skip
	for _, s := range ss {
		out = append(out, Skip{Tag: s.Tag, Digest: s.Digest, Reason: s.Reason})
	}
	return out
}

// errNoHosts is returned when neither the notes nor fleet.yaml name a host.
var errNoHosts = errors.New("no hosts: no notes refs (refs/notes/outpost/*) and no host names in fleet.yaml")
