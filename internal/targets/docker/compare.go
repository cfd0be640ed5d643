package docker

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
)

// view is a container's configuration reduced to what a spec sets, in one
// normal form, so that the desired and the observed container compare field
// by field.
type view struct {
	Name       string
	State      string // running, stopped or paused
	Image      string // the reference
	ImageID    string // the local image's ID; empty when it is not pulled
	Entrypoint []string
	Cmd        []string
	Env        map[string]string
	Ports      []string // hostIP:hostPort:containerPort/proto
	Volumes    []string // source:target:rw|ro
	Tmpfs      map[string]string
	Restart    string
	Labels     map[string]string // without Outpost's own
	User       string
	Workdir    string
	Network    string
	Networks   []string
	Devices    []string
	CapAdd     []string
	CapDrop    []string
	Privileged bool
	Health     healthView
	LogDriver  string
	LogOptions map[string]string
	Memory     int64
	NanoCPUs   int64
	StopTime   string // seconds, or "" for the engine's default
	StopSignal string
	// RemoveVolumes is the io.outpost.remove-volumes label.
	RemoveVolumes string
	// Secrets is the io.outpost.secrets label: the secret files' keyed
	// hash.
	Secrets string
	// Hostname is "" for the engine's default (the ID's first 12
	// characters), and under another network's name.
	Hostname   string
	ExtraHosts []string // sorted
	DNS        []string
	ReadOnly   bool
	Init       bool
	TTY        bool
	// Isolation, each as the engine reports it; PidsLimit 0 is none.
	SecurityOpt []string
	GroupAdd    []string
	PidsLimit   int64
	Sysctls     map[string]string
	Cpuset      string
	// ShmSize and Ulimits as the spec sets them; the engine reports its
	// defaults too, which only the spec's must match.
	ShmSize int64
	Ulimits []string // "name=soft:hard", sorted
	// Expose is the ports the spec exposes; the engine adds the image's
	// and the published ones.
	Expose []string
	// Endpoints are the aliases and static addresses by network: the
	// spec's, and what the engine reports of those networks (with the
	// aliases it adds itself).
	Endpoints map[string]Endpoint
}

type healthView struct {
	Test                                    string
	Interval, Timeout, StartPeriod, Retries string
}

func (h healthView) String() string {
	if h.Test == "" {
		return "none"
	}
	return h.Test
}

// healthText formats a healthcheck for a field line.
func healthText(h healthView) string {
	if h.Test == "" {
		return "none"
	}
	return fmt.Sprintf("{test %s interval %s timeout %s start_period %s retries %s}",
		quoted(strings.Split(h.Test, "\x00")), or(h.Interval, "default"), or(h.Timeout, "default"), or(h.StartPeriod, "default"), or(h.Retries, "default"))
}

// expected is the view of the container that c asks for, on an image whose
// configuration is img (nil when the image is not pulled yet), as the engine
// merges the two at create. logDriver is the engine's default.
//
// It is one field-by-field mapping, in the order of view's fields; split,
// each part would need the same five arguments and be read against view
// anyway.
func expected(c *Container, img *image.InspectResponse, logDriver string) view {
	var ic container.Config
	imageID := ""
	if img != nil {
		imageID = img.ID
		if img.Config != nil {
			ic.Entrypoint = img.Config.Entrypoint
			ic.Cmd = img.Config.Cmd
			ic.Env = img.Config.Env
			ic.Labels = img.Config.Labels
			ic.User = img.Config.User
			ic.WorkingDir = img.Config.WorkingDir
			ic.StopSignal = img.Config.StopSignal
			ic.Healthcheck = img.Config.Healthcheck
		}
	}
	v := view{
		Name:          c.Name,
		State:         "running",
		Image:         imageRef(c),
		ImageID:       imageID,
		Restart:       restartString(parseRestart(c.Restart)),
		Privileged:    c.Privileged,
		Memory:        c.Memory,
		NanoCPUs:      nanoCPUs(c.CPUs),
		Network:       NetworkMode(c),
		Networks:      Networks(c),
		CapAdd:        normCaps(c.CapAdd),
		CapDrop:       normCaps(c.CapDrop),
		Tmpfs:         parseTmpfs(c.Tmpfs),
		RemoveVolumes: strconv.FormatBool(c.RemoveVolumes),
		Secrets:       c.SecretsDigest,
		Hostname:      c.Hostname,
		ExtraHosts:    c.ExtraHosts,
		DNS:           c.DNS,
		ReadOnly:      c.ReadOnly,
		Init:          c.Init,
		TTY:           c.TTY,
		SecurityOpt:   securityOpts(c.SecurityOpt, c.Privileged),
		GroupAdd:      c.GroupAdd,
		PidsLimit:     c.PidsLimit,
		Sysctls:       c.Sysctls,
		Cpuset:        c.Cpuset,
		ShmSize:       c.ShmSize,
		Ulimits:       ulimitStrings(c.Ulimits),
		Expose:        c.Expose,
		Endpoints:     c.Endpoints,
	}
	// The engine takes the image's entrypoint unless one is given, and the
	// image's command only when neither is given.
	v.Entrypoint = c.Entrypoint
	v.Cmd = c.Command
	if len(c.Entrypoint) == 0 {
		v.Entrypoint = ic.Entrypoint
		if len(c.Command) == 0 {
			v.Cmd = ic.Cmd
		}
	}
	v.Env = envMap(ic.Env)
	for k, val := range c.Env {
		v.Env[k] = val
	}
	v.Labels = map[string]string{}
	maps.Copy(v.Labels, ic.Labels)
	maps.Copy(v.Labels, c.Labels)
	v.User = or(c.User, ic.User)
	v.Workdir = or(c.Workdir, ic.WorkingDir)
	v.StopSignal = normSignal(or(c.StopSignal, ic.StopSignal))
	if s := stopTimeoutSeconds(c); s != nil {
		v.StopTime = strconv.Itoa(*s)
	}
	for _, p := range c.Ports {
		v.Ports = append(v.Ports, portKey(p))
	}
	sort.Strings(v.Ports)
	for _, vol := range c.Volumes {
		v.Volumes = append(v.Volumes, volumeString(vol.Source, vol.Target, vol.ReadOnly))
	}
	sort.Strings(v.Volumes)
	for _, d := range c.Devices {
		v.Devices = append(v.Devices, deviceString(parseDevice(d)))
	}
	sort.Strings(v.Devices)

	// A spec's healthcheck takes the image's values for what it leaves
	// zero, as the engine does.
	var h container.HealthConfig
	if ic.Healthcheck != nil {
		h = *ic.Healthcheck
	}
	if sh := c.Health; sh != nil {
		if t := healthTest(sh.Cmd); len(t) > 0 {
			h.Test = t
		}
		if sh.Interval != 0 {
			h.Interval = sh.Interval
		}
		if sh.Timeout != 0 {
			h.Timeout = sh.Timeout
		}
		if sh.StartPeriod != 0 {
			h.StartPeriod = sh.StartPeriod
		}
		if sh.Retries != 0 {
			h.Retries = sh.Retries
		}
	}
	v.Health = healthOf(&h)

	v.LogDriver = logDriver
	if c.Log != nil && c.Log.Driver != "" {
		v.LogDriver = c.Log.Driver
	}
	if c.Log != nil && len(c.Log.Options) > 0 {
		v.LogOptions = maps.Clone(c.Log.Options)
	}
	return v
}

// observed is the view of a container as the engine reports it.
//
// Like expected, it is one mapping in the order of view's fields, kept
// whole so that the two read side by side.
func observed(in container.InspectResponse) view {
	v := view{ImageID: in.Image}
	if in.ContainerJSONBase != nil {
		v.Name = strings.TrimPrefix(in.Name, "/")
		v.State = "stopped"
		switch {
		case in.State == nil:
		case in.State.Paused:
			v.State = "paused"
		case in.State.Running:
			v.State = "running"
		}
	}
	if c := in.Config; c != nil {
		v.Image = c.Image
		v.Entrypoint = c.Entrypoint
		v.Cmd = c.Cmd
		v.Env = envMap(c.Env)
		v.Labels = map[string]string{}
		for k, val := range c.Labels {
			if strings.HasPrefix(k, "io.outpost.") {
				continue
			}
			v.Labels[k] = val
		}
		v.RemoveVolumes = c.Labels[LabelRemoveVolumes]
		v.Secrets = c.Labels[LabelSecrets]
		v.User = c.User
		v.Workdir = c.WorkingDir
		v.StopSignal = normSignal(c.StopSignal)
		for p := range c.ExposedPorts {
			v.Expose = append(v.Expose, string(p))
		}
		sort.Strings(v.Expose)
		if c.StopTimeout != nil {
			v.StopTime = strconv.Itoa(*c.StopTimeout)
		}
		v.Health = healthOf(c.Healthcheck)
		v.TTY = c.Tty
		if v.Hostname = c.Hostname; len(in.ID) >= 12 && c.Hostname == in.ID[:12] {
			v.Hostname = ""
		}
	}
	if in.ContainerJSONBase != nil && in.HostConfig != nil {
		h := in.HostConfig
		for port, bs := range h.PortBindings {
			for _, b := range bs {
				ip := b.HostIP
				if ip == "0.0.0.0" {
					ip = ""
				}
				v.Ports = append(v.Ports, fmt.Sprintf("%s:%s:%s/%s", ip, b.HostPort, port.Port(), port.Proto()))
			}
		}
		sort.Strings(v.Ports)
		for _, b := range h.Binds {
			parts := strings.Split(b, ":")
			if len(parts) < 2 {
				continue
			}
			ro := len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro")
			v.Volumes = append(v.Volumes, volumeString(parts[0], parts[1], ro))
		}
		for _, m := range h.Mounts {
			if m.Type == mount.TypeBind || m.Type == mount.TypeVolume {
				v.Volumes = append(v.Volumes, volumeString(m.Source, m.Target, m.ReadOnly))
			}
		}
		sort.Strings(v.Volumes)
		if len(h.Tmpfs) > 0 {
			v.Tmpfs = maps.Clone(h.Tmpfs)
		}
		v.Restart = restartString(h.RestartPolicy)
		v.Network = string(h.NetworkMode)
		if v.Network == "default" || v.Network == "" {
			v.Network = "bridge"
		}
		for _, d := range h.Devices {
			v.Devices = append(v.Devices, deviceString(d))
		}
		sort.Strings(v.Devices)
		v.CapAdd = normCaps(h.CapAdd)
		v.CapDrop = normCaps(h.CapDrop)
		v.Privileged = h.Privileged
		v.LogDriver = h.LogConfig.Type
		if len(h.LogConfig.Config) > 0 {
			v.LogOptions = maps.Clone(h.LogConfig.Config)
		}
		v.Memory = h.Memory
		v.NanoCPUs = h.NanoCPUs
		v.ReadOnly = h.ReadonlyRootfs
		v.Init = h.Init != nil && *h.Init
		v.DNS = h.DNS
		v.ExtraHosts = slices.Sorted(slices.Values(h.ExtraHosts))
		v.SecurityOpt = securityOpts(h.SecurityOpt, h.Privileged)
		v.GroupAdd = h.GroupAdd
		if h.PidsLimit != nil && *h.PidsLimit > 0 {
			v.PidsLimit = *h.PidsLimit
		}
		if len(h.Sysctls) > 0 {
			v.Sysctls = h.Sysctls
		}
		v.Cpuset = h.CpusetCpus
		v.ShmSize = h.ShmSize
		for _, u := range h.Ulimits {
			if u != nil {
				v.Ulimits = append(v.Ulimits, ulimitString(u.Name, u.Soft, u.Hard))
			}
		}
		sort.Strings(v.Ulimits)
		if h.NetworkMode.IsHost() || h.NetworkMode.IsContainer() {
			v.Hostname = "" // the other network's, which no spec sets
		}
	}
	if attachable(v.Network) && in.NetworkSettings != nil {
		for n, es := range in.NetworkSettings.Networks {
			v.Networks = append(v.Networks, n)
			if es == nil {
				continue
			}
			ep := Endpoint{Aliases: es.Aliases}
			if es.IPAMConfig != nil {
				ep.IPv4, ep.IPv6 = es.IPAMConfig.IPv4Address, es.IPAMConfig.IPv6Address
			}
			if len(ep.Aliases) > 0 || ep.IPv4 != "" || ep.IPv6 != "" {
				if v.Endpoints == nil {
					v.Endpoints = map[string]Endpoint{}
				}
				v.Endpoints[n] = ep
			}
		}
		sort.Strings(v.Networks)
	}
	return v
}

// securityOpts is opts without the label=disable that the engine adds to
// a privileged container's.
func securityOpts(opts []string, privileged bool) []string {
	if !privileged {
		return opts
	}
	return slices.DeleteFunc(slices.Clone(opts), func(o string) bool { return o == "label=disable" || o == "label:disable" })
}

// field is one group of settings that differs.
type field struct {
	// Text names the group, with old and new values where they are not
	// secret: "restart no -> unless-stopped", "env".
	Text string
	// How the difference is repaired.
	Fix fix
}

// fix says how a difference is repaired, from the cheapest.
type fix int

const (
	fixStart    fix = iota // start the container
	fixRename              // rename it back
	fixUpdate              // docker update in place
	fixRecreate            // recreate it
)

// diff compares the desired view w with the observed view o and names every
// group that differs, with its values before -> after. Environment values
// are secrets: a variable is named, never its value.
//
// It stays one table of comparisons, one per group of fields, so that a
// new field is added in one place beside its peers; the settings Compose
// users write are that table's second half, diffComposeFields.
func diff(w, o view) []field {
	var fs []field
	add := func(text string, f fix) { fs = append(fs, field{Text: text, Fix: f}) }
	change := changeText

	if w.Image != o.Image || (w.ImageID != "" && w.ImageID != o.ImageID) || w.ImageID == "" {
		if w.Image != o.Image {
			add(change("image", o.Image, w.Image), fixRecreate)
		} else {
			add("image "+w.Image+" (another image ID)", fixRecreate)
		}
	}
	if !slices.Equal(w.Entrypoint, o.Entrypoint) {
		add(change("entrypoint", quoted(o.Entrypoint), quoted(w.Entrypoint)), fixRecreate)
	}
	if !slices.Equal(w.Cmd, o.Cmd) {
		add(change("command", quoted(o.Cmd), quoted(w.Cmd)), fixRecreate)
	}
	if !maps.Equal(w.Env, o.Env) { // first, so that a no-op costs what it did
		for _, k := range changedKeys(o.Env, w.Env) {
			add(envField(k, o.Env, w.Env), fixRecreate)
		}
	}
	if !slices.Equal(w.Ports, o.Ports) {
		add(change("ports", list(o.Ports), list(w.Ports)), fixRecreate)
	}
	if !slices.Equal(w.Volumes, o.Volumes) {
		add(change("volumes", list(o.Volumes), list(w.Volumes)), fixRecreate)
	}
	if !maps.Equal(w.Tmpfs, o.Tmpfs) {
		add(change("tmpfs", pairs(o.Tmpfs), pairs(w.Tmpfs)), fixRecreate)
	}
	if !maps.Equal(w.Labels, o.Labels) {
		for _, k := range changedKeys(o.Labels, w.Labels) {
			add(change("labels "+k, orUnset(o.Labels, k), orUnset(w.Labels, k)), fixRecreate)
		}
	}
	if w.User != o.User {
		add(change("user", quote(o.User), quote(w.User)), fixRecreate)
	}
	if w.Workdir != o.Workdir {
		add(change("workdir", quote(o.Workdir), quote(w.Workdir)), fixRecreate)
	}
	if w.Network != o.Network {
		add(change("network_mode", o.Network, w.Network), fixRecreate)
	} else if !slices.Equal(w.Networks, o.Networks) {
		add(change("networks", list(o.Networks), list(w.Networks)), fixRecreate)
	}
	if !slices.Equal(w.Devices, o.Devices) {
		add(change("devices", list(o.Devices), list(w.Devices)), fixRecreate)
	}
	if !slices.Equal(w.CapAdd, o.CapAdd) {
		add(change("cap_add", list(o.CapAdd), list(w.CapAdd)), fixRecreate)
	}
	if !slices.Equal(w.CapDrop, o.CapDrop) {
		add(change("cap_drop", list(o.CapDrop), list(w.CapDrop)), fixRecreate)
	}
	if w.Privileged != o.Privileged {
		add(change("privileged", strconv.FormatBool(o.Privileged), strconv.FormatBool(w.Privileged)), fixRecreate)
	}
	if w.Health != o.Health {
		add(change("health", healthText(o.Health), healthText(w.Health)), fixRecreate)
	}
	if w.LogDriver != o.LogDriver {
		add(change("log", o.LogDriver, w.LogDriver), fixRecreate)
	}
	// The engine adds its default log options; only those the spec sets
	// must match.
	for k, val := range w.LogOptions {
		if o.LogOptions[k] != val {
			add("log options", fixRecreate)
			break
		}
	}
	if w.Memory != o.Memory {
		add(change("memory", strconv.FormatInt(o.Memory, 10), strconv.FormatInt(w.Memory, 10)), fixRecreate)
	}
	if w.StopTime != o.StopTime {
		add(change("stop_timeout", or(o.StopTime, "default"), or(w.StopTime, "default")), fixRecreate)
	}
	if w.StopSignal != o.StopSignal {
		add(change("stop_signal", o.StopSignal, w.StopSignal), fixRecreate)
	}
	diffComposeFields(w, o, add)
	if w.Secrets != o.Secrets {
		add(change("secret_files", "(secret)", "(secret, changed)"), fixRecreate)
	}
	if w.RemoveVolumes != o.RemoveVolumes {
		add(change("remove_volumes", or(o.RemoveVolumes, "unset"), w.RemoveVolumes), fixRecreate)
	}
	if w.Restart != o.Restart {
		add(change("restart", o.Restart, w.Restart), fixUpdate)
	}
	if w.NanoCPUs != o.NanoCPUs {
		add(change("cpus", cpus(o.NanoCPUs), cpus(w.NanoCPUs)), fixUpdate)
	}
	if w.Name != o.Name {
		add(change("name", o.Name, w.Name), fixRename)
	}
	if w.State != o.State {
		add(change("state", o.State, w.State), fixStart)
	}
	// A command line or a label may carry an env value (a password passed
	// as an argument too): it is masked wherever a field shows it.
	// An env field names its variable only.
	for i := range fs {
		if !strings.HasPrefix(fs[i].Text, "env ") {
			fs[i].Text = maskEnv(fs[i].Text, w.Env, o.Env)
		}
	}
	return fs
}

// diffComposeFields compares the settings that Compose users write (host
// name to tty), in the order diff reports them.
func diffComposeFields(w, o view, add func(string, fix)) {
	if w.Hostname != o.Hostname {
		add(changeText("hostname", quote(o.Hostname), quote(w.Hostname)), fixRecreate)
	}
	if !slices.Equal(w.ExtraHosts, o.ExtraHosts) {
		add(changeText("extra_hosts", list(o.ExtraHosts), list(w.ExtraHosts)), fixRecreate)
	}
	if !slices.Equal(w.DNS, o.DNS) {
		add(changeText("dns", list(o.DNS), list(w.DNS)), fixRecreate)
	}
	if !slices.Equal(w.SecurityOpt, o.SecurityOpt) {
		add(changeText("security_opt", list(o.SecurityOpt), list(w.SecurityOpt)), fixRecreate)
	}
	if !slices.Equal(w.GroupAdd, o.GroupAdd) {
		add(changeText("group_add", list(o.GroupAdd), list(w.GroupAdd)), fixRecreate)
	}
	if w.PidsLimit != o.PidsLimit {
		add(changeText("pids_limit", strconv.FormatInt(o.PidsLimit, 10), strconv.FormatInt(w.PidsLimit, 10)), fixRecreate)
	}
	if !maps.Equal(w.Sysctls, o.Sysctls) {
		add(changeText("sysctls", pairs(o.Sysctls), pairs(w.Sysctls)), fixRecreate)
	}
	if w.Cpuset != o.Cpuset {
		add(changeText("cpuset", quote(o.Cpuset), quote(w.Cpuset)), fixRecreate)
	}
	if w.ShmSize != 0 && w.ShmSize != o.ShmSize {
		add(changeText("shm_size", strconv.FormatInt(o.ShmSize, 10), strconv.FormatInt(w.ShmSize, 10)), fixRecreate)
	}
	// The engine adds aliases, exposed ports and limits of its own: only
	// the spec's must be there.
	for _, n := range slices.Sorted(maps.Keys(w.Endpoints)) {
		ep, got := w.Endpoints[n], o.Endpoints[n]
		if ep.IPv4 != got.IPv4 || ep.IPv6 != got.IPv6 || missing(ep.Aliases, got.Aliases) {
			add("networks."+n+" (aliases, addresses)", fixRecreate)
		}
	}
	if missing(w.Expose, o.Expose) {
		add(changeText("expose", list(o.Expose), list(w.Expose)), fixRecreate)
	}
	if missing(w.Ulimits, o.Ulimits) {
		add(changeText("ulimits", list(o.Ulimits), list(w.Ulimits)), fixRecreate)
	}
	for _, b := range []struct {
		name string
		w, o bool
	}{{"read_only", w.ReadOnly, o.ReadOnly}, {"init", w.Init, o.Init}, {"tty", w.TTY, o.TTY}} {
		if b.w != b.o {
			add(changeText(b.name, strconv.FormatBool(b.o), strconv.FormatBool(b.w)), fixRecreate)
		}
	}
}

// changeText is a field's text with its old and new value.
func changeText(name, from, to string) string { return fmt.Sprintf("%s %s -> %s", name, from, to) }

// missing reports whether some of want is not in got.
func missing(want, got []string) bool {
	return slices.ContainsFunc(want, func(v string) bool { return !slices.Contains(got, v) })
}

// redacted replaces an env value in a field's text.
const redacted = "[redacted]"

// maskEnv replaces in text every env value of envs of 4 characters or
// more (shorter ones, such as "1" or "on", hide nothing and would garble
// every field), the longest first.
func maskEnv(text string, envs ...map[string]string) string {
	var vals []string
	for _, env := range envs {
		for _, v := range env {
			if len(v) >= 4 && strings.Contains(text, v) {
				vals = append(vals, v)
			}
		}
	}
	slices.SortFunc(vals, func(a, b string) int { return len(b) - len(a) })
	for _, v := range vals {
		text = strings.ReplaceAll(text, v, redacted)
	}
	return text
}

func healthOf(h *container.HealthConfig) healthView {
	if h == nil || len(h.Test) == 0 {
		return healthView{}
	}
	d := func(x time.Duration) string {
		if x == 0 {
			return ""
		}
		return x.String()
	}
	return healthView{
		Test:     strings.Join(h.Test, "\x00"),
		Interval: d(h.Interval), Timeout: d(h.Timeout), StartPeriod: d(h.StartPeriod),
		Retries: strconv.Itoa(h.Retries),
	}
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}

func normSignal(s string) string {
	if s == "" {
		return "SIGTERM"
	}
	if n, err := strconv.Atoi(s); err == nil && n == 15 {
		return "SIGTERM"
	}
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	return s
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func list(s []string) string {
	if len(s) == 0 {
		return "[]"
	}
	return "[" + strings.Join(s, " ") + "]"
}

func quote(s string) string { return strconv.Quote(s) }

// quoted formats a command line: each argument quoted.
func quoted(s []string) string {
	q := make([]string, len(s))
	for i, a := range s {
		q[i] = strconv.Quote(a)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// changedKeys lists, sorted, the keys whose values differ between a and b.
func changedKeys(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// envField names a variable that differs, without its values: they may
// be secrets.
func envField(k string, o, w map[string]string) string {
	_, had := o[k]
	_, wants := w[k]
	switch {
	case !had:
		return "env " + k + " added (secret)"
	case !wants:
		return "env " + k + " removed"
	}
	return "env " + k + " changed (secret)"
}

func orUnset(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return strconv.Quote(v)
	}
	return "(unset)"
}

// pairs formats a map as [k=v ...], sorted by key.
func pairs(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	for i, k := range keys {
		if m[k] != "" {
			keys[i] = k + ":" + m[k]
		}
	}
	return list(keys)
}

func cpus(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(float64(n)/1e9, 'f', -1, 64)
}

// ulimitStrings formats limits for the view, sorted.
func ulimitStrings(us []Ulimit) []string {
	var out []string
	for _, u := range us {
		out = append(out, ulimitString(u.Name, u.Soft, u.Hard))
	}
	sort.Strings(out)
	return out
}

func ulimitString(name string, soft, hard int64) string {
	return fmt.Sprintf("%s=%d:%d", name, soft, hard)
}
