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
		c := &r.Changes[i]
		if c.Error != "" || c.desired == nil {
			continue
		}
		var text string
		switch {
		case file.Of(c.desired) != nil:
			text = fileDiff(m, c)
		case systemd.Of(c.desired) != nil:
			text = unitDiff(m, c)
		}
		c.Diff = red.String(text)
	}
}

// found returns the content the driver found, or none for a create.
func (c *Change) found() (diff.Content, bool) {
	switch {
	case c.Action == string(spec.ActionCreate):
		return diff.Content{}, true
	case c.before == nil:
		return diff.Content{}, false
	case c.before.Content == nil && c.before.Size > 0:
		return diff.Content{Size: c.before.Size, Sum: c.before.Sum}, true
	}
	return diff.Bytes(c.before.Content), true
}

func fileDiff(m *diff.Masker, c *Change) string {
	f := file.Of(c.desired)
	if f.Absent || (c.Action != string(spec.ActionCreate) && !slices.Contains(c.Fields, "content")) {
		return ""
	}
	old, ok := c.found()
	if !ok {
		return ""
	}
	return m.Text(c.Name, old, diff.Bytes(f.Content))
}

func unitDiff(m *diff.Masker, c *Change) string {
	u := systemd.Of(c.desired)
	create := c.Action == string(spec.ActionCreate)
	var b strings.Builder
	if create || slices.Contains(c.Fields, "content") {
		if old, ok := c.found(); ok {
			b.WriteString(m.Text(u.Name, old, diff.Bytes(u.Content)))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(u.Dropins)) {
		if !create && !slices.Contains(c.Fields, "drop-in "+n) {
			continue
		}
		var old []byte
		if c.before != nil {
			old = c.before.Dropins[n]
		}
		b.WriteString(m.Text(u.Name+".d/"+n, diff.Bytes(old), diff.Bytes(u.Dropins[n])))
	}
	return b.String()
}
