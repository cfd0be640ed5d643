package agent

import (
	"maps"
	"slices"
	"strings"

	"github.com/outpost-gitops/outpost/internal/diff"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
)

// AddDiffs fills each change's Diff: the unified diff of a file's or a
// unit's content and drop-ins, from what the driver found on the host to
// what the revision says. A content that holds a container's env value is
// shown as the number of lines that changed. It is called only when the
// changes are printed (diff, apply -v, --json), so that a pass that
// prints nothing computes no diff.
func (r *Report) AddDiffs() {
	m := diff.NewMasker(r.secrets...)
	red := status.NewRedactor(r.secrets...)
	for i := range r.Changes {
		if i >= len(r.sources) {
			break
		}
		c, src := &r.Changes[i], r.sources[i]
		if c.Error != "" || src.desired == nil {
			continue
		}
		var text string
		switch {
		case file.Of(src.desired) != nil:
			text = fileDiff(m, c, src)
		case systemd.Of(src.desired) != nil:
			text = unitDiff(m, c, src)
		}
		c.Diff = red.String(text)
	}
}

// found returns the content the driver found, or none for a create.
func found(c *Change, src diffSource) (diff.Content, bool) {
	switch {
	case c.Action == string(spec.ActionCreate):
		return diff.Content{}, true
	case src.before == nil:
		return diff.Content{}, false
	case src.before.Content == nil && src.before.Size > 0:
		return diff.Content{Size: src.before.Size, Sum: src.before.Sum}, true
	}
	return diff.Bytes(src.before.Content), true
}

func fileDiff(m *diff.Masker, c *Change, src diffSource) string {
	f := file.Of(src.desired)
	if f.Absent || (c.Action != string(spec.ActionCreate) && !slices.Contains(c.Fields, "content")) {
		return ""
	}
	old, ok := found(c, src)
	if !ok {
		return ""
	}
	return m.Text(c.Name, old, diff.Bytes(f.Content))
}

func unitDiff(m *diff.Masker, c *Change, src diffSource) string {
	u := systemd.Of(src.desired)
	create := c.Action == string(spec.ActionCreate)
	var b strings.Builder
	if create || slices.Contains(c.Fields, "content") {
		if old, ok := found(c, src); ok {
			b.WriteString(m.Text(u.Name, old, diff.Bytes(u.Content)))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(u.Dropins)) {
		if !create && !slices.Contains(c.Fields, "drop-in "+n) {
			continue
		}
		var old []byte
		if src.before != nil {
			old = src.before.Dropins[n]
		}
		b.WriteString(m.Text(u.Name+".d/"+n, diff.Bytes(old), diff.Bytes(u.Dropins[n])))
	}
	return b.String()
}
