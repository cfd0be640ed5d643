package compose

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// importer converts one project.
type importer struct {
	project *types.Project
	root    string // the repository
	dir     string // the project's directory
	res     *Result
}

func (im *importer) drop(service, field, msg string) {
	im.res.Dropped = append(im.res.Dropped, Note{Service: service, Field: field, Message: msg})
}

func (im *importer) change(service, field, msg string) {
	im.res.Changed = append(im.res.Changed, Note{Service: service, Field: field, Message: msg})
}

// handled are the service fields that the conversion reads; any other
// field that a service sets is dropped with a note.
var handled = map[string]bool{
	"image": true, "container_name": true, "command": true, "entrypoint": true, "environment": true,
	"env_file": true, "ports": true, "volumes": true, "tmpfs": true, "restart": true, "labels": true,
	"user": true, "working_dir": true, "network_mode": true, "networks": true, "devices": true,
	"cap_add": true, "cap_drop": true, "privileged": true, "healthcheck": true, "logging": true,
	"mem_limit": true, "cpus": true, "stop_grace_period": true, "stop_signal": true, "hostname": true,
	"extra_hosts": true, "dns": true, "read_only": true, "init": true, "tty": true, "security_opt": true,
	"group_add": true, "pids_limit": true, "sysctls": true, "cpuset": true, "depends_on": true,
	"shm_size": true, "ulimits": true, "expose": true,
	"deploy": true, "build": true, "extends": true, "profiles": true,
}

// why says why a field that Outpost does not have is dropped, where there
// is more to say than that.
var why = map[string]string{
	"secrets":        "Compose secrets are files from the host; ship them as Outpost file resources (mode 0600) and bind them",
	"configs":        "ship the file as an Outpost file resource and bind it",
	"links":          "legacy links: put the services on one network and use their names",
	"external_links": "legacy links: put the services on one network and use their names",
	"expose":         "expose only documents ports: containers on one network reach each other's ports without it",
	"scale":          "Outpost runs one container per manifest: copy the manifest for more",
	"pull_policy":    "Outpost pulls a tag when it is missing, and follows a registry with update:",
	"stdin_open":     "an agent's containers have no terminal to attach",
}

// containerName is the container that Outpost makes for a service.
func (im *importer) containerName(s types.ServiceConfig) string {
	if s.ContainerName != "" {
		return s.ContainerName
	}
	return im.project.Name + "-" + s.Name
}

// service converts one service into a manifest; false when it cannot be.
func (im *importer) service(s types.ServiceConfig) (Manifest, bool) {
	m := newDoc()
	m.set("kind", str("container"), "")
	m.set("name", str(im.containerName(s)), "")
	m.set("project", str(im.project.Name), "")
	if s.ContainerName == "" {
		im.change(s.Name, "container_name", fmt.Sprintf("the container is named %s, Compose's name without the replica number", im.containerName(s)))
	}
	if !im.image(m, s) {
		return Manifest{}, false
	}
	im.others(s)
	im.process(m, s)
	im.mounts(m, s)
	im.network(m, s)
	im.limits(m, s)
	im.host(m, s)
	var head strings.Builder
	fmt.Fprintf(&head, "Imported from service %s of Compose project %s by outpost import compose.", s.Name, im.project.Name)
	for _, n := range im.res.Dropped {
		if n.Service == s.Name {
			fmt.Fprintf(&head, "\ndropped: %s: %s", n.Field, n.Message)
		}
	}
	for _, n := range im.res.Changed {
		if n.Service == s.Name {
			fmt.Fprintf(&head, "\nchanged: %s: %s", n.Field, n.Message)
		}
	}
	m.root.HeadComment = head.String()
	data, err := m.encode()
	if err != nil {
		im.drop(s.Name, "service", err.Error())
		return Manifest{}, false
	}
	return Manifest{Name: s.Name + ".yaml", Data: data}, true
}

// image writes image and tag; a service without an image (build only) is
// not imported.
func (im *importer) image(m *doc, s types.ServiceConfig) bool {
	if s.Build != nil && s.Image == "" {
		im.drop(s.Name, "build", "Outpost runs images from a registry: build and push the image, then name it in image:; the service was not imported")
		return false
	}
	if s.Build != nil {
		im.drop(s.Name, "build", fmt.Sprintf("not built: the image %s is pulled", s.Image))
	}
	ref, digest, _ := strings.Cut(s.Image, "@")
	name, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	m.set("image", str(name), "")
	switch {
	case digest != "":
		m.set("image", str(name+"@"+digest), "")
		if tag != "" {
			m.set("tag", str(tag), "")
		}
	case tag == "":
		m.set("tag", str("latest"), "Compose's default: pin a version, or follow the registry with update:")
		im.change(s.Name, "image", "no tag: written as latest, which Outpost never assumes")
	default:
		m.set("tag", str(tag), "")
	}
	return true
}

// others drops every field that no other step reads.
func (im *importer) others(s types.ServiceConfig) {
	data, err := json.Marshal(s)
	if err != nil {
		return
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return
	}
	for _, k := range mapsKeys(fields) {
		if handled[k] || string(fields[k]) == "false" || string(fields[k]) == "0" {
			continue
		}
		msg := why[k]
		if msg == "" {
			msg = "Outpost's container kind has no such field"
		}
		im.drop(s.Name, k, msg)
	}
	if len(s.Profiles) > 0 {
		im.change(s.Name, "profiles", "imported as an ordinary service: choose its hosts with fleet.yaml's targets")
	}
	if s.Deploy != nil {
		im.deploy(s)
	}
}

// deploy reads the resource limits of deploy:, and drops the rest.
func (im *importer) deploy(s types.ServiceConfig) {
	d := s.Deploy
	if d.Replicas != nil && *d.Replicas != 1 {
		im.drop(s.Name, "deploy.replicas", "Outpost runs one container per manifest")
	}
	if d.Resources.Reservations != nil {
		im.drop(s.Name, "deploy.resources.reservations", "reservations are for a scheduler; Outpost runs on one host")
	}
	if d.RestartPolicy != nil || d.UpdateConfig != nil || d.RollbackConfig != nil || len(d.Placement.Constraints) > 0 {
		im.drop(s.Name, "deploy", "Swarm's policies do not apply: restart: and the health-gated rollback do their work")
	}
}

// process writes what runs and how.
func (im *importer) process(m *doc, s types.ServiceConfig) {
	if len(s.Command) > 0 {
		m.set("command", strs(s.Command), "")
	}
	if len(s.Entrypoint) > 0 {
		m.set("entrypoint", strs(s.Entrypoint), "")
	}
	if env := im.env(s); len(env) > 0 {
		m.set("env", strMap(env), "")
	}
	if s.Restart != "" {
		m.set("restart", str(s.Restart), "")
	}
	if s.User != "" {
		m.set("user", str(s.User), "")
	}
	if s.WorkingDir != "" {
		m.set("workdir", str(s.WorkingDir), "")
	}
	if len(s.Labels) > 0 {
		m.set("labels", strMap(s.Labels), "")
	}
	if s.StopGracePeriod != nil {
		m.set("stop_timeout", str(time.Duration(*s.StopGracePeriod).String()), "")
	}
	if s.StopSignal != "" {
		m.set("stop_signal", str(s.StopSignal), "")
	}
	im.health(m, s)
	if s.Logging != nil && s.Logging.Driver != "" {
		lg := newDoc()
		lg.set("driver", str(s.Logging.Driver), "")
		if len(s.Logging.Options) > 0 {
			lg.set("options", strMap(s.Logging.Options), "")
		}
		m.set("log", lg.root, "")
	}
	var after []string
	for _, dep := range mapsKeys(s.DependsOn) {
		d := s.DependsOn[dep]
		target, ok := im.project.Services[dep]
		if !ok {
			continue
		}
		after = append(after, "container:"+im.containerName(target))
		switch d.Condition {
		case types.ServiceConditionHealthy:
			im.change(s.Name, "depends_on", fmt.Sprintf("%s: service_healthy: after: orders the create; the health gate checks %s after a change", dep, dep))
		case types.ServiceConditionCompletedSuccessfully:
			im.drop(s.Name, "depends_on", fmt.Sprintf("%s: service_completed_successfully: Outpost runs no one-off containers", dep))
		}
	}
	if len(after) > 0 {
		m.set("after", strs(after), "")
	}
}

// env merges env files under environment. A variable without a value,
// which Compose takes from its own environment, is dropped: the import
// reads no environment.
func (im *importer) env(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for _, f := range s.EnvFiles {
		path := f.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(im.dir, path)
		}
		real, err := inside(im.root, path)
		if err != nil {
			im.drop(s.Name, "env_file", fmt.Sprintf("%s: %v", f.Path, err))
			continue
		}
		data, err := os.Open(real)
		if err != nil {
			if bool(f.Required) {
				im.drop(s.Name, "env_file", fmt.Sprintf("%s: %v", f.Path, err))
			}
			continue
		}
		vars, err := dotenv.ParseWithLookup(data, func(string) (string, bool) { return "", false })
		data.Close()
		if err != nil {
			im.drop(s.Name, "env_file", fmt.Sprintf("%s: %v", f.Path, err))
			continue
		}
		for k, v := range vars {
			env[k] = v
		}
		im.change(s.Name, "env_file", fmt.Sprintf("%s: its variables are written into env:", f.Path))
	}
	for _, k := range mapsKeys(s.Environment) {
		v := s.Environment[k]
		if v == nil {
			im.drop(s.Name, "environment", fmt.Sprintf("%s has no value: Compose takes it from its own environment; write the value", k))
			continue
		}
		env[k] = *v
	}
	return env
}

// health writes the health check in exec form.
func (im *importer) health(m *doc, s types.ServiceConfig) {
	hc := s.HealthCheck
	if hc == nil {
		return
	}
	if hc.Disable || (len(hc.Test) > 0 && hc.Test[0] == "NONE") {
		im.drop(s.Name, "healthcheck", "disable: the image's own health check stays; Outpost cannot switch it off")
		return
	}
	if len(hc.Test) == 0 {
		im.drop(s.Name, "healthcheck", "no test: the image's health check is used")
		return
	}
	h := newDoc()
	var cmd []string
	switch hc.Test[0] {
	case "CMD":
		cmd = hc.Test[1:]
	case "CMD-SHELL":
		cmd = []string{"/bin/sh", "-c", strings.Join(hc.Test[1:], " ")}
		im.change(s.Name, "healthcheck", "CMD-SHELL runs as /bin/sh -c: Outpost's health cmd is the exec form")
	default:
		cmd = []string{"/bin/sh", "-c", strings.Join(hc.Test, " ")}
	}
	h.set("cmd", strs(cmd), "")
	for _, d := range []struct {
		name string
		v    *types.Duration
	}{{"interval", hc.Interval}, {"timeout", hc.Timeout}, {"start_period", hc.StartPeriod}} {
		if d.v != nil {
			h.set(d.name, str(time.Duration(*d.v).String()), "")
		}
	}
	if hc.Retries != nil {
		h.set("retries", num(strconv.FormatUint(*hc.Retries, 10)), "")
	}
	if hc.StartInterval != nil {
		im.drop(s.Name, "healthcheck.start_interval", "not supported: interval applies from the start")
	}
	m.set("health", h.root, "")
}

// mounts writes ports, volumes, tmpfs and devices.
func (im *importer) mounts(m *doc, s types.ServiceConfig) {
	var ports []string
	for _, p := range s.Ports {
		ports = append(ports, portString(p))
	}
	if len(ports) > 0 {
		m.set("ports", strs(ports), "")
	}
	var vols, tmpfs []string
	tmpfs = append(tmpfs, s.Tmpfs...)
	for _, v := range s.Volumes {
		switch v.Type {
		case types.VolumeTypeBind:
			if !filepath.IsAbs(v.Source) {
				im.drop(s.Name, "volumes", fmt.Sprintf("%s: a relative bind would point into the agent's checkout, not the repository's files: give the absolute path on the host, or ship the files as file resources", v.Source))
				continue
			}
			if v.Bind != nil && (v.Bind.Propagation != "" || v.Bind.SELinux != "") {
				im.drop(s.Name, "volumes", fmt.Sprintf("%s: bind options (propagation, SELinux label) are not carried", v.Source))
			}
			vols = append(vols, volString(v.Source, v.Target, v.ReadOnly))
		case types.VolumeTypeVolume:
			if v.Source == "" {
				im.drop(s.Name, "volumes", fmt.Sprintf("%s: an anonymous volume: name it, so that it is kept across replacements", v.Target))
				continue
			}
			vols = append(vols, volString(im.volumeName(v.Source), v.Target, v.ReadOnly))
		case types.VolumeTypeTmpfs:
			t := v.Target
			if v.Tmpfs != nil && v.Tmpfs.Size > 0 {
				t += fmt.Sprintf(":size=%d", int64(v.Tmpfs.Size))
			}
			tmpfs = append(tmpfs, t)
		default:
			im.drop(s.Name, "volumes", fmt.Sprintf("%s: volumes of type %s are not supported", v.Target, v.Type))
		}
	}
	if len(vols) > 0 {
		m.set("volumes", strs(vols), "")
	}
	if len(tmpfs) > 0 {
		m.set("tmpfs", strs(tmpfs), "")
	}
	var devs []string
	for _, d := range s.Devices {
		dev := d.Source
		perms := d.Permissions
		if perms == "rwm" {
			perms = "" // the default
		}
		if d.Target != "" && d.Target != d.Source || perms != "" {
			dev += ":" + d.Target
		}
		if perms != "" {
			dev += ":" + perms
		}
		devs = append(devs, dev)
	}
	if len(devs) > 0 {
		m.set("devices", strs(devs), "")
	}
}

// networkObject writes the manifest of the Compose file's network n.
func (im *importer) networkObject(n string, c types.NetworkConfig) {
	if bool(c.External) {
		im.change("", "networks."+n, "external: no manifest is written; the containers create it as a plain bridge when it is missing")
		return
	}
	plain := (c.Driver == "" || c.Driver == "bridge") && len(c.DriverOpts) == 0 && len(c.Ipam.Config) == 0 &&
		c.Ipam.Driver == "" && !c.Internal && len(c.Labels) == 0 && c.EnableIPv6 == nil
	if n == "default" && plain {
		return
	}
	m := im.newObject("network", im.networkName(n), c.Driver, "bridge", c.DriverOpts, nil)
	if c.Internal {
		m.set("internal", num("true"), "")
	}
	if c.EnableIPv6 != nil && *c.EnableIPv6 {
		m.set("enable_ipv6", num("true"), "")
	}
	if c.Ipam.Driver != "" || len(c.Ipam.Config) > 0 {
		m.set("ipam", im.ipam(n, c.Ipam), "")
	}
	if len(c.Labels) > 0 {
		m.set("labels", strMap(c.Labels), "")
	}
	if c.Attachable {
		im.drop("", "networks."+n, "attachable is for swarm services, which Outpost does not run")
	}
	im.object(m, "network "+n, n+".network.yaml")
}

// ipam writes network n's IPAM driver and pools.
func (im *importer) ipam(n string, c types.IPAMConfig) *yaml.Node {
	ipam := &yaml.Node{Kind: yaml.MappingNode}
	if c.Driver != "" {
		ipam.Content = append(ipam.Content, str("driver"), str(c.Driver))
	}
	if len(c.Config) == 0 {
		return ipam
	}
	pools := &yaml.Node{Kind: yaml.SequenceNode}
	for _, p := range c.Config {
		pool := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		for _, kv := range [][2]string{{"subnet", p.Subnet}, {"gateway", p.Gateway}, {"ip_range", p.IPRange}} {
			if kv[1] != "" {
				pool.Content = append(pool.Content, str(kv[0]), str(kv[1]))
			}
		}
		if len(p.AuxiliaryAddresses) > 0 {
			im.drop("", "networks."+n, "ipam.config.aux_addresses is not carried")
		}
		pools.Content = append(pools.Content, pool)
	}
	ipam.Content = append(ipam.Content, str("config"), pools)
	return ipam
}

// newObject starts the manifest of a network or a volume of the project:
// its kind, name and project, its driver unless it is the default, and
// its options; and its labels when given (a network writes its own after
// its other fields).
func (im *importer) newObject(kind, name, driver, defaultDriver string, opts, labels map[string]string) *doc {
	m := newDoc()
	m.set("kind", str(kind), "")
	m.set("name", str(name), "")
	m.set("project", str(im.project.Name), "")
	if driver != "" && driver != defaultDriver {
		m.set("driver", str(driver), "")
	}
	if len(opts) > 0 {
		m.set("options", strMap(opts), "")
	}
	if len(labels) > 0 {
		m.set("labels", strMap(labels), "")
	}
	return m
}

// object adds the manifest m of a network or a volume, named file.
func (im *importer) object(m *doc, what, file string) {
	m.root.HeadComment = fmt.Sprintf("Imported from %s of Compose project %s by outpost import compose.", what, im.project.Name)
	data, err := m.encode()
	if err != nil {
		im.drop("", what, err.Error())
		return
	}
	im.res.Manifests = append(im.res.Manifests, Manifest{Name: file, Data: data})
}

// volumeName is the engine's name of a named volume: Compose prefixes the
// project unless the volume names itself.
func (im *importer) volumeName(src string) string {
	if v, ok := im.project.Volumes[src]; ok && v.Name != "" {
		return v.Name
	}
	return src
}

// portString writes a port in the short syntax.
func portString(p types.ServicePortConfig) string {
	s := strconv.FormatUint(uint64(p.Target), 10)
	if p.Published != "" {
		s = p.Published + ":" + s
		if p.HostIP != "" {
			ip := p.HostIP
			if strings.Contains(ip, ":") {
				ip = "[" + ip + "]"
			}
			s = ip + ":" + s
		}
	}
	if p.Protocol != "" && p.Protocol != "tcp" {
		s += "/" + p.Protocol
	}
	return s
}

func volString(src, dst string, ro bool) string {
	s := src + ":" + dst
	if ro {
		s += ":ro"
	}
	return s
}

// network writes the network mode or the networks, by the engine's names.
func (im *importer) network(m *doc, s types.ServiceConfig) {
	switch mode := s.NetworkMode; {
	case strings.HasPrefix(mode, "service:"):
		target := strings.TrimPrefix(mode, "service:")
		if t, ok := im.project.Services[target]; ok {
			m.set("network_mode", str("container:"+im.containerName(t)), "")
		}
		return
	case mode != "":
		m.set("network_mode", str(mode), "")
		return
	}
	var nets []string
	endpoints := &yaml.Node{Kind: yaml.MappingNode}
	withEndpoints := false
	for _, n := range s.NetworksByPriority() {
		name := im.networkName(n)
		nets = append(nets, name)
		ep := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: ""}
		if c := s.Networks[n]; c != nil {
			if c.MacAddress != "" || len(c.LinkLocalIPs) > 0 {
				im.drop(s.Name, "networks", fmt.Sprintf("%s: MAC and link-local addresses are not carried", n))
			}
			if len(c.Aliases) > 0 || c.Ipv4Address != "" || c.Ipv6Address != "" {
				withEndpoints = true
				ep = &yaml.Node{Kind: yaml.MappingNode}
				if len(c.Aliases) > 0 {
					ep.Content = append(ep.Content, str("aliases"), strs(c.Aliases))
				}
				if (c.Ipv4Address != "" || c.Ipv6Address != "") && !im.hasSubnet(n) {
					im.change(s.Name, "networks", fmt.Sprintf("%s: a static address needs a subnet on the network, which the Compose file does not give: add ipam to %s's manifest", n, name))
				}
				if c.Ipv4Address != "" {
					ep.Content = append(ep.Content, str("ipv4_address"), str(c.Ipv4Address))
				}
				if c.Ipv6Address != "" {
					ep.Content = append(ep.Content, str("ipv6_address"), str(c.Ipv6Address))
				}
			}
		}
		endpoints.Content = append(endpoints.Content, str(name), ep)
	}
	switch {
	case withEndpoints:
		m.set("networks", endpoints, "")
	case len(nets) > 0:
		m.set("networks", strs(nets), "")
	}
}

// hasSubnet reports whether the Compose file gives network n a subnet.
func (im *importer) hasSubnet(n string) bool {
	c, ok := im.project.Networks[n]
	return ok && len(c.Ipam.Config) > 0
}

// networkName is the engine's name of a network: Compose prefixes the
// project unless the network names itself.
func (im *importer) networkName(n string) string {
	if c, ok := im.project.Networks[n]; ok && c.Name != "" {
		return c.Name
	}
	return im.project.Name + "_" + n
}

// limits writes memory and CPU limits, from the service or deploy.
func (im *importer) limits(m *doc, s types.ServiceConfig) {
	mem, cpus := int64(s.MemLimit), float64(s.CPUS)
	if d := s.Deploy; d != nil && d.Resources.Limits != nil {
		if mem == 0 {
			mem = int64(d.Resources.Limits.MemoryBytes)
		}
		if cpus == 0 {
			cpus = float64(d.Resources.Limits.NanoCPUs.Value())
		}
	}
	if mem > 0 {
		m.set("memory", str(byteSize(mem)), "")
	}
	if cpus > 0 {
		m.set("cpus", num(strconv.FormatFloat(cpus, 'f', -1, 32)), "")
	}
	if s.PidsLimit > 0 {
		m.set("pids_limit", num(strconv.FormatInt(s.PidsLimit, 10)), "")
	}
	if s.CPUSet != "" {
		m.set("cpuset", str(s.CPUSet), "")
	}
	if s.ShmSize > 0 {
		m.set("shm_size", str(byteSize(int64(s.ShmSize))), "")
	}
	if len(s.Ulimits) > 0 {
		m.set("ulimits", ulimits(s.Ulimits), "")
	}
	if len(s.Expose) > 0 {
		m.set("expose", strs(s.Expose), "")
	}
}

// ulimits writes Compose's limits in its own two forms, sorted by name.
func ulimits(us map[string]*types.UlimitsConfig) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, name := range slices.Sorted(maps.Keys(us)) {
		u := us[name]
		v := num(strconv.Itoa(u.Single))
		if u.Single == 0 {
			v = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: []*yaml.Node{
				str("soft"), num(strconv.Itoa(u.Soft)), str("hard"), num(strconv.Itoa(u.Hard))}}
		}
		n.Content = append(n.Content, str(name), v)
	}
	return n
}

// byteSize writes n with the largest power-of-1024 suffix that divides it.
func byteSize(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// host writes the host settings and the privileges.
func (im *importer) host(m *doc, s types.ServiceConfig) {
	if s.Hostname != "" {
		m.set("hostname", str(s.Hostname), "")
	}
	var hosts []string
	for _, h := range mapsKeys(s.ExtraHosts) {
		for _, ip := range s.ExtraHosts[h] {
			hosts = append(hosts, h+":"+ip)
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"extra_hosts", hosts}, {"dns", s.DNS}, {"cap_add", s.CapAdd}, {"cap_drop", s.CapDrop},
		{"security_opt", s.SecurityOpt}, {"group_add", s.GroupAdd}} {
		if len(l.v) > 0 {
			m.set(l.name, strs(l.v), "")
		}
	}
	for _, b := range []struct {
		name string
		v    bool
	}{{"privileged", s.Privileged}, {"read_only", s.ReadOnly}, {"init", s.Init != nil && *s.Init}, {"tty", s.Tty}} {
		if b.v {
			m.set(b.name, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}, "")
		}
	}
	if len(s.Sysctls) > 0 {
		m.set("sysctls", strMap(s.Sysctls), "")
	}
}

// topLevel writes a manifest of kind network for each network the
// Compose file declares (but the default network when it says nothing of
// it, which the containers of the project make), and one of kind volume
// for each volume. External ones are the host's own: none is written.
func (im *importer) topLevel() {
	for _, n := range mapsKeys(im.project.Networks) {
		im.networkObject(n, im.project.Networks[n])
	}
	for _, v := range mapsKeys(im.project.Volumes) {
		if c := im.project.Volumes[v]; !bool(c.External) { // else the host's own
			m := im.newObject("volume", im.volumeName(v), c.Driver, "local", c.DriverOpts, c.Labels)
			// A volume that Compose made already (the project moves
			// over with its data) is used as it is.
			m.set("adopt", num("true"), "a volume Compose made keeps its data; never removed unless it says prune: true")
			im.object(m, "volume "+v, v+".volume.yaml")
		}
	}
	for _, k := range []struct {
		name string
		n    int
	}{{"secrets", len(im.project.Secrets)}, {"configs", len(im.project.Configs)}} {
		if k.n > 0 {
			im.drop("", k.name, why[k.name])
		}
	}
}
