package agent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReportQuotesNames checks that a name holding a newline, a terminal
// escape or a C1 control (which the state file or the host may still carry,
// though validation refuses them in a repository) prints as one quoted
// field, so that it cannot forge a line such as "- file /etc/passwd (prune)".
func TestReportQuotesNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rep  Report
		want []string
	}{
		{
			name: "plain",
			rep:  Report{Command: "apply", Host: "h1", Valid: true, Changes: []Change{{Kind: "file", Name: "/etc/a", Action: "create"}}},
			want: []string{"+ file /etc/a (create)", "host h1 at"},
		},
		{
			name: "newline",
			rep:  Report{Command: "apply", Host: "h1", Valid: true, Changes: []Change{{Kind: "file", Name: "/etc/a\n- file /etc/passwd (prune)", Action: "create"}}},
			want: []string{`+ file "/etc/a\n- file /etc/passwd (prune)" (create)`},
		},
		{
			name: "escape-and-c1",
			rep:  Report{Command: "diff", Host: "h\x1b[2J", Valid: true, Changes: []Change{{Kind: "unit", Name: "a\u009b31m.service", Action: "update", Fields: []string{"content\r"}, Error: "boom\x07"}}},
			want: []string{`! unit "a\u009b31m.service" ("content\r"): "boom\a"`, `host "h\x1b[2J"`},
		},
		{
			name: "invalid",
			rep:  Report{Command: "apply", Host: "h\n2", Errors: []Problem{{File: "a\nb.yaml", Line: 1, Col: 2, Message: "x\ny"}}},
			want: []string{`"a\nb.yaml":1:2: "x\ny"`, `apply: the repository is invalid for host "h\n2"; nothing was changed`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errw strings.Builder
			if err := tt.rep.WriteText(&out, &errw); err != nil {
				t.Fatal(err)
			}
			text := out.String() + errw.String()
			for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
				for _, r := range line {
					if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
						t.Errorf("WriteText() printed the control character %U in line %q", r, line)
					}
				}
			}
			var missing []string
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					missing = append(missing, w)
				}
			}
			if diff := cmp.Diff([]string(nil), missing); diff != "" {
				t.Errorf("WriteText() = %q, missing (-want +got):\n%s", text, diff)
			}
			if lines := strings.Count(text, "\n"); lines != len(tt.rep.Changes)+len(tt.rep.Errors)+1 {
				t.Errorf("WriteText() printed %d lines, want %d: %q", lines, len(tt.rep.Changes)+len(tt.rep.Errors)+1, text)
			}
		})
	}
}
