package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/outpost-gitops/outpost/internal/hostpath"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/network"
	"github.com/outpost-gitops/outpost/internal/targets/volume"
)

// defaultEngineSockets are where the Docker engine's socket lives when
// DOCKER_HOST does not say otherwise.
var defaultEngineSockets = []string{"/run/docker.sock", "/var/run/docker.sock"}

// containerPolicy decides, before any driver runs, whether the containers
// of a desired state ask for what the agent's configuration does not allow.
// It decides on what the engine will do, not on how a commit spells it: the
// network mode and networks the driver will give the engine, and every bind
// source as the host resolves it.
type containerPolicy struct {
	allow ContainersConfig
	// engineSockets are the paths of the Docker engine's socket; a bind
	// reaching the same file needs allow_docker_socket.
	engineSockets []string
	// own are the agent's configuration directory, credentials and state:
	// a container that could rewrite them could lift this policy.
	own    []string
	limits hostpath.Limits
}

// newContainerPolicy is the policy of cfg on this host.
func newContainerPolicy(cfg *Config) *containerPolicy {
	p := &containerPolicy{allow: cfg.Containers, engineSockets: slices.Clone(defaultEngineSockets)}
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok && h != "" {
		p.engineSockets = append(p.engineSockets, h)
	}
	// The default configuration's directory too: an agent that runs
	// without a file reads the one that a container would write there.
	p.own = append(p.own, filepath.Dir(DefaultConfigPath))
	if cfg.File != "" {
		if abs, err := filepath.Abs(cfg.File); err == nil {
			p.own = append(p.own, filepath.Dir(abs))
		}
	}
	a, v := cfg.Source.Auth, cfg.Source.Verify
	for _, f := range []string{cfg.StateDir, a.SSHKeyFile, a.KnownHostsFile, a.PasswordFile, a.TokenFile, a.CAFile, v.AllowedSigners, v.OpenPGPKeyring} {
		if filepath.IsAbs(f) {
			p.own = append(p.own, filepath.Clean(f))
		}
	}
	return p
}

// refusal is one thing a container may not have: what it is, and the
// setting that would allow it ("" when none does).
type refusal struct {
	what, option string
}

func (r refusal) message(id spec.ID) string {
	if r.option == "" {
		return fmt.Sprintf("%s: %s is not allowed on this host (no setting of the agent's configuration allows it)", id, r.what)
	}
	return fmt.Sprintf("%s: %s is not allowed on this host (set containers.%s: true in the agent's configuration to allow it)", id, r.what, r.option)
}

// check refuses the whole desired state when a container asks for what the
// configuration does not allow. Like allowed paths, it runs before anything
// changes.
func (p *containerPolicy) check(desired *spec.State) error {
	var errs spec.Errors
	host := p.hostFacts()
	for _, r := range desired.Resources {
		var refused []refusal
		switch {
		case volume.Of(r) != nil:
			refused = p.volume(volume.Of(r), host)
		case network.Of(r) != nil:
			if d := network.Of(r).Driver; d != "bridge" {
				refused = append(refused, refusal{fmt.Sprintf("driver: %s (a network beyond the engine's own bridges, on the host's interfaces or a plugin's)", d), "allow_privileged"})
			}
		}
		c := docker.Of(r)
		if r.ID.Kind != docker.Kind || c == nil {
			p.refuse(&errs, r, refused)
			continue
		}
		refused = append(refused, p.privileges(c)...)
		for _, v := range c.Volumes {
			// A secret's bind is the agent's own file, written
			// under its run directory, read-only.
			if !v.Named && !v.Secret {
				refused = append(refused, p.bind(v.Source, host)...)
			}
		}
		refused = append(refused, p.logSockets(c)...)
		p.refuse(&errs, r, refused)
	}
	if len(errs) == 0 {
		return nil
	}
	errs.Sort()
	return errs
}

// refuse adds an error for each of refused that the configuration does not
// allow.
func (p *containerPolicy) refuse(errs *spec.Errors, r *spec.Resource, refused []refusal) {
	for _, f := range refused {
		if f.option == "" || !p.allows(f.option) {
			*errs = append(*errs, &spec.Error{Pos: r.Pos, Msg: f.message(r.ID)})
		}
	}
}

// volume lists what a volume asks of the host. The local driver's options
// are mount(8)'s: a tmpfs is memory, as a container's tmpfs is; "o: bind"
// with a device is a bind mount of that host path, checked as a
// container's bind is (a named volume would otherwise reach what
// allowed_binds refuses); any other device or file system type mounts a
// disk or a network share; another driver is a plugin.
func (p *containerPolicy) volume(v *volume.Volume, host hostFacts) []refusal {
	const opt = "allow_privileged"
	if v.Driver != "local" {
		return []refusal{{fmt.Sprintf("driver: %s (a volume plugin)", v.Driver), opt}}
	}
	typ, dev := v.Options["type"], v.Options["device"]
	bind := slices.ContainsFunc(strings.Split(v.Options["o"], ","), func(o string) bool {
		return o == "bind" || o == "rbind"
	})
	switch {
	case len(v.Options) == 0, typ == "tmpfs" && (dev == "" || dev == "tmpfs") && !bind:
		return nil
	case bind && filepath.IsAbs(dev):
		return p.bind(dev, host)
	case bind:
		return []refusal{{fmt.Sprintf("options: a bind of %q, which is not an absolute path", dev), ""}}
	}
	return []refusal{{fmt.Sprintf("options: a mount of type %q from %q", typ, dev), opt}}
}

// allows reports whether the configuration sets option.
func (p *containerPolicy) allows(option string) bool {
	switch option {
	case "allow_privileged":
		return p.allow.AllowPrivileged
	case "allow_docker_socket":
		return p.allow.AllowDockerSocket
	case "allow_sockets":
		return p.allow.AllowSockets
	}
	return false
}

// privileges lists what c asks of the host's kernel and namespaces.
func (p *containerPolicy) privileges(c *docker.Container) []refusal {
	const opt = "allow_privileged"
	var out []refusal
	if c.Privileged {
		out = append(out, refusal{"privileged: true", opt})
	}
	// The driver's own reading of network_mode and networks: the first
	// network is the mode, and the others are joined after create.
	mode := docker.NetworkMode(c)
	switch {
	case mode == "host" && c.NetworkMode == "host":
		out = append(out, refusal{"network_mode: host", opt})
	case mode == "host" || slices.Contains(docker.Networks(c), "host"):
		out = append(out, refusal{"networks: host (the host's network)", opt})
	case strings.HasPrefix(mode, "container:"):
		out = append(out, refusal{fmt.Sprintf("network_mode: %s (it shares that container's network, which may be the host's)", mode), opt})
	}
	if len(c.CapAdd) > 0 {
		out = append(out, refusal{"cap_add", opt})
	}
	if len(c.Devices) > 0 {
		out = append(out, refusal{"devices", opt})
	}
	// Every security option but no-new-privileges loosens the
	// confinement (seccomp=unconfined, apparmor=unconfined,
	// label=disable, systempaths=unconfined) or swaps its profile.
	for _, o := range c.SecurityOpt {
		if o != "no-new-privileges" && o != "no-new-privileges:true" {
			out = append(out, refusal{"security_opt: " + o, opt})
		}
	}
	return out
}

// logSockets refuses log options that make the engine, as root on the
// host, write to one of the host's unix sockets (syslog-address,
// fluentd-address, ...).
func (p *containerPolicy) logSockets(c *docker.Container) []refusal {
	if c.Log == nil {
		return nil
	}
	keys := make([]string, 0, len(c.Log.Options))
	for k := range c.Log.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []refusal
	for _, k := range keys {
		v := strings.ToLower(c.Log.Options[k])
		if strings.HasPrefix(v, "unix://") || strings.HasPrefix(v, "unixgram://") {
			out = append(out, refusal{fmt.Sprintf("log option %s: %s (a unix socket of the host)", k, c.Log.Options[k]), "allow_sockets"})
		}
	}
	return out
}

// hostFacts is what binds are compared with, read once per check.
type hostFacts struct {
	engine map[hostpath.ID]string // the engine socket's IDs, to its path
	// enginePaths are the engine socket's resolved paths.
	enginePaths []string
	own         []string // resolved
	allowed     []string // allowed_binds, resolved
}

func (p *containerPolicy) hostFacts() hostFacts {
	h := hostFacts{engine: map[hostpath.ID]string{}}
	for _, s := range p.engineSockets {
		if id, err := hostpath.IDOf(s); err == nil {
			h.engine[id] = s
		}
		h.enginePaths = append(h.enginePaths, resolved(s))
	}
	for _, o := range p.own {
		h.own = append(h.own, resolved(o))
	}
	for _, a := range p.allow.AllowedBinds {
		h.allowed = append(h.allowed, resolved(a))
	}
	return h
}

// resolved is p with its links followed, or p when it cannot be resolved.
func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// bind lists what a bind mount of source hands the container, resolved on
// this host.
func (p *containerPolicy) bind(source string, host hostFacts) []refusal {
	b, err := hostpath.Inspect(source, p.limits)
	if err != nil {
		// Neither a dangling link nor a magic link is bound as it
		// reads; an unreadable source cannot be checked.
		why := strings.TrimPrefix(err.Error(), filepath.Clean(source)+": ")
		return []refusal{{fmt.Sprintf("a bind mount of %s (%s)", source, why), ""}}
	}
	name := "a bind mount of " + source
	if b.Resolved != source {
		name += " (resolves to " + b.Resolved + ")"
	}
	var out []refusal
	if len(host.allowed) > 0 && !underAny(b.Resolved, host.allowed) {
		out = append(out, refusal{fmt.Sprintf("%s outside containers.allowed_binds (%s)", name, strings.Join(p.allow.AllowedBinds, ", ")), ""})
	}
	for _, o := range host.own {
		if within(b.Resolved, o) || within(o, b.Resolved) {
			out = append(out, refusal{fmt.Sprintf("%s, which reaches the agent's own %s,", name, o), ""})
			break
		}
	}
	const privileged = "allow_privileged"
	switch {
	case b.Resolved == "/":
		out = append(out, refusal{name + ", the host's root directory,", privileged})
		// What the walk of / met before its bound is chance; the
		// Docker socket is found by its path below, and the rest of
		// the root is allow_privileged's, which hands over the host
		// anyway.
		b.Sockets, b.Incomplete = nil, false
	case within(b.Source, "/proc") || within(b.Source, "/sys") || within(b.Resolved, "/proc") || within(b.Resolved, "/sys"):
		out = append(out, refusal{name + ", the host's kernel interface,", privileged})
	case len(b.Kernel) > 0:
		k := b.Kernel[0]
		out = append(out, refusal{fmt.Sprintf("%s, which holds the kernel filesystem %s at %s,", name, k.FS, k.Path), privileged})
	}
	return append(out, p.sockets(name, b, host)...)
}

// sockets refuses the unix sockets that a bind hands a container: the
// engine's needs allow_docker_socket, any other allow_sockets.
func (p *containerPolicy) sockets(name string, b *hostpath.Bind, host hostFacts) []refusal {
	var out []refusal
	engine := ""
	for _, e := range host.enginePaths {
		if within(e, b.Resolved) {
			engine = e
		}
	}
	var other []string
	for _, s := range b.Sockets {
		if _, ok := host.engine[s.ID]; ok {
			engine = s.Path
			continue
		}
		other = append(other, s.Path)
	}
	switch {
	case engine == b.Resolved:
		out = append(out, refusal{"a bind mount of " + b.Source + " (the Docker socket)", "allow_docker_socket"})
	case engine != "":
		out = append(out, refusal{fmt.Sprintf("%s, which holds the Docker socket %s,", name, engine), "allow_docker_socket"})
	}
	switch {
	case len(other) == 1 && other[0] == b.Resolved:
		out = append(out, refusal{name + ", a unix socket,", "allow_sockets"})
	case len(other) > 0:
		more := ""
		if len(other) > 1 {
			more = fmt.Sprintf(" and %d more", len(other)-1)
		}
		out = append(out, refusal{fmt.Sprintf("%s, which holds the unix socket %s%s,", name, other[0], more), "allow_sockets"})
	}
	if b.Incomplete {
		lim := p.limits
		if lim == (hostpath.Limits{}) {
			lim = hostpath.DefaultLimits
		}
		out = append(out, refusal{fmt.Sprintf("%s, a tree too large to check for sockets (over %d entries or %d levels),", name, lim.Entries, lim.Depth), "allow_sockets"})
	}
	return out
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool { return underAny(path, []string{dir}) }
