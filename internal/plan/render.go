package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// maxNames bounds the host names printed for a group in text and markdown;
// the JSON lists them all.
const maxNames = 20

// SummaryLine says what the change does, in one line: "37 hosts change:
// 30 web, 7 db; 2 fail to render; 13 unchanged".
func (p *Plan) SummaryLine() string {
	s := p.Summary
	var parts []string
	switch s.Changed {
	case 0:
		parts = append(parts, "no host changes")
	default:
		what := fmt.Sprintf("%d %s", s.Changed, plural(s.Changed, "host changes", "hosts change"))
		if by := byLabel(s); by != "" {
			what += ": " + by
		}
		parts = append(parts, what)
	}
	if s.Failed > 0 {
		parts = append(parts, fmt.Sprintf("%d %s", s.Failed, plural(s.Failed, "fails to render", "fail to render")))
	}
	parts = append(parts, fmt.Sprintf("%d unchanged", s.Unchanged))
	return strings.Join(parts, "; ")
}

// byLabel counts the changed hosts by label value, the most first; hosts
// without the label are "N without LABEL". It is "" when no changed host
// has the label.
func byLabel(s Summary) string {
	vals := slices.Collect(maps.Keys(s.ByLabel))
	if len(vals) == 1 && vals[0] == "" {
		return ""
	}
	slices.SortFunc(vals, func(a, b string) int {
		if s.ByLabel[a] != s.ByLabel[b] {
			return s.ByLabel[b] - s.ByLabel[a]
		}
		return strings.Compare(a, b)
	})
	var out []string
	for _, v := range vals {
		if v == "" {
			out = append(out, fmt.Sprintf("%d without %s", s.ByLabel[v], s.Label))
			continue
		}
		out = append(out, fmt.Sprintf("%d %s", s.ByLabel[v], v))
	}
	return strings.Join(out, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// names lists a group's hosts, at most maxNames of them.
func names(hosts []string) string {
	if len(hosts) <= maxNames {
		return strings.Join(hosts, ", ")
	}
	return strings.Join(hosts[:maxNames], ", ") + fmt.Sprintf(" and %d more", len(hosts)-maxNames)
}

func sign(action string) string {
	switch action {
	case "create":
		return "+"
	case "delete":
		return "-"
	}
	return "~"
}

func (c Change) line() string {
	s := sign(c.Action) + " " + spec.Quote(c.Kind) + " " + spec.Quote(c.Name)
	if len(c.Fields) > 0 {
		s += " (" + spec.Quote(strings.Join(c.Fields, ", ")) + ")"
	} else {
		s += " (" + c.Action + ")"
	}
	return s
}

func failureTitle(f Failure) string {
	if f.Host == "" {
		return fmt.Sprintf("the repository does not load at %s", f.Revision)
	}
	return fmt.Sprintf("%s fails to render at %s", spec.Quote(f.Host), f.Revision)
}

// WriteText prints the plan for a terminal or a CI log: the failures
// first, then each group with its changes and diffs, then the summary.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "plan: base %s -> head %s, %d hosts\n", short(p.Base), short(p.Head), p.Hosts)
	for _, f := range p.Failures {
		fmt.Fprintf(&b, "\n! %s\n", failureTitle(f))
		for _, e := range f.Errors {
			b.WriteString("    " + spec.Quote(e) + "\n")
		}
	}
	for _, g := range p.Groups {
		fmt.Fprintf(&b, "\n%d %s: %s\n", len(g.Hosts), plural(len(g.Hosts), "host", "hosts"), names(g.Hosts))
		for _, c := range g.Changes {
			b.WriteString("  " + c.line() + "\n")
			for _, l := range strings.SplitAfter(strings.TrimSuffix(c.Diff, "\n"), "\n") {
				if l != "" {
					b.WriteString("    " + strings.TrimSuffix(l, "\n") + "\n")
				}
			}
		}
	}
	b.WriteString("\nplan: " + p.SummaryLine() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the plan as indented JSON.
func (p *Plan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(p)
}

// WriteMarkdown prints the plan as a merge-request comment: the summary
// as a heading, the failures, then each group with its diffs in fenced
// blocks. Text from the repository is fenced or in code spans, so that it
// cannot format the comment.
func (p *Plan) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### outpost plan: %s\n\n", p.SummaryLine())
	fmt.Fprintf(&b, "Base `%s` → head `%s`, %d hosts.\n", short(p.Base), short(p.Head), p.Hosts)
	if len(p.Failures) > 0 {
		b.WriteString("\n#### Fail to render\n")
		for _, f := range p.Failures {
			text := strings.Join(f.Errors, "\n")
			fmt.Fprintf(&b, "\n**%s**\n\n%s\n", mdEscape(failureTitle(f)), fenced("", text))
		}
	}
	for _, g := range p.Groups {
		fmt.Fprintf(&b, "\n#### %d %s\n\n%s\n\n", len(g.Hosts), plural(len(g.Hosts), "host", "hosts"), code(names(g.Hosts)))
		for _, c := range g.Changes {
			fmt.Fprintf(&b, "- %s\n", code(c.line()))
		}
		var diffs strings.Builder
		for _, c := range g.Changes {
			diffs.WriteString(c.Diff)
		}
		if diffs.Len() > 0 {
			fmt.Fprintf(&b, "\n<details><summary>diff</summary>\n\n%s\n</details>\n", fenced("diff", diffs.String()))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fenced puts text in a code block whose fence is longer than any run of
// backticks in it.
func fenced(lang, text string) string {
	fence := strings.Repeat("`", max(3, longestRun(text, '`')+1))
	return fence + lang + "\n" + strings.TrimSuffix(text, "\n") + "\n" + fence + "\n"
}

// code puts text in a code span that no backtick in it can close.
func code(text string) string {
	ticks := strings.Repeat("`", longestRun(text, '`')+1)
	return ticks + " " + text + " " + ticks
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// mdEscape keeps a line of text from being read as markdown.
func mdEscape(s string) string {
	r := strings.NewReplacer("\\", "\\\\", "*", "\\*", "_", "\\_", "`", "\\`", "<", "&lt;", ">", "&gt;", "[", "\\[", "]", "\\]", "#", "\\#", "|", "\\|")
	return r.Replace(s)
}
