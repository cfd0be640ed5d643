package plan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fleetRepo makes a repository at dir for hosts hosts in ten roles: a
// common motd templated with the host's name, and per role a
// configuration file and a container. The notes refs hold one note per
// host on the base commit, written in one git fast-import. The head commit
// changes role-0's file and container tag: a tenth of the hosts.
func fleetRepo(b testing.TB, dir string, hosts int) (base, head string) {
	b.Helper()
	git := func(stdin []byte, args ...string) string {
		b.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Stdin = bytes.NewReader(stdin)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@example.com",
			"GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	role := func(i int, tag, conf string) {
		write(fmt.Sprintf("roles/role-%d/app.yaml", i), fmt.Sprintf(
			"kind: file\npath: /etc/app/role-%d.conf\ncontent: %q\nmode: \"0640\"\n---\n"+
				"kind: container\nname: app-%d\nimage: registry.example.com/app-%d\ntag: %q\nenv: {TOKEN: token-of-role-%d}\nports: [\"%d:80\"]\n",
			i, conf, i, i, tag, i, 8000+i))
	}
	git(nil, "init", "-q", "-b", "main", ".")
	var fleet strings.Builder
	fleet.WriteString("targets:\n  - path: common\n")
	for i := range 10 {
		fmt.Fprintf(&fleet, "  - path: roles/role-%d\n    selector: {labels: {role: role-%d}}\n", i, i)
		role(i, "1.0", strings.Repeat(fmt.Sprintf("setting-%d = value\n", i), 40))
	}
	write("fleet.yaml", fleet.String())
	write("common/motd.yaml", "kind: file\npath: /etc/motd\ntemplate: true\ncontent: \"{{ .Host.Name }} ({{ .Host.Labels.role }})\\n\"\n")
	git(nil, "add", "-A")
	git(nil, "commit", "-qm", "base")
	base = git(nil, "rev-parse", "HEAD")

	var stream bytes.Buffer
	w := bufio.NewWriter(&stream)
	for h := range hosts {
		name := fmt.Sprintf("host-%04d", h)
		note := fmt.Sprintf(`{"schema":1,"host":%q,"labels":{"role":"role-%d","site":"s%d"},"commit":%q,"result":"applied","applied_at":"2026-01-01T00:00:00Z"}`,
			name, h%10, h%7, base)
		fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n%s\n", h+1, len(note), note)
		fmt.Fprintf(w, "commit refs/notes/outpost/%s\ncommitter b <b@example.com> 0 +0000\ndata 0\nN :%d %s\n\n", name, h+1, base)
	}
	w.Flush()
	git(stream.Bytes(), "fast-import", "--quiet")

	role(0, "1.1", strings.Repeat("setting-0 = other\n", 40))
	git(nil, "commit", "-qam", "head")
	head = git(nil, "rev-parse", "HEAD")
	return base, head
}

// BenchmarkPlan1000 plans a change that touches a tenth of a fleet of
// 1,000 hosts read from notes: what `outpost plan` does in a merge
// request's pipeline. peak-RSS-MiB is the process's peak resident set
// (VmHWM) after the runs, setup included (the repository is made by git
// child processes).
func BenchmarkPlan1000(b *testing.B) {
	dir := b.TempDir()
	base, head := fleetRepo(b, dir, 1000)
	ctx := context.Background()
	b.ResetTimer()
	var p *Plan
	for b.Loop() {
		var err error
		p, err = Run(ctx, Options{Repo: dir, Base: base, Head: head})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if p.Hosts != 1000 || p.Summary.Changed != 100 || len(p.Groups) != 1 {
		b.Fatalf("plan: %d hosts, %d changed in %d groups; want 1000, 100 in 1", p.Hosts, p.Summary.Changed, len(p.Groups))
	}
	b.ReportMetric(float64(vmHWM(b))/(1<<20), "peak-RSS-MiB")
}

// vmHWM is this process's peak resident set in bytes.
func vmHWM(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
