package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestCLIDocCoversEveryCommandAndFlag walks every command and flag that the
// binary has and fails when docs/cli.md does not document one: each command
// has a section "## outpost NAME ...", each of its own flags is named
// there as --flag, and every common flag is in "## Common flags".
func TestCLIDocCoversEveryCommandAndFlag(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := docSections(string(b))
	root := newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard})

	common, ok := sections["Common flags"]
	if !ok {
		t.Fatal(`docs/cli.md has no section "## Common flags"`)
	}
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(common, "`--"+f.Name) {
			t.Errorf("docs/cli.md: Common flags does not name --%s", f.Name)
		}
	})

	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			walk(sub)
		}
		if c == root {
			return
		}
		path := c.CommandPath()
		text, ok := commandSection(sections, path)
		if !ok {
			t.Errorf("docs/cli.md has no section %q", "## "+path)
			return
		}
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			if !strings.Contains(text, "--"+f.Name) {
				t.Errorf("docs/cli.md: section %q does not name --%s", path, f.Name)
			}
		})
		if !strings.Contains(string(b), "| `"+path) {
			t.Errorf("docs/cli.md: the table of commands has no row for %q", path)
		}
	}
	walk(root)
}

// docSections splits a markdown page by its "## " headings: heading text
// to the section's body.
func docSections(doc string) map[string]string {
	out := map[string]string{}
	var name string
	var body strings.Builder
	flush := func() {
		if name != "" {
			out[name] = body.String()
		}
		body.Reset()
	}
	for line := range strings.Lines(doc) {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			flush()
			name = strings.TrimSpace(h)
			continue
		}
		body.WriteString(line)
	}
	flush()
	return out
}

// commandSection finds the section of the command path: its heading is the
// path, alone or followed by its arguments.
func commandSection(sections map[string]string, path string) (string, bool) {
	for h, body := range sections {
		if h == path || strings.HasPrefix(h, path+" ") {
			return body, true
		}
	}
	return "", false
}
