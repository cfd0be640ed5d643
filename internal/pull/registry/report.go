package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

// Row is one following container in `outpost images`.
type Row struct {
	Container string `json:"container"`
	Image     string `json:"image"`
	Policy    string `json:"policy"`
	// Running is the tag@digest the container runs: as observed on the
	// host when the caller knows it, else the store's current one.
	Running string `json:"running,omitempty"`
	// Best is the best candidate of the last check.
	Best string `json:"best,omitempty"`
	// Skipped lists the tags ranked above Best that were passed over.
	Skipped   []Skip    `json:"skipped,omitempty"`
	Bad       []BadTag  `json:"bad,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	Truncated bool      `json:"truncated,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Report builds the rows of `outpost images` for the following containers
// of cs from the store. running, which may be nil, maps a container's name
// to the tag@digest observed on the host.
func Report(cs []*docker.Container, s *Store, running map[string]string) []Row {
	var rows []Row
	for _, c := range cs {
		if !c.Follows() {
			continue
		}
		r := Row{Container: c.Name, Image: c.Image, Policy: Describe(c.Update), Running: running[c.Name]}
		if e, ok := s.Entry(c.Name); ok && e.Image == c.Image {
			if r.Running == "" {
				r.Running = e.Current.String()
			}
			if ch := e.Check; ch != nil {
				r.Best, r.Skipped, r.CheckedAt, r.Truncated, r.Error = ch.Best, ch.Skipped, ch.At, ch.Truncated, ch.Error
			}
			r.Bad = e.Bad
		}
		rows = append(rows, r)
	}
	return rows
}

// WriteJSON writes rows as one JSON array.
func WriteJSON(w io.Writer, rows []Row) error {
	if rows == nil {
		rows = []Row{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// WriteText writes rows as a table, with the passed-over tags, bad tags
// and errors indented under their container.
func WriteText(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tPOLICY\tRUNNING\tBEST\tCHECKED")
	for _, r := range rows {
		checked := "never"
		if !r.CheckedAt.IsZero() {
			checked = r.CheckedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Container, r.Policy, dash(short(r.Running)), dash(short(r.Best)), checked)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if len(r.Skipped) == 0 && len(r.Bad) == 0 && r.Error == "" && !r.Truncated {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", r.Container, r.Image)
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "  passed over %s: %s\n", s.Tag, s.Reason)
		}
		for _, b := range r.Bad {
			ref := short(docker.Reference("", b.Tag, b.Digest))
			fmt.Fprintf(w, "  bad %s since %s", ref, b.At.UTC().Format(time.RFC3339))
			if b.Reason != "" {
				fmt.Fprintf(w, ": %s", b.Reason)
			}
			fmt.Fprintln(w)
		}
		if r.Truncated {
			fmt.Fprintln(w, "  only the first tags were read: the repository has more than the cap")
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  last check failed: %s\n", r.Error)
		}
	}
	return nil
}

// short abbreviates the digest of tag@sha256:... to 12 hex digits.
func short(ref string) string {
	tag, d, ok := strings.Cut(ref, "@")
	if !ok {
		return ref
	}
	algo, hex, ok := strings.Cut(d, ":")
	if ok && len(hex) > 12 {
		d = algo + ":" + hex[:12]
	}
	if tag == "" {
		return d
	}
	return tag + "@" + d
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
