package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// Problem is one validation error, positioned in a file that the operator
// can open. Line and Col are 0 when the error is about a whole file.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	// A name from the repository may hold a newline or a terminal escape:
	// printed as it is, it could forge a line of output.
	if p.Line == 0 {
		return spec.Quote(p.File) + ": " + spec.Quote(p.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s", spec.Quote(p.File), p.Line, p.Col, spec.Quote(p.Message))
}

// ValidateReport is the outcome of Validate, and the JSON document that
// `outpost validate --json` prints.
type ValidateReport struct {
	Valid bool `json:"valid"`
	// Resources and Files count the resources and the manifest files of a
	// valid repository.
	Resources int       `json:"resources"`
	Files     int       `json:"files"`
	Errors    []Problem `json:"errors"`
}

// Report is the outcome of Diff or Apply, and the JSON document that
// `outpost diff --json` and `outpost apply --json` print.
type Report struct {
	// Command is "diff" or "apply".
	Command  string `json:"command"`
	Host     string `json:"host"`
	Revision string `json:"revision,omitempty"`
	// Commit is the Git commit that Revision was made from when they
	// differ: for an OCI source, Revision is the artifact's manifest
	// digest and Commit the commit it was packed from.
	Commit string `json:"commit,omitempty"`
	// Fallback is set when Revision is the last good revision rather than
	// the source's tip: why the tip was not used. Offline is true when
	// the source could not be reached; Tip is the tip that was refused
	// (not verified), if any.
	Fallback string `json:"fallback,omitempty"`
	Offline  bool   `json:"offline,omitempty"`
	Tip      string `json:"tip,omitempty"`
	// Held is set when the tip is held back (a rollout wave that waits, a
	// halted commit, a closed maintenance window) and Revision is the
	// last good revision: the tip and why.
	Held string `json:"held,omitempty"`
	// Valid is false when the repository is invalid for this host; Errors
	// says why and nothing was changed.
	Valid  bool      `json:"valid"`
	Errors []Problem `json:"errors"`
	// Changes lists every resource that changed, or in a diff would, and
	// every one that failed, in the order they were converged.
	Changes []Change `json:"changes"`
	Summary Summary  `json:"summary"`
	// Result is what apply recorded for Revision: applied, failed,
	// rolled-back (to the last good revision), invalid or unverified; a
	// diff records nothing and leaves it empty. Reason says why it is not
	// applied.
	Result string `json:"result,omitempty"`
	Reason string `json:"reason,omitempty"`

	// secrets are the values that a diff must not show: the containers'
	// env values of the revision.
	secrets []string
	// sources holds, beside Changes and by the same index, what a diff of
	// each change is made from.
	sources []diffSource
}

// diffSource is what a change's diff is made from: what the driver found,
// and the resource converged (nil for a prune).
type diffSource struct {
	before  *spec.Before
	desired *spec.Resource
}

// Change is what happened, or would happen, to one resource.
type Change struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Action is create, update, delete (a prune) or none (a failure
	// before anything was found, or a restart only).
	Action string `json:"action"`
	// Fields names what differs, such as "content" or "mode 0644 -> 0640".
	Fields    []string `json:"fields"`
	Prune     bool     `json:"prune,omitempty"`
	Restarted bool     `json:"restarted,omitempty"`
	Skipped   bool     `json:"skipped,omitempty"`
	Error     string   `json:"error,omitempty"`
	// Diff is the unified diff of a file's or a unit's content and
	// drop-ins, from the host to the revision, secrets masked; set by
	// AddDiffs, for diff, apply -v and --json.
	Diff string `json:"diff,omitempty"`
}

// Summary counts the changes by action, and the failures.
type Summary struct {
	Create  int `json:"create"`
	Update  int `json:"update"`
	Delete  int `json:"delete"`
	Restart int `json:"restart"`
	Failed  int `json:"failed"`
}

// Changed reports whether anything changed, or in a diff would.
func (s Summary) Changed() bool { return s.Create+s.Update+s.Delete+s.Restart > 0 }

// WriteJSON prints v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteText prints a validate report: "ok: ..." on out, or every error on
// errw.
func (r *ValidateReport) WriteText(out, errw io.Writer) error {
	if !r.Valid {
		return writeProblems(errw, r.Errors)
	}
	_, err := fmt.Fprintf(out, "ok: %d resources in %d files\n", r.Resources, r.Files)
	return err
}

func writeProblems(w io.Writer, ps []Problem) error {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText prints a diff or apply report: one line per changed or failed
// resource and a summary on out, validation errors on errw. A line starts
// with "+" for a create, "~" for an update or a restart, "-" for a prune and
// "!" for a failure, then the kind, the name and what differs, as in
// "~ file /etc/b (content, mode 0644 -> 0640)".
func (r *Report) WriteText(out, errw io.Writer) error {
	if !r.Valid {
		if err := writeProblems(errw, r.Errors); err != nil {
			return err
		}
		msg := fmt.Sprintf("%s: the repository is invalid for host %s", r.Command, spec.Quote(r.Host))
		if r.Command == "apply" {
			msg += "; nothing was changed"
		}
		_, err := fmt.Fprintln(errw, msg)
		return err
	}
	if r.Held != "" {
		if _, err := fmt.Fprintf(errw, "%s: %s; converging the last good revision %s\n", r.Command, spec.Quote(r.Held), spec.Quote(r.Revision)); err != nil {
			return err
		}
	}
	if r.Fallback != "" {
		what := "the source's tip is not usable"
		if r.Offline {
			what = "offline"
		}
		if _, err := fmt.Fprintf(errw, "%s: %s: converging the last good revision %s (%s)\n", r.Command, what, spec.Quote(r.Revision), spec.Quote(r.Fallback)); err != nil {
			return err
		}
	}
	var b strings.Builder
	for _, c := range r.Changes {
		b.WriteString(c.line())
		b.WriteByte('\n')
		for _, l := range strings.SplitAfter(strings.TrimSuffix(c.Diff, "\n"), "\n") {
			if l != "" {
				b.WriteString("    " + strings.TrimSuffix(l, "\n") + "\n")
			}
		}
	}
	b.WriteString(r.summaryLine())
	b.WriteByte('\n')
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	var err error
	switch r.Result {
	case ResultRolledBack:
		_, err = fmt.Fprintf(errw, "%s: %s failed and was rolled back to the last good revision: %s\n", r.Command, r.shownRevision(), spec.Quote(r.Reason))
	case ResultFailed:
		_, err = fmt.Fprintf(errw, "%s: %s failed: %s\n", r.Command, r.shownRevision(), spec.Quote(r.Reason))
	}
	return err
}

func (c Change) line() string {
	sign := map[string]string{"create": "+", "update": "~", "delete": "-"}[c.Action]
	if sign == "" {
		sign = "~" // a restart
	}
	if c.Error != "" {
		sign = "!"
	}
	var detail []string
	switch {
	case c.Prune:
		detail = []string{"prune"}
	case c.Action == "create":
		detail = []string{"create"}
	case c.Action == "update" && len(c.Fields) > 0:
		detail = c.Fields
	case c.Action == "update":
		detail = []string{"update"}
	}
	if c.Restarted {
		detail = append(detail, "restart")
	}
	if c.Skipped {
		detail = append(detail, "skipped")
	}
	// Names come from the repository, the host and the state file; each is
	// quoted when it holds a control character, so that a line is one change.
	s := sign + " " + spec.Quote(c.Kind) + " " + spec.Quote(c.Name)
	if len(detail) > 0 {
		s += " (" + spec.Quote(strings.Join(detail, ", ")) + ")"
	}
	if c.Error != "" {
		s += ": " + spec.Quote(c.Error)
	}
	return s
}

func (r *Report) summaryLine() string {
	s := r.Summary
	at := fmt.Sprintf("host %s at %s", spec.Quote(r.Host), r.shownRevision())
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	if r.Command == "apply" {
		add(s.Create, "created")
		add(s.Update, "updated")
		add(s.Delete, "pruned")
		add(s.Restart, "restarted")
		add(s.Failed, "failed")
		if len(parts) == 0 {
			return "apply: nothing to do: " + at + " is in sync"
		}
		return "apply: " + strings.Join(parts, ", ") + " on " + at
	}
	add(s.Create, "to create")
	add(s.Update, "to update")
	add(s.Delete, "to prune")
	add(s.Restart, "to restart")
	add(s.Failed, "failed to check")
	if len(parts) == 0 {
		return "diff: no changes: " + at + " is in sync"
	}
	return "diff: " + strings.Join(parts, ", ") + " on " + at
}

// shownRevision is the revision for humans: for an OCI source, the commit
// with the artifact's digest beside it.
func (r *Report) shownRevision() string {
	if r.Commit == "" {
		return spec.Quote(shortRevision(r.Revision))
	}
	return spec.Quote(shortRevision(r.Commit)) + " (" + spec.Quote(shortRevision(r.Revision)) + ")"
}

// shortRevision shortens a revision for humans: 12 hex digits are plenty.
func shortRevision(rev string) string {
	algo, hex, ok := strings.Cut(rev, ":")
	if !ok {
		algo, hex = "", rev
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	if algo == "" {
		return hex
	}
	return algo + ":" + hex
}
