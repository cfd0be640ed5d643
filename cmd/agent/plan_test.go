package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/plan"
)

// plantedSecret is a container env value that must never be printed.
const plantedSecret = "pl4nted-S3CRET-value"

// planRepo makes a Git repository at dir with three commits and returns
// their hashes: base; head, which changes the web role's container (its
// secret too) and the db role's file (which then holds the secret); and
// broken, which adds a template that fails for the canary hosts. The notes
// refs hold a note on base for each of 30 web, 18 db and 2 canary hosts.
func planRepo(t testing.TB, dir string, web, db, canary int) (base, head, broken string) {
	t.Helper()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_AUTHOR_DATE=2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main", ".")
	write("fleet.yaml", "targets:\n  - path: common\n  - path: roles/web\n    selector: {labels: {role: web}}\n"+
		"  - path: roles/db\n    selector: {labels: {role: db}}\n  - path: roles/canary\n    selector: {labels: {role: canary}}\n")
	write("common/motd.yaml", "kind: file\npath: /etc/motd\ncontent: \"welcome\\n\"\n")
	write("roles/web/web.yaml", "kind: container\nname: web\nimage: registry.example.com/web\ntag: \"1.0\"\nenv: {DB_PASSWORD: old-value-1}\nrestart: \"no\"\n")
	write("roles/db/db.yaml", "kind: file\npath: /etc/db.conf\ncontent: \"port=5432\\nuser=app\\nmax=10\\n\"\n")
	write("roles/canary/README", "canary hosts\n")
	git("add", "-A")
	git("commit", "-qm", "base")
	base = git("rev-parse", "HEAD")
	note := func(host, role string) {
		n := fmt.Sprintf(`{"schema":1,"host":%q,"labels":{"role":%q},"commit":%q,"result":"applied","applied_at":"2026-01-01T00:00:00Z"}`, host, role, base)
		git("notes", "--ref", "outpost/"+host, "add", "-m", n, base)
	}
	for i := 1; i <= web; i++ {
		note(fmt.Sprintf("web-%02d", i), "web")
	}
	for i := 1; i <= db; i++ {
		note(fmt.Sprintf("db-%02d", i), "db")
	}
	for i := 1; i <= canary; i++ {
		note(fmt.Sprintf("canary-%d", i), "canary")
	}
	write("roles/web/web.yaml", "kind: container\nname: web\nimage: registry.example.com/web\ntag: \"1.1\"\nenv: {DB_PASSWORD: "+plantedSecret+"}\nrestart: unless-stopped\n")
	write("roles/db/db.yaml", "kind: file\npath: /etc/db.conf\ncontent: \"port=5432\\nuser=app\\npassword="+plantedSecret+"\\nmax=20\\n\"\nmode: \"0600\"\n")
	git("commit", "-qam", "head")
	head = git("rev-parse", "HEAD")
	write("roles/canary/motd.yaml", "kind: file\npath: /etc/canary\ntemplate: true\ncontent: \"{{ slice .Host.Name 0 40 }}\\n\"\n")
	git("add", "-A")
	git("commit", "-qm", "broken")
	broken = git("rev-parse", "HEAD")
	return base, head, broken
}

// TestPlanFleetFromNotes plans over 50 hosts read from the notes of a real
// repository, through the command line: the grouping, the three outputs,
// the exit statuses, and a planted secret that shows nowhere.
func TestPlanFleetFromNotes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, head, broken := planRepo(t, dir, 30, 18, 2)
	ctx := context.Background()
	outpost := func(want int, args ...string) string {
		t.Helper()
		var out, errw bytes.Buffer
		args = append([]string{"plan", "--source", dir, "-vv"}, args...)
		if code := run(ctx, args, &out, &errw); code != want {
			t.Fatalf("outpost %s exited %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out.String(), errw.String())
		}
		all := out.String() + errw.String()
		if strings.Contains(all, plantedSecret) {
			t.Errorf("outpost %s printed the planted secret:\n%s", strings.Join(args, " "), all)
		}
		return out.String()
	}

	t.Run("no change", func(t *testing.T) {
		got := outpost(0, "--base", base, "--head", base)
		if !strings.Contains(got, "plan: no host changes; 50 unchanged\n") {
			t.Errorf("plan of base..base:\n%s", got)
		}
	})

	t.Run("text", func(t *testing.T) {
		got := outpost(1, "--base", "HEAD~2", "--head", "HEAD~1")
		for _, want := range []string{
			"plan: base " + base[:12] + " -> head " + head[:12] + ", 50 hosts\n",
			"\n30 hosts: web-01, web-02,",
			" and 10 more\n",
			"  ~ container web (image registry.example.com/web:1.0 -> registry.example.com/web:1.1, env DB_PASSWORD changed (secret), restart no -> unless-stopped)\n",
			"\n18 hosts: db-01,",
			"  ~ file /etc/db.conf (content, mode 0644 -> 0600)\n",
			"    <secret: 3 lines changed>\n",
			"plan: 48 hosts change: 30 web, 18 db; 2 unchanged\n",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("plan output lacks %q:\n%s", want, got)
			}
		}
		if strings.Index(got, "30 hosts") > strings.Index(got, "18 hosts") {
			t.Errorf("the larger group is not first:\n%s", got)
		}
	})

	t.Run("json", func(t *testing.T) {
		var p plan.Plan
		if err := json.Unmarshal([]byte(outpost(1, "--json", "--base", base, "--head", head)), &p); err != nil {
			t.Fatal(err)
		}
		if p.Hosts != 50 || len(p.Groups) != 2 || len(p.Groups[0].Hosts) != 30 || len(p.Groups[1].Hosts) != 18 || len(p.Unchanged) != 2 || len(p.Failures) != 0 {
			t.Errorf("plan --json: hosts %d, groups %d, unchanged %v, failures %v", p.Hosts, len(p.Groups), p.Unchanged, p.Failures)
		}
		if p.Summary.Changed != 48 || p.Summary.ByLabel["web"] != 30 || p.Summary.ByLabel["db"] != 18 {
			t.Errorf("plan --json summary = %+v", p.Summary)
		}
	})

	t.Run("markdown", func(t *testing.T) {
		got := outpost(1, "--markdown", "--base", base, "--head", head)
		for _, want := range []string{
			"### outpost plan: 48 hosts change: 30 web, 18 db; 2 unchanged\n",
			"#### 30 hosts\n",
			"#### 18 hosts\n",
			"- ` ~ file /etc/db.conf (content, mode 0644 -> 0600) `\n",
			"```diff\n",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("plan --markdown lacks %q:\n%s", want, got)
			}
		}
	})

	t.Run("render failure", func(t *testing.T) {
		got := outpost(2, "--base", base, "--head", broken)
		first := strings.Index(got, "! ")
		if first < 0 || first > strings.Index(got, "30 hosts") {
			t.Errorf("the failures are not listed first:\n%s", got)
		}
		for _, want := range []string{"! canary-1 fails to render at head\n", "! canary-2 fails to render at head\n", "; 2 fail to render;"} {
			if !strings.Contains(got, want) {
				t.Errorf("plan lacks %q:\n%s", want, got)
			}
		}
		var p plan.Plan
		if err := json.Unmarshal([]byte(outpost(2, "--json", "--base", base, "--head", broken)), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Failures) != 2 || p.Failures[0].Host != "canary-1" {
			t.Errorf("plan --json failures = %+v", p.Failures)
		}
		outpost(2, "--markdown", "--base", base, "--head", broken)
	})

	t.Run("command line host", func(t *testing.T) {
		got := outpost(1, "--base", base, "--head", head, "--host", "web-99", "--label", "role=web")
		if !strings.Contains(got, "plan: 49 hosts change: 31 web, 18 db; 2 unchanged\n") {
			t.Errorf("plan with --host:\n%s", got)
		}
	})

	t.Run("bad revision", func(t *testing.T) {
		outpost(2, "--base", "no-such-branch", "--head", head)
	})
}
