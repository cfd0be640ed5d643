package agent

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/state"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/peak"
)

// specCorpus is the parser's corpus of broken and hostile repositories; the
// agent must refuse each of them as a whole, before it touches the host.
const specCorpus = "../spec/testdata/invalid"

// corpusSetups add what a corpus case cannot commit: huge sparse files.
var corpusSetups = map[string]func(t *testing.T, dir string){
	"file-source-huge":   func(t *testing.T, dir string) { sparseFile(t, filepath.Join(dir, "huge.bin"), 2<<30) },
	"manifest-too-large": func(t *testing.T, dir string) { sparseFile(t, filepath.Join(dir, "big.yaml"), 4<<20+1) },
}

func sparseFile(t *testing.T, name string, size int64) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyRepo copies the corpus case src to dst, keeping symlinks as they are
// and leaving out the golden file.
func copyRepo(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Name() == "want.golden":
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// untouched fails the test when the sandbox root or the state directory
// exists: a refused repository changes nothing at all.
func untouched(t *testing.T, cfg *Config) {
	t.Helper()
	if _, err := os.Lstat(cfg.Root); err == nil {
		t.Errorf("%s exists after a refused apply, want nothing written", cfg.Root)
	}
	// The state may record the revision as invalid, and nothing else.
	st, err := state.New(cfg.StateDir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Inventory) > 0 || st.Commit != "" || st.LastGood != "" {
		t.Errorf("state after a refused apply = %+v, want no inventory, commit or last good", st)
	}
	for rev, f := range st.Failed {
		if f.Result != ResultInvalid {
			t.Errorf("state records %s as %s after a refused apply, want %s", rev, f.Result, ResultInvalid)
		}
	}
}

// TestApplyRefusesSpecCorpus runs apply, as the agent does, on every case of
// the parser's hostile corpus, including a 2 GiB source, a YAML bomb, deep
// nesting and templates that loop or read the environment: each is an
// invalid report with its reasons, and neither the sandbox root nor the
// state directory is created.
func TestApplyRefusesSpecCorpus(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(specCorpus)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 40 {
		t.Fatalf("the corpus holds %d cases, want at least 40", len(entries))
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			repo := filepath.Join(t.TempDir(), "repo")
			copyRepo(t, filepath.Join(specCorpus, e.Name()), repo)
			if setup := corpusSetups[e.Name()]; setup != nil {
				setup(t, repo)
			}
			cfg := sandbox(t, repo)
			cfg.Host = HostConfig{Name: "host-1", Labels: map[string]string{"role": "web"}}
			rep, err := Apply(context.Background(), cfg, nil, ApplyOptions{})
			if err != nil {
				t.Fatalf("Apply() error = %v, want an invalid report", err)
			}
			if rep.Valid || len(rep.Errors) == 0 {
				t.Fatalf("Apply() = valid %v with %d errors, want invalid with reasons", rep.Valid, len(rep.Errors))
			}
			for _, p := range rep.Errors {
				if p.Message == "" {
					t.Errorf("error at %s:%d has no message", p.File, p.Line)
				}
			}
			untouched(t, cfg)
		})
	}
}

// hostileCases are repositories that are valid manifests but ask the host
// for more than the agent's configuration allows.
var hostileCases = []struct {
	name     string
	manifest string
	allowed  []string
	want     []string // substrings of the errors, each must appear
}{
	{
		name:     "container-docker-socket",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
		want:     []string{"container:web: a bind mount of /var/run/docker.sock (the Docker socket) is not allowed on this host (set containers.allow_docker_socket: true"},
	},
	{
		name:     "container-run-docker-socket",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"/run/docker.sock:/sock:ro\"]\n",
		want:     []string{"a bind mount of /run/docker.sock (the Docker socket)"},
	},
	{
		name:     "container-bind-var-run",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"/var/run:/host-run\"]\n",
		want:     []string{"a bind mount of /var/run (resolves to /run), which holds the Docker socket /run/docker.sock"},
	},
	{
		name:     "container-bind-host-root",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"/:/host\"]\n",
		want:     []string{"source must not be the root directory"},
	},
	{
		name:     "container-privileged",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nprivileged: true\n",
		want:     []string{"container:web: privileged: true is not allowed on this host (set containers.allow_privileged: true"},
	},
	{
		name:     "container-host-network",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nnetwork_mode: host\n",
		want:     []string{"network_mode: host is not allowed"},
	},
	{
		name:     "container-cap-add",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\ncap_add: [SYS_ADMIN]\n",
		want:     []string{"cap_add is not allowed"},
	},
	{
		name:     "container-unconfined",
		manifest: "kind: container\nname: web\nimage: busybox:1\nsecurity_opt: [no-new-privileges, seccomp=unconfined, apparmor=unconfined, systempaths=unconfined, label=disable]\n",
		want: []string{"security_opt: seccomp=unconfined is not allowed", "security_opt: apparmor=unconfined is not allowed",
			"security_opt: systempaths=unconfined is not allowed", "security_opt: label=disable is not allowed"},
	},
	{
		name:     "container-devices",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\ndevices: [\"/dev/sda\"]\n",
		want:     []string{"devices is not allowed"},
	},
	{
		name: "container-all-at-once",
		manifest: "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nprivileged: true\nnetwork_mode: host\n" +
			"volumes: [\"/var/run/docker.sock:/s\"]\n",
		want: []string{"privileged: true", "network_mode: host", "/var/run/docker.sock"},
	},
	{
		name:     "file-outside-allowed",
		manifest: "kind: file\npath: /etc/app/a.conf\ncontent: ok\n---\nkind: file\npath: /etc/shadow\ncontent: \"root::0:0:::::\\n\"\n",
		allowed:  []string{"/etc/app"},
		want:     []string{"file:/etc/shadow: path is outside the allowed paths of this host (/etc/app)"},
	},
	{
		name:     "file-authorized-keys",
		manifest: "kind: file\npath: /root/.ssh/authorized_keys\ncontent: \"ssh-ed25519 AAAA attacker\\n\"\n",
		allowed:  []string{"/etc/app", "/srv"},
		want:     []string{"file:/root/.ssh/authorized_keys: path is outside the allowed paths"},
	},
	{
		name:     "file-allowed-prefix-sibling",
		manifest: "kind: file\npath: /etc/application/x\ncontent: x\n",
		allowed:  []string{"/etc/app"},
		want:     []string{"file:/etc/application/x: path is outside the allowed paths"},
	},
	{
		name:     "file-unit-dir-outside",
		manifest: "kind: file\npath: /etc/systemd/system/evil.service\ncontent: \"[Service]\\nExecStart=/bin/sh\\n\"\n",
		allowed:  []string{"/etc/app"},
		want:     []string{"file:/etc/systemd/system/evil.service: path is outside the allowed paths"},
	},
	{
		name: "mixed-file-and-container",
		manifest: "kind: file\npath: /etc/app/ok\ncontent: ok\n---\nkind: file\npath: /etc/sudoers.d/x\ncontent: \"ALL ALL=(ALL) NOPASSWD: ALL\\n\"\n---\n" +
			"kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"/run/docker.sock:/run/docker.sock\"]\n",
		allowed: []string{"/etc/app"},
		want:    []string{"file:/etc/sudoers.d/x: path is outside", "container:web: a bind mount of /run/docker.sock"},
	},
}

// TestApplyRefusesHostileRepositories checks the agent-level confinement:
// allowed_paths and the container restrictions refuse the whole desired state
// with a positioned error, before anything on the host changes (neither the
// sandbox root nor the state directory is created, and no driver runs).
func TestApplyRefusesHostileRepositories(t *testing.T) {
	t.Parallel()
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			repo := t.TempDir()
			writeTree(t, repo, map[string]string{"m.yaml": tc.manifest})
			for _, op := range []struct {
				name string
				run  func(context.Context, *Config, *slog.Logger) (*Report, error)
			}{{"diff", Diff}, {"apply", func(ctx context.Context, cfg *Config, log *slog.Logger) (*Report, error) {
				return Apply(ctx, cfg, log, ApplyOptions{})
			}}} {
				cfg := sandbox(t, repo)
				cfg.AllowedPaths = tc.allowed
				rep, err := op.run(context.Background(), cfg, nil)
				if err != nil {
					t.Fatalf("%s: error = %v, want an invalid report", op.name, err)
				}
				if rep.Valid {
					t.Fatalf("%s: report valid, want refused", op.name)
				}
				var msgs []string
				for _, p := range rep.Errors {
					if p.File != filepath.Join(repo, "m.yaml") || p.Line == 0 {
						t.Errorf("%s: error %q at %s:%d, want the resource's position in m.yaml", op.name, p.Message, p.File, p.Line)
					}
					msgs = append(msgs, p.Message)
				}
				all := strings.Join(msgs, "\n")
				for _, w := range tc.want {
					if !strings.Contains(all, w) {
						t.Errorf("%s: errors =\n%s\nwant one holding %q", op.name, all, w)
					}
				}
				untouched(t, cfg)
			}
		})
	}
}

// TestContainersAllowed checks that the restrictions lift when the
// configuration says so, and that ordinary containers pass.
func TestContainersAllowed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		manifest string
		allow    ContainersConfig
	}{
		{"plain", "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"/srv/web:/data:ro\", \"cache:/cache\"]\n", ContainersConfig{}},
		{"socket allowed", "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"/var/run/docker.sock:/s\"]\n", ContainersConfig{AllowDockerSocket: true}},
		{"privileged allowed", "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nprivileged: true\nnetwork_mode: host\ncap_add: [NET_ADMIN]\n", ContainersConfig{AllowPrivileged: true}},
		{"named volume called run", "kind: container\nname: web\nimage: busybox\ntag: \"1\"\nvolumes: [\"run:/run\"]\n", ContainersConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := t.TempDir()
			writeTree(t, repo, map[string]string{"m.yaml": tc.manifest})
			cfg := sandbox(t, repo)
			cfg.Containers = tc.allow
			snap, err := dirSnapshot(repo)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := desiredState(snap, cfg); err != nil {
				t.Errorf("desiredState() = %v, want it allowed", err)
			}
		})
	}
}

func TestParseConfigContainers(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("agent.yaml", []byte("containers: {allow_privileged: true, allow_docker_socket: false, allow_sockets: true, allowed_binds: [/srv, /data/app]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ContainersConfig{AllowPrivileged: true, AllowSockets: true, AllowedBinds: []string{"/srv", "/data/app"}}, cfg.Containers); d != "" {
		t.Errorf("ParseConfig() containers mismatch (-want +got):\n%s", d)
	}
	if d := cmp.Diff(ContainersConfig{}, Default().Containers); d != "" {
		t.Errorf("Default().Containers mismatch (-want +got):\n%s", d)
	}
	_, err = ParseConfig("agent.yaml", []byte("containers:\n  allow_privileged: yes\n  allow_socket: true\n"))
	for _, w := range []string{`agent.yaml:2:21: containers.allow_privileged: must be true or false, got "yes"`, `agent.yaml:3:3: containers.allow_socket: unknown field (did you mean "allow_sockets"?)`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("ParseConfig() = %v, want an error holding %q", err, w)
		}
	}
}

// TestApplyBigSourcePeakMemory names a 64 MiB blob of a Git commit as a
// file's source, over the http transport and read in place, and runs apply
// in a child process: the source is refused from the size in the blob's
// header, without being read, and the peak memory stays far below the
// blob's size. Before, the blob was read whole first: 257 MB.
func TestApplyBigSourcePeakMemory(t *testing.T) {
	t.Parallel()
	const bound = raceMemory * 48 << 20
	for _, transport := range []string{"http", "file"} {
		t.Run(transport, func(t *testing.T) {
			rss, msg := peak.Measure(t, func() error {
				root := gitserver.NewRoot(t)
				repo := root.Create("env")
				repo.Commit(gitserver.Files{"m.yaml": "kind: file\npath: /etc/big\nsource: big.bin\n"}, "first")
				repo.CommitZeros("big.bin", 64<<20)
				url := "file://" + root.Path("env")
				if transport == "http" {
					url = root.ServeHTTP(gitserver.HTTPOptions{}).URL("env")
				}
				rep, err := Apply(context.Background(), sandbox(t, url), nil, ApplyOptions{})
				if err != nil {
					return err
				}
				if rep.Valid {
					return nil
				}
				return errors.New(rep.Errors[0].String())
			})
			t.Logf("peak %d MiB: %s", rss>>20, msg)
			if !strings.Contains(msg, "too large") && !strings.Contains(msg, "larger than") {
				t.Errorf("Apply() = %q, want the source refused for its size", msg)
			}
			if rss > bound {
				t.Errorf("peak memory %d MiB, want at most %d MiB", rss>>20, bound>>20)
			}
		})
	}
}
