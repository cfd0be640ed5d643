package docker

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// The labels Compose marks a project's containers and networks with, which
// a container of a project carries too, so that docker compose and
// docker ps --filter label=com.docker.compose.project=NAME see it.
const (
	LabelComposeProject = "com.docker.compose.project"
	LabelComposeService = "com.docker.compose.service"
	LabelComposeNetwork = "com.docker.compose.network"
	labelComposeOneOff  = "com.docker.compose.oneoff"
	labelComposeNumber  = "com.docker.compose.container-number"
	// Compose v2 lists only the containers that have a configuration
	// hash label, whatever its value. Outpost's value is never a hash
	// that Compose computes, so a `docker compose up` over the project
	// sees each container as out of date (docs/compose.md).
	labelComposeConfigHash = "com.docker.compose.config-hash"
	composeConfigHash      = "outpost"
)

// projectRE is what Compose accepts as a project name.
var projectRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// CheckProject checks a project name as Compose does.
func CheckProject(s string) error {
	if !projectRE.MatchString(s) || len(s) > 63 {
		return fmt.Errorf("%q is not a project name: lowercase letters, digits, - and _, starting with a letter or digit", s)
	}
	return nil
}

// DefaultNetwork is the network a project's containers join when they name
// none, as Compose's PROJECT_default.
func DefaultNetwork(project string) string { return project + "_default" }

// Service is the container's service name in its project: its name without
// the "PROJECT-" or "PROJECT_" that Compose and the importer put before it.
func Service(c *Container) string {
	for _, sep := range []string{"-", "_"} {
		if s, ok := strings.CutPrefix(c.Name, c.Project+sep); ok && s != "" {
			return s
		}
	}
	return c.Name
}

// decodeProject reads project: and makes the container a service of it, as
// Compose does: the project's labels, the project's default network when
// it names no network and no network mode, and the service's name as an
// alias on every user-defined network it joins, so that the project's
// services reach each other by name.
func decodeProject(d *spec.Decoder, f map[string]spec.Field, c *Container) {
	d.String("project", &c.Project, CheckProject)
	if c.Project == "" {
		return
	}
	own := map[string]string{
		LabelComposeProject:    c.Project,
		LabelComposeService:    Service(c),
		labelComposeOneOff:     "False",
		labelComposeNumber:     "1",
		labelComposeConfigHash: composeConfigHash,
	}
	for k, v := range own {
		if got, ok := c.Labels[k]; ok && got != v {
			d.Errorf(f["labels"].Key, "labels: %s is %q, but project: %s makes it %q", k, got, c.Project, v)
		}
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	maps.Copy(c.Labels, own)
	if c.NetworkMode == "" && len(c.Networks) == 0 {
		c.Networks = []string{DefaultNetwork(c.Project)}
	}
	if !attachable(NetworkMode(c)) {
		return
	}
	for _, n := range Networks(c) {
		if n == "bridge" {
			continue // the default bridge has no aliases
		}
		if c.Endpoints == nil {
			c.Endpoints = map[string]Endpoint{}
		}
		e := c.Endpoints[n]
		if !slices.Contains(e.Aliases, Service(c)) {
			e.Aliases = append(slices.Clone(e.Aliases), Service(c))
			slices.Sort(e.Aliases)
		}
		c.Endpoints[n] = e
	}
}

// networkLabels are the labels of a network that the driver creates for c:
// Outpost's, and Compose's for its project's default network.
func networkLabels(c *Container, n string) map[string]string {
	l := map[string]string{LabelManaged: "true"}
	if c.Project != "" && n == DefaultNetwork(c.Project) {
		l[LabelComposeProject] = c.Project
		l[LabelComposeNetwork] = "default"
	}
	return l
}

// CheckLabel checks a label key that a manifest sets: not empty, and not
// one of the labels that mark Outpost's objects.
func CheckLabel(k string) error {
	if k == "" {
		return fmt.Errorf("a label key must not be empty")
	}
	if strings.HasPrefix(k, ReservedLabelPrefix) {
		return fmt.Errorf("%q: labels starting with %s are Outpost's own", k, ReservedLabelPrefix)
	}
	return nil
}

var driverRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_./:-]*$`)

// CheckDriver checks the name of a network's or a volume's driver.
func CheckDriver(s string) error {
	if !driverRE.MatchString(s) || len(s) > 255 {
		return fmt.Errorf("%q is not a driver name", s)
	}
	return nil
}

// ProjectLabels returns labels with Compose's labels of an object of
// project: the project, and key (com.docker.compose.network or .volume)
// set to the object's name in the project, its name without "PROJECT_".
func ProjectLabels(labels map[string]string, project, key, name string) map[string]string {
	if project == "" {
		return labels
	}
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelComposeProject] = project
	l[key] = strings.TrimPrefix(name, project+"_")
	return l
}
