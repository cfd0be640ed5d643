// Package volume owns the volume kind: a named Docker volume with its
// driver, options and labels, created over the Engine API and labelled as
// Outpost's.
//
// A volume holds data that nothing else has, so the kind is careful with
// it: a volume is never recreated (a changed driver or option is reported,
// not repaired), it is removed on prune only when its manifest says
// prune: true, and one that Outpost did not create is used only with
// adopt: true and never removed.
//
// volume imports spec, converge (to register the kind) and the Docker
// client libraries.
package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// Kind is the volume kind.
const Kind spec.Kind = "volume"

// LabelComposeVolume is the label with which Compose names a project's
// volume; a volume of a project carries it.
const LabelComposeVolume = "com.docker.compose.volume"

// Errors a volume fails with; test for them with errors.Is.
var (
	// ErrNotOwned: a volume of the name exists and Outpost did not
	// create it, and the manifest does not say adopt: true.
	ErrNotOwned = errors.New("volume exists and Outpost did not create it")
	// ErrChanged: the volume differs from its manifest in what the engine
	// cannot change; it is left as it is.
	ErrChanged = errors.New("volume differs and is never recreated")
)

func init() {
	converge.Register(converge.Kind{KindDef: spec.KindDef{
		Name:   Kind,
		Order:  25, // before the containers that mount it
		Fields: []string{"name", "driver", "options", "labels", "project"},
		Hints:  []string{"volumes"},
		Decode: decode,
	}, NewDriver: func(ctx context.Context, env converge.Env) (converge.Driver, error) {
		return New(ctx, "", env.Logger)
	}})
}

// Volume is a named volume.
type Volume struct {
	Name    string
	Driver  string            // "local" when the manifest names none
	Options map[string]string `json:",omitempty"`
	Labels  map[string]string `json:",omitempty"` // Compose's for a project's volume
	Project string            `json:",omitempty"`
}

// Of returns r's volume, or nil when r is not a volume.
func Of(r *spec.Resource) *Volume {
	v, _ := r.Object.(*Volume)
	return v
}

// Clone implements spec.Object.
func (v *Volume) Clone() spec.Object {
	c := *v
	c.Options = maps.Clone(v.Options)
	c.Labels = maps.Clone(v.Labels)
	return &c
}

// Canonical implements spec.Object.
func (v *Volume) Canonical() any { return v }

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func checkName(s string) error {
	if !nameRE.MatchString(s) || len(s) > 255 {
		return fmt.Errorf("%q is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", s)
	}
	return nil
}

func decode(d *spec.Decoder, f map[string]spec.Field) bool {
	v := &Volume{Driver: "local"}
	d.Resource().Object = v
	n, ok := d.Name("name", checkName)
	if !ok {
		return false
	}
	v.Name = n
	if !d.Has("prune") {
		// Removing a volume removes its data: only on request.
		d.Resource().Prune = false
	}
	d.String("driver", &v.Driver, docker.CheckDriver)
	v.Options = d.Map("options", nil)
	v.Labels = d.Map("labels", docker.CheckLabel)
	d.String("project", &v.Project, docker.CheckProject)
	v.Labels = docker.ProjectLabels(v.Labels, v.Project, LabelComposeVolume, v.Name)
	return true
}

// api is the part of the Engine API client that the driver uses.
type api interface {
	VolumeCreate(ctx context.Context, options volume.CreateOptions) (volume.Volume, error)
	VolumeInspect(ctx context.Context, volumeID string) (volume.Volume, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
}

// Driver converges volumes.
type Driver struct {
	api api
	log *slog.Logger
}

// New connects to the Docker engine at host (empty: DOCKER_HOST or the
// default) and checks that it answers.
func New(ctx context.Context, host string, log *slog.Logger) (*Driver, error) {
	cli, err := docker.Connect(ctx, host)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{api: cli, log: log}, nil
}

// labels are the labels the volume of v is created with.
func labels(v *Volume) map[string]string {
	return docker.ObjectLabels(spec.ID{Kind: Kind, Name: v.Name}, v.Labels)
}

// CheckApply implements converge.Driver: it creates the volume when it is
// missing, and reports what differs in one that exists.
func (d *Driver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	v := Of(r)
	if v == nil {
		return spec.Change{}, fmt.Errorf("%s: not a volume resource", r.ID)
	}
	cur, err := d.api.VolumeInspect(ctx, v.Name)
	if errdefs.IsNotFound(err) {
		ch := spec.Change{Action: spec.ActionCreate}
		if !apply {
			return ch, nil
		}
		if _, err := d.api.VolumeCreate(ctx, volume.CreateOptions{
			Name: v.Name, Driver: v.Driver, DriverOpts: v.Options, Labels: labels(v),
		}); err != nil {
			return ch, fmt.Errorf("volume %s: create: %w", v.Name, err)
		}
		d.log.Info("volume created", "resource", r.ID.String())
		return ch, nil
	}
	if err != nil {
		return spec.Change{}, fmt.Errorf("volume %s: inspect: %w", v.Name, err)
	}
	owned := cur.Labels[docker.LabelManaged] == "true"
	if !owned && !r.Adopt {
		return spec.Change{}, fmt.Errorf("volume %s: %w: set adopt: true to use it as it is (it is then never removed), or remove it", v.Name, ErrNotOwned)
	}
	if fields := differs(v, &cur, owned); len(fields) > 0 {
		return spec.Change{Action: spec.ActionUpdate, Fields: fields},
			fmt.Errorf("volume %s: %w: %s: recreating it would lose its data; remove it by hand (docker volume rm %s) or give the manifest another name",
				v.Name, ErrChanged, strings.Join(fields, ", "), v.Name)
	}
	return spec.Change{Action: spec.ActionNone}, nil
}

// differs lists what of cur differs from v: the driver and its options, and
// the labels of a volume Outpost created (an adopted one keeps its own).
func differs(v *Volume, cur *volume.Volume, owned bool) []string {
	var out []string
	if cur.Driver != v.Driver {
		out = append(out, fmt.Sprintf("driver %s, want %s", cur.Driver, v.Driver))
	}
	if !maps.Equal(cur.Options, v.Options) && (len(cur.Options) > 0 || len(v.Options) > 0) {
		out = append(out, "options "+mapString(cur.Options)+", want "+mapString(v.Options))
	}
	if owned && !maps.Equal(cur.Labels, labels(v)) {
		out = append(out, "labels")
	}
	return out
}

func mapString(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Remove implements converge.Driver: the engine calls it only for a volume
// whose manifest said prune: true. A volume that a container still uses is
// not removed, and one that Outpost did not create is left alone.
func (d *Driver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	cur, err := d.api.VolumeInspect(ctx, id.Name)
	if errdefs.IsNotFound(err) {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	if err != nil {
		return spec.Change{}, fmt.Errorf("volume %s: inspect: %w", id.Name, err)
	}
	if cur.Labels[docker.LabelManaged] != "true" {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	ch := spec.Change{Action: spec.ActionDelete}
	if !apply {
		return ch, nil
	}
	if err := d.api.VolumeRemove(ctx, id.Name, false); err != nil && !errdefs.IsNotFound(err) {
		return ch, fmt.Errorf("volume %s: remove: %w", id.Name, err)
	}
	d.log.Info("volume removed", "resource", id.String())
	return ch, nil
}
