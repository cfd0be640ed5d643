package diff

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// Resource compares two versions of one resource, as two revisions render
// it: before is nil for a create, after for a delete. It returns the fields
// that differ ("content", "mode 0644 -> 0640", "image a:1 -> a:2",
// "env DB_PASSWORD (secret)") and the unified diffs of contents and
// drop-ins.
func (m *Masker) Resource(before, after *spec.Resource) (fields []string, text string) {
	var b strings.Builder
	name := ""
	if after != nil {
		name = after.ID.Name
	} else if before != nil {
		name = before.ID.Name
	}
	switch kindOf(before, after) {
	case file.Kind:
		fields = m.file(&b, name, of(before, file.Of), of(after, file.Of))
	case systemd.Kind:
		fields = m.unit(&b, name, of(before, systemd.Of), of(after, systemd.Of))
	case docker.Kind:
		fields = Container(of(before, docker.Of), of(after, docker.Of))
	}
	return fields, b.String()
}

// of returns a resource's object typed by its kind's Of, or nil for no
// resource.
func of[T any](r *spec.Resource, typed func(*spec.Resource) *T) *T {
	if r == nil {
		return nil
	}
	return typed(r)
}

func kindOf(a, b *spec.Resource) spec.Kind {
	if a != nil {
		return a.ID.Kind
	}
	if b != nil {
		return b.ID.Kind
	}
	return ""
}

func (m *Masker) file(b *strings.Builder, name string, x, y *file.File) []string {
	both := x != nil && y != nil // an update: a create or a delete says so itself
	if x == nil {
		x = &file.File{Absent: true}
	}
	if y == nil {
		y = &file.File{Absent: true}
	}
	var fields []string
	if both && x.Absent != y.Absent {
		fields = append(fields, fmt.Sprintf("state %s -> %s", presence(x.Absent), presence(y.Absent)))
	}
	var before, after []byte
	if !x.Absent {
		before = x.Content
	}
	if !y.Absent {
		after = y.Content
	}
	if t := m.Text(name, Bytes(before), Bytes(after)); t != "" {
		fields = append(fields, "content")
		b.WriteString(t)
	}
	if !x.Absent && !y.Absent {
		if x.Mode != y.Mode {
			fields = append(fields, fmt.Sprintf("mode %04o -> %04o", x.Mode.Perm()|x.Mode&0o7000, y.Mode.Perm()|y.Mode&0o7000))
		}
		if x.Owner != y.Owner {
			fields = append(fields, fmt.Sprintf("owner %s -> %s", orNone(x.Owner), orNone(y.Owner)))
		}
		if x.Group != y.Group {
			fields = append(fields, fmt.Sprintf("group %s -> %s", orNone(x.Group), orNone(y.Group)))
		}
	}
	return fields
}

func presence(absent bool) string {
	if absent {
		return "absent"
	}
	return "present"
}

func orNone(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

func (m *Masker) unit(b *strings.Builder, name string, x, y *systemd.Unit) []string {
	if x == nil {
		x = &systemd.Unit{}
	}
	if y == nil {
		y = &systemd.Unit{}
	}
	var fields []string
	if t := m.Text(name, Bytes(x.Content), Bytes(y.Content)); t != "" {
		fields = append(fields, "content")
		b.WriteString(t)
	}
	fields = append(fields, m.Dropins(b, name, x.Dropins, y.Dropins)...)
	if !reflect.DeepEqual(x.Enabled, y.Enabled) {
		fields = append(fields, fmt.Sprintf("enabled %s -> %s", boolPtr(x.Enabled), boolPtr(y.Enabled)))
	}
	if x.State != y.State {
		fields = append(fields, fmt.Sprintf("state %s -> %s", orNone(string(x.State)), orNone(string(y.State))))
	}
	if x.Reload != y.Reload {
		fields = append(fields, fmt.Sprintf("on_change reload %t -> %t", x.Reload, y.Reload))
	}
	return fields
}

// Dropins writes the diffs of a unit's drop-ins, each named
// UNIT.d/NAME, and returns a field for each that differs.
func (m *Masker) Dropins(b *strings.Builder, unit string, x, y map[string][]byte) []string {
	var fields []string
	for _, n := range unionKeys(x, y) {
		a, inA := x[n]
		c, inC := y[n]
		t := m.Text(unit+".d/"+n, Bytes(a), Bytes(c))
		switch {
		case inA && !inC:
			fields = append(fields, "drop-in "+n+" removed")
		case !inA && inC:
			fields = append(fields, "drop-in "+n+" added")
		case t != "":
			fields = append(fields, "drop-in "+n)
		}
		b.WriteString(t)
	}
	return fields
}

func boolPtr(p *bool) string {
	if p == nil {
		return "(unset)"
	}
	return fmt.Sprint(*p)
}

// Container names each setting of a container that differs, as
// "name before -> after". Environment values are secrets: a changed
// variable is named with "(secret)" and never shown.
func Container(x, y *docker.Container) []string {
	if x == nil {
		x = &docker.Container{}
	}
	if y == nil {
		y = &docker.Container{}
	}
	var fields []string
	if a, b := imageOf(x), imageOf(y); a != b {
		fields = append(fields, "image "+a+" -> "+b)
	}
	fields = append(fields, envFields(x.Env, y.Env)...)
	xv, yv := reflect.ValueOf(*x), reflect.ValueOf(*y)
	t := xv.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		switch f.Name {
		case "Name", "Image", "Tag", "Digest", "Update", "Env":
			continue
		}
		a, b := xv.Field(i).Interface(), yv.Field(i).Interface()
		if empty(xv.Field(i)) && empty(yv.Field(i)) || reflect.DeepEqual(a, b) {
			continue
		}
		fields = append(fields, snake(f.Name)+" "+show(xv.Field(i))+" -> "+show(yv.Field(i)))
	}
	return fields
}

func imageOf(c *docker.Container) string {
	if c.Image == "" {
		return "(none)"
	}
	return c.Ref()
}

func envFields(x, y map[string]string) []string {
	var out []string
	for _, k := range unionKeys(x, y) {
		a, inA := x[k]
		b, inB := y[k]
		switch {
		case inA && !inB:
			out = append(out, "env "+k+" removed")
		case !inA && inB:
			out = append(out, "env "+k+" added (secret)")
		case a != b:
			out = append(out, "env "+k+" changed (secret)")
		}
	}
	return out
}

func empty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// show formats a setting for a field line.
func show(v reflect.Value) string {
	if empty(v) {
		return "(unset)"
	}
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case []docker.Port:
		s := make([]string, len(x))
		for i, p := range x {
			s[i] = portString(p)
		}
		return "[" + strings.Join(s, " ") + "]"
	case []docker.Volume:
		s := make([]string, len(x))
		for i, vol := range x {
			s[i] = vol.Source + ":" + vol.Target
			if vol.ReadOnly {
				s[i] += ":ro"
			}
		}
		return "[" + strings.Join(s, " ") + "]"
	case docker.Health:
		return fmt.Sprintf("{cmd %q interval %s timeout %s start_period %s retries %d}", x.Cmd, x.Interval, x.Timeout, x.StartPeriod, x.Retries)
	case docker.Log:
		return fmt.Sprintf("{driver %s options %v}", x.Driver, x.Options)
	case []string:
		return fmt.Sprintf("%q", x)
	}
	return fmt.Sprint(v.Interface())
}

func portString(p docker.Port) string {
	s := ""
	if p.HostIP != "" {
		s = p.HostIP + ":"
	}
	if p.HostPort != 0 {
		s += fmt.Sprint(p.HostPort) + ":"
	}
	s += fmt.Sprint(p.ContainerPort)
	if p.Protocol != "" && p.Protocol != "tcp" {
		s += "/" + p.Protocol
	}
	return s
}

// snake turns a Go field name into its manifest name: CapAdd -> cap_add,
// CPUs -> cpus.
func snake(s string) string {
	switch s {
	case "CPUs":
		return "cpus"
	case "NetworkMode":
		return "network_mode"
	}
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) && i > 0 && !unicode.IsUpper(rune(s[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// unionKeys returns the keys of x and y, sorted, each once.
func unionKeys[V any](x, y map[string]V) []string {
	keys := slices.Sorted(maps.Keys(x))
	for k := range y {
		if _, ok := x[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
