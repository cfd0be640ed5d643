package plan

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// repo makes a Git repository with one commit per map of files (each
// commit's files written over the previous ones) and returns the commits.
func repo(t *testing.T, commits ...map[string]string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main", ".")
	var hashes []string
	for i, files := range commits {
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		git("add", "-A")
		git("commit", "-qm", "c"+string(rune('0'+i)))
		hashes = append(hashes, git("rev-parse", "HEAD"))
	}
	return dir, hashes
}

// TestRunFleetYAMLHosts plans for hosts known only from fleet.yaml and the
// command line, without notes: creates, deletes, a repository that does
// not load at head, and the exit statuses.
func TestRunFleetYAMLHosts(t *testing.T) {
	t.Parallel()
	fleet := "targets:\n  - path: edge\n    selector: {names: [edge-1, edge-2], labels: {role: edge}}\n"
	dir, c := repo(t,
		map[string]string{"fleet.yaml": fleet, "edge/a.yaml": "kind: file\npath: /etc/a\ncontent: \"a\\n\"\n"},
		map[string]string{"edge/a.yaml": "kind: file\npath: /etc/b\ncontent: \"```\\n\"\n"},
		map[string]string{"edge/a.yaml": "kind: file\npath: relative\n"},
	)
	ctx := context.Background()

	p, err := Run(ctx, Options{Repo: dir, Base: c[0], Head: c[1], Hosts: []spec.Host{{Name: "other"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Group{{Hosts: []string{"edge-1", "edge-2"}, Changes: []Change{
		{Kind: "file", Name: "/etc/b", Action: "create", Fields: []string{"content"}, Diff: "--- /etc/b\n+++ /etc/b\n@@ -0,0 +1 @@\n+```\n"},
		{Kind: "file", Name: "/etc/a", Action: "delete", Fields: []string{"content"}, Diff: "--- /etc/a\n+++ /etc/a\n@@ -1 +0,0 @@\n-a\n"},
	}}}
	if diff := cmp.Diff(want, p.Groups); diff != "" {
		t.Errorf("groups mismatch (-want +got):\n%s", diff)
	}
	if p.ExitCode() != ExitChanges || p.Hosts != 3 || !cmp.Equal(p.Unchanged, []string{"other"}) {
		t.Errorf("plan: exit %d, hosts %d, unchanged %v", p.ExitCode(), p.Hosts, p.Unchanged)
	}
	var md strings.Builder
	if err := p.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	// The content's backticks cannot close the block they are shown in.
	if !strings.Contains(md.String(), "````diff\n") {
		t.Errorf("markdown does not fence content with backticks:\n%s", md.String())
	}

	p, err = Run(ctx, Options{Repo: dir, Base: c[1], Head: c[2]})
	if err != nil {
		t.Fatal(err)
	}
	if p.ExitCode() != ExitFailed || len(p.Failures) != 1 || p.Failures[0].Host != "" || p.Failures[0].Revision != "head" {
		t.Errorf("plan of an invalid head: exit %d, failures %+v", p.ExitCode(), p.Failures)
	}
	var text strings.Builder
	if err := p.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "! the repository does not load at head\n    edge/a.yaml:2:7: ") {
		t.Errorf("text of an invalid head:\n%s", text.String())
	}
}
