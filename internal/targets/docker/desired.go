package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
)

// imageRef is the reference a container runs: image@digest when a digest is
// pinned (exactly that digest, without the tag, which is what Docker then
// records in Config.Image and what running containers are compared with),
// else image:tag.
func imageRef(c *Container) string {
	if c.Digest != "" {
		return Reference(c.Image, "", c.Digest)
	}
	return c.Ref()
}

// specHash hashes the normalized container spec, the one canonical form
// of a container (Canonical returns it too, for spec.Resource.Hash). Its
// value is the label that every existing container carries and that tells
// a changed spec from an unchanged one, so it must not change for an
// unchanged spec: a new value would recreate every container on upgrade.
func specHash(c *Container) string {
	b, err := json.Marshal(c.normalized()) // maps marshal with sorted keys
	if err != nil {
		panic(fmt.Sprintf("docker: hash of a container spec: %v", err)) // plain data always marshals
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// normalized is what the container runs, not how its image is followed
// (no update policy), with what Docker does not order put in order:
// reordering ports, volumes, tmpfs, devices or capabilities changes
// nothing on the host.
func (c *Container) normalized() *Container {
	n := *c
	n.Update = nil
	n.Ports = append([]Port(nil), c.Ports...)
	sort.Slice(n.Ports, func(i, j int) bool { return portKey(n.Ports[i]) < portKey(n.Ports[j]) })
	n.Volumes = append([]Volume(nil), c.Volumes...)
	sort.Slice(n.Volumes, func(i, j int) bool { return n.Volumes[i].Target < n.Volumes[j].Target })
	n.Tmpfs = sortedCopy(c.Tmpfs)
	n.Devices = sortedCopy(c.Devices)
	n.CapAdd = normCaps(c.CapAdd)
	n.CapDrop = normCaps(c.CapDrop)
	if len(c.SecretEnv) > 0 {
		// A secret's value is digested by its keyed hash, never as it
		// is: the spec hash is a label that docker inspect shows.
		n.Env = maps.Clone(c.Env)
		n.SecretEnvDigests = map[string]string{}
		for name := range c.SecretEnv {
			delete(n.Env, name)
			n.SecretEnvDigests[name] = c.SecretEnvDigests[name]
			if n.SecretEnvDigests[name] == "" {
				// Not sealed (outpost plan, without a host's key):
				// the value is ciphertext.
				sum := sha256.Sum256([]byte(c.Env[name]))
				n.SecretEnvDigests[name] = hex.EncodeToString(sum[:])
			}
		}
	}
	return &n
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func portKey(p Port) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	ip := p.HostIP
	if ip == "0.0.0.0" {
		ip = ""
	}
	hp := ""
	if p.HostPort != 0 {
		hp = strconv.Itoa(int(p.HostPort))
	}
	return fmt.Sprintf("%s:%s:%d/%s", ip, hp, p.ContainerPort, proto)
}

func normCaps(caps []string) []string {
	if len(caps) == 0 {
		return nil
	}
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

func parseRestart(s string) container.RestartPolicy {
	name, n, _ := strings.Cut(s, ":")
	if name == "" {
		name = "no"
	}
	max, _ := strconv.Atoi(n)
	return container.RestartPolicy{Name: container.RestartPolicyMode(name), MaximumRetryCount: max}
}

func restartString(p container.RestartPolicy) string {
	name := string(p.Name)
	if name == "" {
		name = "no"
	}
	if p.MaximumRetryCount > 0 {
		return name + ":" + strconv.Itoa(p.MaximumRetryCount)
	}
	return name
}

func parseDevice(s string) container.DeviceMapping {
	parts := strings.SplitN(s, ":", 3)
	d := container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
	if len(parts) > 1 && parts[1] != "" {
		// host:perms is allowed too, when the second part is only r, w, m.
		if len(parts) == 2 && strings.Trim(parts[1], "rwm") == "" {
			d.CgroupPermissions = parts[1]
		} else {
			d.PathInContainer = parts[1]
		}
	}
	if len(parts) > 2 && parts[2] != "" {
		d.CgroupPermissions = parts[2]
	}
	return d
}

func deviceString(d container.DeviceMapping) string {
	perms := d.CgroupPermissions
	if perms == "" {
		perms = "rwm"
	}
	in := d.PathInContainer
	if in == "" {
		in = d.PathOnHost
	}
	return d.PathOnHost + ":" + in + ":" + perms
}

func parseTmpfs(list []string) map[string]string {
	if len(list) == 0 {
		return nil
	}
	m := make(map[string]string, len(list))
	for _, t := range list {
		p, o, _ := strings.Cut(t, ":")
		m[p] = o
	}
	return m
}

func volumeString(source, target string, ro bool) string {
	mode := "rw"
	if ro {
		mode = "ro"
	}
	return source + ":" + target + ":" + mode
}

func healthTest(cmd []string) []string {
	if len(cmd) == 0 {
		return nil
	}
	switch cmd[0] {
	case "CMD", "CMD-SHELL", "NONE":
		return cmd
	}
	return append([]string{"CMD"}, cmd...)
}

func nanoCPUs(cpus float64) int64 { return int64(math.Round(cpus * 1e9)) }

func stopTimeoutSeconds(c *Container) *int {
	if c.StopTimeout == nil {
		return nil
	}
	s := int(math.Ceil(c.StopTimeout.Seconds()))
	return &s
}

// NetworkMode is the HostConfig.NetworkMode that the driver gives the
// engine for c: its network_mode, else its first network, else bridge. The
// agent's container policy decides on this value and on Networks, so that
// what is checked is what the engine is asked for.
func NetworkMode(c *Container) string {
	switch {
	case c.NetworkMode != "":
		return c.NetworkMode
	case len(c.Networks) > 0:
		return c.Networks[0]
	}
	return "bridge"
}

// attachable reports whether a network mode joins networks (bridge or a
// named network), as opposed to host, none and container:NAME.
func attachable(mode string) bool {
	return mode != "host" && mode != "none" && !strings.HasPrefix(mode, "container:")
}

// Networks lists the networks that the driver joins c to, sorted; nil for
// host, none and container: modes.
func Networks(c *Container) []string {
	mode := NetworkMode(c)
	if !attachable(mode) {
		return nil
	}
	set := map[string]bool{mode: true}
	for _, n := range c.Networks {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ownLabels are the labels Outpost adds to a container.
func ownLabels(c *Container, hash, digest string) map[string]string {
	l := map[string]string{
		LabelManaged:       "true",
		LabelResource:      c.Name,
		LabelSpecHash:      hash,
		LabelRemoveVolumes: strconv.FormatBool(c.RemoveVolumes),
	}
	if digest != "" {
		l[LabelImageDigest] = digest
	}
	if c.SecretsDigest != "" {
		l[LabelSecrets] = c.SecretsDigest
	}
	return l
}

// createConfig builds what ContainerCreate takes for c. It joins the first
// of its networks at create; the others are connected before start (the
// engine's API before 1.44 takes one endpoint at create).
//
// It is long because it is a flat mapping of every field of a container
// resource onto the engine's three structs, with no branching worth a
// function of its own.
func createConfig(c *Container, hash, digest string) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	labels := map[string]string{}
	for k, v := range c.Labels {
		labels[k] = v
	}
	for k, v := range ownLabels(c, hash, digest) {
		labels[k] = v
	}
	env := make([]string, 0, len(c.Env))
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)

	cfg := &container.Config{
		Image:       imageRef(c),
		Env:         env,
		Labels:      labels,
		User:        c.User,
		WorkingDir:  c.Workdir,
		StopSignal:  c.StopSignal,
		StopTimeout: stopTimeoutSeconds(c),
		Hostname:    c.Hostname,
		Tty:         c.TTY,
	}
	if len(c.Command) > 0 {
		cfg.Cmd = c.Command
	}
	if len(c.Entrypoint) > 0 {
		cfg.Entrypoint = c.Entrypoint
	}
	if h := c.Health; h != nil {
		cfg.Healthcheck = &container.HealthConfig{
			Test: healthTest(h.Cmd), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
	}

	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(NetworkMode(c)),
		RestartPolicy:  parseRestart(c.Restart),
		Privileged:     c.Privileged,
		CapAdd:         c.CapAdd,
		CapDrop:        c.CapDrop,
		Tmpfs:          parseTmpfs(c.Tmpfs),
		ReadonlyRootfs: c.ReadOnly,
		ExtraHosts:     c.ExtraHosts,
		DNS:            c.DNS,
		SecurityOpt:    c.SecurityOpt,
		GroupAdd:       c.GroupAdd,
		Sysctls:        c.Sysctls,
	}
	host.CpusetCpus = c.Cpuset
	host.ShmSize = c.ShmSize
	for _, u := range c.Ulimits {
		host.Ulimits = append(host.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if c.PidsLimit > 0 {
		host.PidsLimit = &c.PidsLimit
	}
	if c.Init {
		host.Init = &c.Init
	}
	host.Memory = c.Memory
	host.NanoCPUs = nanoCPUs(c.CPUs)
	if len(c.Ports) > 0 {
		cfg.ExposedPorts = nat.PortSet{}
		host.PortBindings = nat.PortMap{}
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			port := nat.Port(fmt.Sprintf("%d/%s", p.ContainerPort, proto))
			cfg.ExposedPorts[port] = struct{}{}
			hp := ""
			if p.HostPort != 0 {
				hp = strconv.Itoa(int(p.HostPort))
			}
			host.PortBindings[port] = append(host.PortBindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: hp})
		}
	}
	for _, e := range c.Expose {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = nat.PortSet{}
		}
		cfg.ExposedPorts[nat.Port(e)] = struct{}{}
	}
	for _, v := range c.Volumes {
		b := v.Source + ":" + v.Target
		if v.ReadOnly {
			b += ":ro"
		}
		host.Binds = append(host.Binds, b)
	}
	for _, dv := range c.Devices {
		host.Devices = append(host.Devices, parseDevice(dv))
	}
	if l := c.Log; l != nil {
		host.LogConfig = container.LogConfig{Type: l.Driver, Config: l.Options}
	}
	var nc *network.NetworkingConfig
	if mode := NetworkMode(c); attachable(mode) && mode != "bridge" {
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{mode: endpointSettings(c, mode)}}
	}
	return cfg, host, nc
}

// endpointSettings is how c joins network n: its aliases and static
// addresses there, if any.
func endpointSettings(c *Container, n string) *network.EndpointSettings {
	ep, ok := c.Endpoints[n]
	if !ok {
		return &network.EndpointSettings{}
	}
	es := &network.EndpointSettings{Aliases: slices.Clone(ep.Aliases)}
	if ep.IPv4 != "" || ep.IPv6 != "" {
		es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ep.IPv4, IPv6Address: ep.IPv6}
	}
	return es
}
