package status

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocumentedUpdateHook installs the update hook that docs/status.md
// shows into a bare repository and pushes to it as hosts and as an
// operator, with the git command line (receive-pack runs the hook).
func TestDocumentedUpdateHook(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "status.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```sh\n#!/bin/sh\n# hooks/update")
	if !ok {
		t.Fatalf("docs/status.md has no hooks/update example")
	}
	script, _, _ := strings.Cut(rest, "```")
	script = "#!/bin/sh\n# hooks/update" + script

	dir, commits := newRepo(t, 2)
	bare := filepath.Join(t.TempDir(), "server.git")
	gitCLI(t, dir, "clone", "-q", "--bare", dir, bare)
	if err := os.WriteFile(filepath.Join(bare, "hooks", "update"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"a", "b"} {
		mustWrite(t, openNotes(t, dir, host), New(host, commits[1], Applied, t0), WriteOptions{})
	}
	gitCLI(t, dir, "branch", "-q", "other", commits[0])

	push := func(user string, refspec string) error {
		cmd := exec.Command("git", "push", "-q", bare, refspec)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "REMOTE_USER="+user)
		return cmd.Run()
	}
	tests := []struct {
		name, user, refspec string
		ok                  bool
	}{
		{name: "own notes", user: "host-a", refspec: "refs/notes/outpost/a:refs/notes/outpost/a", ok: true},
		{name: "another host's notes", user: "host-a", refspec: "refs/notes/outpost/b:refs/notes/outpost/b"},
		{name: "a branch", user: "host-a", refspec: "other:refs/heads/other"},
		{name: "delete own notes", user: "host-a", refspec: ":refs/notes/outpost/a"},
		{name: "force own notes back", user: "host-a", refspec: "+" + commits[0] + ":refs/notes/outpost/a"},
		{name: "operator pushes a branch", user: "alice", refspec: "other:refs/heads/other", ok: true},
		{name: "host b own notes", user: "host-b", refspec: "refs/notes/outpost/b:refs/notes/outpost/b", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := push(tt.user, tt.refspec)
			if (err == nil) != tt.ok {
				t.Errorf("push %s as %s: error = %v, want success %v", tt.refspec, tt.user, err, tt.ok)
			}
		})
	}
}
