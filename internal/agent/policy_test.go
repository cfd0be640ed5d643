package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/state"
)

// TestApplyRefusesByPolicy checks allow_kinds and units.allowed_names: a
// commit that holds a resource they leave out is refused as a whole, with
// each such resource's position, and the host keeps what the previous
// commit applied: no file changes, nothing is pruned, the state is as it
// was.
func TestApplyRefusesByPolicy(t *testing.T) {
	t.Parallel()
	const (
		file      = "kind: file\npath: /etc/a\ncontent: two\n"
		unit      = "kind: unit\nname: %s\ncontent: |\n  [Service]\n  ExecStart=/bin/true\n"
		container = "kind: container\nname: web\nimage: busybox\ntag: \"1\"\n"
	)
	unitNamed := func(n string) string { return strings.Replace(unit, "%s", n, 1) }
	tests := []struct {
		name   string
		policy func(*Config)
		files  map[string]string
		// want maps each refused resource's position to what its error
		// holds.
		want map[string]string
	}{
		{
			name:   "unit not in allow_kinds",
			policy: func(c *Config) { c.AllowKinds = []string{"file", "container"} },
			files:  map[string]string{"a.yaml": file, "u.yaml": "# a unit\n" + unitNamed("web.service")},
			want:   map[string]string{"u.yaml:2:1": "unit:web.service: kind unit is not allowed on this host (allow_kinds: file, container"},
		},
		{
			name:   "unit and container with only files allowed",
			policy: func(c *Config) { c.AllowKinds = []string{"file"} },
			files:  map[string]string{"a.yaml": file, "u.yaml": unitNamed("web.service") + "---\n" + container},
			want: map[string]string{
				"u.yaml:1:1": "unit:web.service: kind unit is not allowed",
				"u.yaml:7:1": "container:web: kind container is not allowed",
			},
		},
		{
			name:   "unit name outside the patterns",
			policy: func(c *Config) { c.Units.AllowedNames = []string{"web-*.service", "*.timer"} },
			files: map[string]string{"a.yaml": file, "u.yaml": unitNamed("web-1.service") + "---\n" + unitNamed("ssh-tunnel.service") +
				"---\n" + unitNamed("backup.timer")},
			want: map[string]string{"u.yaml:7:1": "unit:ssh-tunnel.service: the name matches none of this host's units.allowed_names (web-*.service, *.timer)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := t.TempDir()
			writeTree(t, repo, map[string]string{"a.yaml": "kind: file\npath: /etc/a\ncontent: one\n"})
			cfg := sandbox(t, repo)
			tt.policy(cfg)
			if rep, err := Apply(context.Background(), cfg, nil, ApplyOptions{}); err != nil || !rep.Valid || rep.Summary.Create != 1 {
				t.Fatalf("Apply(allowed commit) = %+v, %v; want the file created", rep, err)
			}
			before, err := state.New(cfg.StateDir).Load()
			if err != nil {
				t.Fatal(err)
			}

			writeTree(t, repo, tt.files)
			for _, op := range []struct {
				name string
				run  func(context.Context, *Config, *slog.Logger) (*Report, error)
			}{{"diff", Diff}, {"apply", applyDefault}} {
				rep, err := op.run(context.Background(), cfg, nil)
				if err != nil {
					t.Fatalf("%s: error = %v, want an invalid report", op.name, err)
				}
				if rep.Valid || len(rep.Changes) != 0 {
					t.Fatalf("%s: report valid %v with %d changes, want refused with none", op.name, rep.Valid, len(rep.Changes))
				}
				got := map[string]string{}
				for _, p := range rep.Errors {
					rel, _ := filepath.Rel(repo, p.File)
					got[fmt.Sprintf("%s:%d:%d", rel, p.Line, p.Col)] = p.Message
				}
				for pos, msg := range got {
					if w, ok := tt.want[pos]; ok && strings.Contains(msg, w) {
						got[pos] = w
					}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("%s: errors by position (-want +got):\n%s", op.name, diff)
				}
			}
			if got := readFile(t, filepath.Join(cfg.Root, "etc/a")); got != "one" {
				t.Errorf("after the refused commit, /etc/a = %q, want the previous commit's %q", got, "one")
			}
			// The refused commit is recorded as invalid, and nothing
			// else of the state changes.
			after, err := state.New(cfg.StateDir).Load()
			if err != nil {
				t.Fatal(err)
			}
			if !sameRecord(before, after) || len(after.Failed) != 1 {
				t.Errorf("the refused commit changed the state to %+v, want %+v and the commit failed", after, before)
			}
			for rev, f := range after.Failed {
				if f.Result != ResultInvalid {
					t.Errorf("the refused commit %s is recorded %s, want %s", rev, f.Result, ResultInvalid)
				}
			}
		})
	}
}

// TestPolicyAllows checks that what the policy names passes.
func TestPolicyAllows(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{"u.yaml": "kind: unit\nname: web-1.service\ncontent: x\n---\nkind: file\npath: /etc/a\ncontent: a\n"})
	cfg := sandbox(t, repo)
	cfg.AllowKinds = []string{"file", "unit"}
	cfg.Units.AllowedNames = []string{"db.service", "web-?.service"}
	snap, err := dirSnapshot(repo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := desiredState(snap, cfg); err != nil {
		t.Errorf("desiredState() = %v, want it allowed", err)
	}
}

// TestApplyRefusesAgentFiles checks that a commit cannot replace the
// agent's configuration or write into its state directory, where the
// host's policy and what it owns live.
func TestApplyRefusesAgentFiles(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	cfg := sandbox(t, repo)
	cfg.Root = ""
	cfg.File = filepath.Join(t.TempDir(), "agent.yaml")
	cfg.Source.Verify.AllowedSigners = "/etc/outpost-test/allowed_signers"
	var m strings.Builder
	paths := []string{cfg.File, DefaultConfigPath, cfg.Source.Verify.AllowedSigners, filepath.Join(cfg.StateDir, "state.json")}
	for _, p := range paths {
		fmt.Fprintf(&m, "kind: file\npath: %s\ncontent: x\n---\n", p)
	}
	m.WriteString("kind: file\npath: /etc/motd\ncontent: fine\n")
	writeTree(t, repo, map[string]string{"a.yaml": m.String()})
	rep, err := Diff(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Valid || len(rep.Errors) != len(paths) {
		t.Fatalf("Diff() = valid %v, errors %+v; want the %d agent's files refused", rep.Valid, rep.Errors, len(paths))
	}
	for i := range paths {
		line := 1 + 4*i
		if p := rep.Errors[i]; p.Line != line || !strings.Contains(p.Message, "the agent's own configuration, keys and state are not managed by a commit") {
			t.Errorf("error %d = %d: %s, want line %d refusing the agent's own files", i, p.Line, p.Message, line)
		}
	}
	if _, err := os.Stat(cfg.File); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s = %v, want it never written", cfg.File, err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
