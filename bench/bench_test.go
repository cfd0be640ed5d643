// Package bench holds Outpost's side-by-side benchmarks: the scripts in this
// directory, the helper programs under cmd/, and this test, which runs each
// script's quick mode so that the scripts keep working. The figures are not
// checked: a slow machine fails nothing here, a broken script does.
package bench

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// goTool returns the go command that runs this test.
func goTool(t testing.TB) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the go command is needed to build the benchmarks' binaries: %v", err)
	}
	return p
}

// build builds the binaries that the scripts run once, as released.
func build(t testing.TB) string {
	dir := t.TempDir()
	for _, b := range []struct{ out, pkg string }{
		{"outpost", "../cmd/agent"},
		{"gitfront", "./cmd/gitfront"},
		{"fleet", "./cmd/fleet"},
	} {
		cmd := exec.Command(goTool(t), host.ReleaseBuild("-ldflags", "-s -w", "-o", filepath.Join(dir, b.out), b.pkg)...)
		cmd.Env = append(os.Environ(), host.ReleaseEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return dir
}

func TestScriptsQuick(t *testing.T) {
	t.Parallel()
	bin := build(t)
	tests := []struct {
		script string
		env    []string
		want   []string
	}{
		{"ansible-files.sh", []string{"SIZES=3"}, []string{
			"| 3 | first converge |", "| 3 | no-op converge |",
			"| 3 | one file changed in Git |", "| 3 | repair of a file edited by hand |",
		}},
		{"footprint.sh", []string{"SAMPLE=6", "STEP=2"}, []string{
			"| program size |", "| requests per unchanged poll (median) |",
		}},
		{"scale.sh", nil, []string{"| 10 |", "| 100 |"}},
		{"fleet-git.sh", []string{"AGENTS=20", "INTERVAL=3s", "DURATION=8s", "COMMIT_EVERY=3s"}, []string{
			"| nothing changed |", "| one commit every 3s |",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command("bash", tt.script, "--quick")
			cmd.Env = append(os.Environ(), "OUTPOST="+filepath.Join(bin, "outpost"), "BENCH_BIN="+bin)
			cmd.Env = append(cmd.Env, tt.env...)
			var out bytes.Buffer
			cmd.Stdout = &out
			cmd.Stderr = &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s --quick: %v\n%s", tt.script, err, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("%s --quick printed no %q:\n%s", tt.script, w, out.String())
				}
			}
		})
	}
}
