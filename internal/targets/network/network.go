// Package network owns the network kind: a Docker network with its driver,
// options, IPAM and labels, created over the Engine API and labelled as
// Outpost's, with drift checks.
//
// The engine cannot change a network in place. A network that differs from
// its manifest is recreated: the containers on it, which must all be
// Outpost's, are disconnected, and connected again to the new network with
// the aliases and addresses they had. A network that a container Outpost
// does not own uses is left as it is and reported.
//
// network imports spec, converge (to register the kind), the container
// kind (for the labels it shares) and the Docker client libraries.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"gopkg.in/yaml.v3"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// Kind is the network kind.
const Kind spec.Kind = "network"

// Errors a network fails with; test for them with errors.Is.
var (
	// ErrNotOwned: a network of the name exists and Outpost did not
	// create it.
	ErrNotOwned = errors.New("network exists and Outpost did not create it")
	// ErrInUse: the network differs, or left the desired state, and a
	// container that Outpost does not own uses it; it is left as it is.
	ErrInUse = errors.New("network is used by a container that Outpost does not own")
)

func init() {
	converge.Register(converge.Kind{KindDef: spec.KindDef{
		Name:   Kind,
		Order:  25, // before the containers that join it
		Fields: []string{"name", "driver", "options", "internal", "enable_ipv6", "ipam", "labels", "project"},
		Hints:  []string{"networks"},
		Decode: decode,
	}, NewDriver: func(ctx context.Context, env converge.Env) (converge.Driver, error) {
		return New(ctx, "", env.Logger)
	}})
}

// Network is a Docker network.
type Network struct {
	Name       string
	Driver     string            // "bridge" when the manifest names none
	Options    map[string]string `json:",omitempty"`
	Internal   bool              `json:",omitempty"`
	EnableIPv6 bool              `json:",omitempty"`
	IPAMDriver string            `json:",omitempty"` // "" is the engine's default
	Subnets    []Subnet          `json:",omitempty"` // sorted by Subnet
	Labels     map[string]string `json:",omitempty"` // Compose's for a project's network
	Project    string            `json:",omitempty"`
}

// Subnet is one IPAM pool of the network.
type Subnet struct {
	Subnet  string
	Gateway string `json:",omitempty"`
	IPRange string `json:",omitempty"`
}

// Of returns r's network, or nil when r is not a network.
func Of(r *spec.Resource) *Network {
	n, _ := r.Object.(*Network)
	return n
}

// Clone implements spec.Object.
func (n *Network) Clone() spec.Object {
	c := *n
	c.Options = maps.Clone(n.Options)
	c.Labels = maps.Clone(n.Labels)
	c.Subnets = slices.Clone(n.Subnets)
	return &c
}

// Canonical implements spec.Object.
func (n *Network) Canonical() any { return n }

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func checkName(s string) error {
	switch s {
	case "bridge", "host", "none", "default":
		return fmt.Errorf("%q is the engine's own network", s)
	}
	if !nameRE.MatchString(s) || len(s) > 255 {
		return fmt.Errorf("%q is not a network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", s)
	}
	return nil
}

func decode(d *spec.Decoder, f map[string]spec.Field) bool {
	n := &Network{Driver: "bridge"}
	d.Resource().Object = n
	name, ok := d.Name("name", checkName)
	if !ok {
		return false
	}
	n.Name = name
	d.String("driver", &n.Driver, docker.CheckDriver)
	n.Options = d.Map("options", nil)
	d.Boolean("internal", &n.Internal)
	d.Boolean("enable_ipv6", &n.EnableIPv6)
	if g, ok := f["ipam"]; ok {
		decodeIPAM(d, g, n)
	}
	n.Labels = d.Map("labels", docker.CheckLabel)
	d.String("project", &n.Project, docker.CheckProject)
	n.Labels = docker.ProjectLabels(n.Labels, n.Project, docker.LabelComposeNetwork, n.Name)
	return true
}

// decodeIPAM reads ipam: as Compose writes it: a driver, and config, a list
// of pools with a subnet and optionally a gateway and an ip_range inside it.
func decodeIPAM(d *spec.Decoder, g spec.Field, n *Network) {
	f, ok := d.Fields(g.At, "ipam", map[string]bool{"driver": true, "config": true})
	if !ok {
		return
	}
	if v, ok := f["driver"]; ok {
		n.IPAMDriver, _ = d.Str(v, "ipam.driver")
	}
	cfg, ok := f["config"]
	if !ok {
		return
	}
	if cfg.Val == nil || cfg.Val.Kind != yaml.SequenceNode || len(cfg.Val.Content) == 0 {
		d.Errorf(cfg.At, "ipam.config: must be a list of pools, each with a subnet")
		return
	}
	for i, item := range cfg.Val.Content {
		what := fmt.Sprintf("ipam.config[%d]", i)
		pf, ok := d.Fields(item, what, map[string]bool{"subnet": true, "gateway": true, "ip_range": true})
		if !ok {
			continue
		}
		var s Subnet
		var pool netip.Prefix
		for _, k := range []string{"subnet", "ip_range"} {
			v, ok := pf[k]
			if !ok {
				if k == "subnet" {
					d.Errorf(item, "%s: missing field \"subnet\"", what)
				}
				continue
			}
			str, ok := d.Str(v, what+"."+k)
			if !ok {
				continue
			}
			p, err := netip.ParsePrefix(str)
			if err != nil || p != p.Masked() {
				d.Errorf(v.At, "%s.%s: %q is not a network prefix such as 172.28.0.0/16", what, k, str)
				continue
			}
			if k == "subnet" {
				s.Subnet, pool = p.String(), p
			} else if pool.IsValid() && (!pool.Contains(p.Addr()) || p.Bits() < pool.Bits()) {
				d.Errorf(v.At, "%s.ip_range: %s is not inside the subnet %s", what, p, pool)
			} else {
				s.IPRange = p.String()
			}
		}
		if v, ok := pf["gateway"]; ok {
			if str, ok := d.Str(v, what+".gateway"); ok {
				a, err := netip.ParseAddr(str)
				switch {
				case err != nil:
					d.Errorf(v.At, "%s.gateway: %q is not an address", what, str)
				case pool.IsValid() && !pool.Contains(a):
					d.Errorf(v.At, "%s.gateway: %s is not inside the subnet %s", what, a, pool)
				default:
					s.Gateway = a.String()
				}
			}
		}
		if s.Subnet != "" {
			n.Subnets = append(n.Subnets, s)
		}
	}
	slices.SortFunc(n.Subnets, func(a, b Subnet) int { return strings.Compare(a.Subnet, b.Subnet) })
}

// api is the part of the Engine API client that the driver uses.
type api interface {
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkDisconnect(ctx context.Context, networkID, containerID string, force bool) error
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	NetworkRemove(ctx context.Context, networkID string) error
}

// Driver converges networks.
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

// labels are the labels the network of n is created with.
func labels(n *Network) map[string]string {
	return docker.ObjectLabels(spec.ID{Kind: Kind, Name: n.Name}, n.Labels)
}

func createOptions(n *Network) network.CreateOptions {
	o := network.CreateOptions{
		Driver:     n.Driver,
		Options:    n.Options,
		Internal:   n.Internal,
		EnableIPv6: &n.EnableIPv6,
		Labels:     labels(n),
	}
	if n.IPAMDriver != "" || len(n.Subnets) > 0 {
		o.IPAM = &network.IPAM{Driver: n.IPAMDriver}
		for _, s := range n.Subnets {
			o.IPAM.Config = append(o.IPAM.Config, network.IPAMConfig{Subnet: s.Subnet, Gateway: s.Gateway, IPRange: s.IPRange})
		}
	}
	return o
}

// CheckApply implements converge.Driver: it creates the network when it is
// missing, and recreates it, its containers connected again, when it
// differs.
func (d *Driver) CheckApply(ctx context.Context, r *spec.Resource, apply bool) (spec.Change, error) {
	n := Of(r)
	if n == nil {
		return spec.Change{}, fmt.Errorf("%s: not a network resource", r.ID)
	}
	cur, err := d.api.NetworkInspect(ctx, n.Name, network.InspectOptions{})
	if err == nil && cur.Name != n.Name {
		// Found by ID or an ID's prefix: another network.
		err = errdefs.NotFound(errors.New("no network of that name"))
	}
	if errdefs.IsNotFound(err) {
		ch := spec.Change{Action: spec.ActionCreate}
		if !apply {
			return ch, nil
		}
		if _, err := d.api.NetworkCreate(ctx, n.Name, createOptions(n)); err != nil {
			return ch, fmt.Errorf("network %s: create: %w", n.Name, err)
		}
		d.log.Info("network created", "resource", r.ID.String())
		return ch, nil
	}
	if err != nil {
		return spec.Change{}, fmt.Errorf("network %s: inspect: %w", n.Name, err)
	}
	if cur.Labels[docker.LabelManaged] != "true" {
		return spec.Change{}, fmt.Errorf("network %s: %w: remove it, or give the manifest another name", n.Name, ErrNotOwned)
	}
	fields := differs(n, &cur)
	if len(fields) == 0 {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	ch := spec.Change{Action: spec.ActionUpdate, Fields: fields}
	if !apply {
		return ch, nil
	}
	return ch, d.recreate(ctx, n, &cur)
}

// differs lists what of cur differs from n. Without ipam: the engine's
// choice of subnet is not compared.
func differs(n *Network, cur *network.Inspect) []string {
	var out []string
	if cur.Driver != n.Driver {
		out = append(out, "driver")
	}
	if !maps.Equal(cur.Options, n.Options) && (len(cur.Options) > 0 || len(n.Options) > 0) {
		out = append(out, "options")
	}
	if cur.Internal != n.Internal {
		out = append(out, "internal")
	}
	if cur.EnableIPv6 != n.EnableIPv6 {
		out = append(out, "enable_ipv6")
	}
	if n.IPAMDriver != "" && cur.IPAM.Driver != n.IPAMDriver {
		out = append(out, "ipam.driver")
	}
	if len(n.Subnets) > 0 {
		var got []Subnet
		for _, c := range cur.IPAM.Config {
			got = append(got, Subnet{Subnet: c.Subnet, Gateway: c.Gateway, IPRange: c.IPRange})
		}
		slices.SortFunc(got, func(a, b Subnet) int { return strings.Compare(a.Subnet, b.Subnet) })
		want := slices.Clone(n.Subnets)
		for i := range want {
			if want[i].Gateway == "" && i < len(got) {
				want[i].Gateway = got[i].Gateway // the engine's choice
			}
		}
		if !slices.Equal(got, want) {
			out = append(out, "ipam.config")
		}
	}
	if !maps.Equal(cur.Labels, labels(n)) {
		out = append(out, "labels")
	}
	return out
}

// recreate removes cur and creates n in its place, with the containers that
// were on it connected again with their aliases and addresses. It touches
// nothing when a container that Outpost does not own is on it.
func (d *Driver) recreate(ctx context.Context, n *Network, cur *network.Inspect) error {
	type member struct {
		id string
		ep *network.EndpointSettings
	}
	var members []member
	for id := range cur.Containers {
		in, err := d.api.ContainerInspect(ctx, id)
		if err != nil {
			return fmt.Errorf("network %s: container %s: %w", n.Name, id, err)
		}
		if in.Config == nil || in.Config.Labels[docker.LabelManaged] != "true" {
			return fmt.Errorf("network %s: %w (%s): it is left as it is", n.Name, ErrInUse, strings.TrimPrefix(in.Name, "/"))
		}
		ep := &network.EndpointSettings{}
		if in.NetworkSettings != nil && in.NetworkSettings.Networks[n.Name] != nil {
			old := in.NetworkSettings.Networks[n.Name]
			ep.Aliases = slices.DeleteFunc(slices.Clone(old.Aliases), func(a string) bool {
				return strings.HasPrefix(in.ID, a) // the engine's own alias, the short ID
			})
			ep.IPAMConfig = old.IPAMConfig
		}
		members = append(members, member{in.ID, ep})
	}
	for _, m := range members {
		if err := d.api.NetworkDisconnect(ctx, cur.ID, m.id, true); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("network %s: disconnect %s: %w", n.Name, m.id[:12], err)
		}
	}
	if err := d.api.NetworkRemove(ctx, cur.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("network %s: remove the old network: %w", n.Name, err)
	}
	_, err := d.api.NetworkCreate(ctx, n.Name, createOptions(n))
	if err != nil {
		err = fmt.Errorf("network %s: create: %w", n.Name, err)
	}
	var errs []error
	for _, m := range members {
		if cerr := d.api.NetworkConnect(ctx, n.Name, m.id, m.ep); cerr != nil {
			errs = append(errs, fmt.Errorf("network %s: connect %s again: %w", n.Name, m.id[:12], cerr))
		}
	}
	d.log.Info("network recreated", "resource", string(Kind)+":"+n.Name, "containers", len(members))
	return errors.Join(append([]error{err}, errs...)...)
}

// Remove implements converge.Driver: an owned network is removed when no
// container is on it any more; the containers that left with it were
// removed before it (the container kind comes later in apply order, so
// earlier in prune order).
func (d *Driver) Remove(ctx context.Context, id spec.ID, apply bool) (spec.Change, error) {
	cur, err := d.api.NetworkInspect(ctx, id.Name, network.InspectOptions{})
	if errdefs.IsNotFound(err) || (err == nil && cur.Name != id.Name) {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	if err != nil {
		return spec.Change{}, fmt.Errorf("network %s: inspect: %w", id.Name, err)
	}
	if cur.Labels[docker.LabelManaged] != "true" {
		return spec.Change{Action: spec.ActionNone}, nil
	}
	ch := spec.Change{Action: spec.ActionDelete}
	if !apply {
		return ch, nil
	}
	if len(cur.Containers) > 0 {
		var names []string
		for _, c := range cur.Containers {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		return ch, fmt.Errorf("network %s: still used by %s: it stays until they leave it", id.Name, strings.Join(names, ", "))
	}
	if err := d.api.NetworkRemove(ctx, cur.ID); err != nil && !errdefs.IsNotFound(err) {
		return ch, fmt.Errorf("network %s: remove: %w", id.Name, err)
	}
	d.log.Info("network removed", "resource", id.String())
	return ch, nil
}
