package agent

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	full := Default()
	full.Source = SourceConfig{
		URL:      "https://git.example.com/fleet/env.git",
		Branch:   "prod",
		Interval: Duration(90 * time.Second),
		Timeout:  Duration(45 * time.Second),
		Auth: AuthConfig{
			SSHKeyFile:     "/etc/outpost/deploy_key",
			KnownHostsFile: "/etc/outpost/known_hosts",
			Username:       "outpost",
			PasswordFile:   "/etc/outpost/password",
			TokenFile:      "/etc/outpost/token",
			CAFile:         "/etc/outpost/ca.pem",
		},
		Verify: VerifyConfig{AllowedSigners: "/etc/outpost/allowed_signers"},
	}
	full.Host = HostConfig{Name: "edge-042", Labels: map[string]string{"site": "berlin", "role": "gateway"}}
	full.Status = StatusConfig{Push: false, Remote: "ssh://git@example.com/notes.git"}
	full.Images = ImagesConfig{Interval: Duration(10 * time.Minute)}
	full.StateDir = "/srv/outpost"
	full.HealthTimeout = Duration(30 * time.Second)
	full.AllowedPaths = []string{"/etc/web", "/srv"}
	full.Metrics = MetricsConfig{Listen: "127.0.0.1:9100"}
	full.AllowKinds = []string{"file", "unit"}
	full.Units = UnitsConfig{AllowedNames: []string{"web-*.service", "backup.timer"}}

	partial := Default()
	partial.Source.URL = "/srv/env"
	partial.Host.Labels = map[string]string{"role": "web"}

	tests := []struct {
		name string
		in   string
		want *Config
	}{
		{"empty file is all defaults", "", Default()},
		{"comment only", "# nothing here\n", Default()},
		{"null values keep defaults", "source:\n  branch:\nstate_dir:\n", Default()},
		{"partial keeps defaults", "source: {url: /srv/env}\nhost:\n  labels: {role: web}\n", partial},
		{"every field", `source:
  url: https://git.example.com/fleet/env.git
  branch: prod
  interval: 1m30s
  timeout: 45s
  auth:
    ssh_key_file: /etc/outpost/deploy_key
    known_hosts_file: /etc/outpost/known_hosts
    username: outpost
    password_file: /etc/outpost/password
    token_file: /etc/outpost/token
    ca_file: /etc/outpost/ca.pem
  verify: {allowed_signers: /etc/outpost/allowed_signers}
host:
  name: edge-042
  labels: {site: berlin, role: gateway}
status: {push: false, remote: "ssh://git@example.com/notes.git"}
images: {interval: 10m}
state_dir: /srv/outpost
health_timeout: 30s
allowed_paths: [/etc/web, /srv]
metrics: {listen: "127.0.0.1:9100"}
allow_kinds: [file, unit]
units: {allowed_names: ["web-*.service", backup.timer]}
`, full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig("agent.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("ParseConfig(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseConfig(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			"unknown top-level field",
			"source: {url: /srv/env}\nhosts: {name: a}\n",
			[]string{`agent.yaml:2:1: hosts: unknown field (did you mean "host"?)`},
		},
		{
			"unknown nested field",
			"source:\n  url: /srv/env\n  auth:\n    ssh_key: /k\n",
			[]string{"agent.yaml:4:5: source.auth.ssh_key: unknown field (known: ca_file, known_hosts_file, password_file, ssh_key_file, token_file, username)"},
		},
		{
			"every error, not the first",
			"source:\n  interval: soon\nstatus: {push: maybe}\nstate_dir: relative/dir\nallowed_paths: [/etc/../x, etc]\n",
			[]string{
				`agent.yaml:2:13: source.interval: invalid duration "soon": want a number with a unit such as 30s or 5m`,
				`agent.yaml:3:16: status.push: must be true or false, got "maybe"`,
				`agent.yaml:4:12: state_dir: must be an absolute path, got "relative/dir"`,
				`agent.yaml:5:17: allowed_paths[0]: must be an absolute, clean path, got "/etc/../x"`,
				`agent.yaml:5:28: allowed_paths[1]: must be an absolute, clean path, got "etc"`,
			},
		},
		{
			"allowed_binds not absolute or clean",
			"containers:\n  allowed_binds: [/srv/, srv, /srv/../etc, \"\"]\n",
			[]string{
				`agent.yaml:2:19: containers.allowed_binds[0]: must be an absolute, clean path, got "/srv/"`,
				`agent.yaml:2:26: containers.allowed_binds[1]: must be an absolute, clean path, got "srv"`,
				`agent.yaml:2:31: containers.allowed_binds[2]: must be an absolute, clean path, got "/srv/../etc"`,
				`agent.yaml:2:44: containers.allowed_binds[3]: must be an absolute, clean path, got ""`,
			},
		},
		{
			"fetch bound too small",
			"source:\n  url: /srv/env\n  max_fetch_bytes: 1000\n",
			[]string{"agent.yaml:3:20: source.max_fetch_bytes: must be 0 (the default, 268435456) or at least 1048576, got 1000"},
		},
		{
			"notes pushed from an oci source without a status remote",
			"source:\n  url: oci://registry.example.com/fleet/env:production\nstatus:\n  push: true\n",
			[]string{"agent.yaml:4:9: status.push: an oci:// source has no Git repository for notes: set status.remote to one"},
		},
		{
			"notes pushed from an oci source without a status remote, in flow style",
			"status: {push: true, remote: \"\"}\nsource: {url: \"oci://127.0.0.1:5000/env:main\"}\n",
			[]string{`agent.yaml:1:16: status.push: an oci:// source has no Git repository for notes: set status.remote to one`},
		},
		{
			"control characters in the host's name and labels",
			"host:\n  name: \"edge\\n- file /etc/passwd\"\n  labels: {\"a\\e[2J\": b, c: \"d\\u009b\"}\n",
			[]string{
				`agent.yaml:2:9: host.name: "edge\n- file /etc/passwd" must not hold control characters`,
				`agent.yaml:3:12: "host.labels.a\x1b[2J": "a\x1b[2J": "b" must not hold control characters`,
				`agent.yaml:3:25: host.labels.c: "c": "d\u009b" must not hold control characters`,
			},
		},
		{
			"string where a mapping belongs",
			"source: /srv/env\n",
			[]string{`agent.yaml:1:9: source: must be a mapping, got "/srv/env"`},
		},
		{
			"list where a string belongs",
			"host:\n  name: [a, b]\n",
			[]string{"agent.yaml:2:9: host.name: must be a string, got a list"},
		},
		{
			"mapping where a list belongs",
			"allowed_paths: {a: b}\n",
			[]string{"agent.yaml:1:16: allowed_paths: must be a list, got a mapping"},
		},
		{
			"label value is not a string",
			"host:\n  labels:\n    role: {a: b}\n",
			[]string{"agent.yaml:3:11: host.labels.role: must be a string, got a mapping"},
		},
		{
			"negative duration",
			"health_timeout: -5s\n",
			[]string{"agent.yaml:1:17: health_timeout: must be positive, got -5s"},
		},
		{
			"duplicate field",
			"state_dir: /a\nstate_dir: /b\n",
			[]string{"agent.yaml:2:1: state_dir: repeated (first at 1:1)"},
		},
		{
			"both verification keys",
			"source:\n  verify: {allowed_signers: /a, openpgp_keyring: /b}\n",
			[]string{"agent.yaml:2:50: source.verify: set allowed_signers or openpgp_keyring, not both"},
		},
		{
			"metrics address",
			"metrics: {listen: 9100}\n",
			[]string{`agent.yaml:1:19: metrics.listen: want host:port, got "9100"`},
		},
		{
			"unknown kind and a kind twice",
			"allow_kinds: [file, units, file]\n",
			[]string{
				`agent.yaml:1:21: allow_kinds[1]: unknown kind "units" (want file, unit, network, volume or container)`,
				`agent.yaml:1:28: allow_kinds[2]: file is listed twice`,
			},
		},
		{
			"empty policy lists",
			"allow_kinds: []\nunits:\n  allowed_names: []\n",
			[]string{
				"agent.yaml:1:14: allow_kinds: must not be empty (leave it out to allow every kind)",
				"agent.yaml:3:18: units.allowed_names: must not be empty (leave it out to allow every unit name)",
			},
		},
		{
			"bad unit name patterns",
			"units:\n  allowed_names: [\"web-[.service\", \"/etc/x\", \"\", ok.service]\n",
			[]string{
				`agent.yaml:2:19: units.allowed_names[0]: invalid pattern "web-[.service": want a unit name pattern such as web-*.service (path.Match syntax)`,
				`agent.yaml:2:36: units.allowed_names[1]: invalid pattern "/etc/x": want a unit name pattern such as web-*.service (path.Match syntax)`,
				`agent.yaml:2:46: units.allowed_names[2]: invalid pattern "": want a unit name pattern such as web-*.service (path.Match syntax)`,
			},
		},
		{
			"units is a list",
			"units: [web.service]\n",
			[]string{"agent.yaml:1:8: units: must be a mapping, got a list"},
		},
		{
			"not a mapping",
			"- a\n- b\n",
			[]string{"agent.yaml:1:1: must be a mapping, got a list"},
		},
		{
			"syntax error",
			"source:\n  url: [\n",
			[]string{"agent.yaml:2:1: did not find expected node content"},
		},
		{
			"two documents",
			"state_dir: /a\n---\nstate_dir: /b\n",
			[]string{"agent.yaml:2:1: more than one YAML document"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig("agent.yaml", []byte(tt.in))
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("ParseConfig(%q) = %v, %v; want an error matching ErrConfig", tt.in, cfg, err)
			}
			var ce ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("ParseConfig(%q) error %T is not ConfigErrors", tt.in, err)
			}
			got := make([]string, len(ce))
			for i, e := range ce {
				got[i] = e.Error()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseConfig(%q) errors mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestSourceTimeout parses source.timeout: its default, the values it
// takes, and the errors of those it refuses, each at its file and line.
func TestSourceTimeout(t *testing.T) {
	t.Parallel()
	valid := []struct {
		in   string
		want time.Duration
	}{
		{"source: {url: /srv/env}\n", 2 * time.Minute},
		{"source:\n  timeout:\n", 2 * time.Minute},
		{"source:\n  timeout: 1s\n", time.Second},
		{"source:\n  timeout: 45s\n", 45 * time.Second},
		{"source:\n  timeout: 2m30s\n", 150 * time.Second},
		{"source:\n  timeout: 5m\n", 5 * time.Minute},
	}
	for _, tt := range valid {
		t.Run(tt.in, func(t *testing.T) {
			cfg, err := ParseConfig("agent.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("ParseConfig(%q) error: %v", tt.in, err)
			}
			if got := time.Duration(cfg.Source.Timeout); got != tt.want {
				t.Errorf("ParseConfig(%q).Source.Timeout = %s, want %s", tt.in, got, tt.want)
			}
			// The puller gets it.
			if got := pullConfig(cfg).Timeout; got != tt.want {
				t.Errorf("pullConfig(%q).Timeout = %s, want %s", tt.in, got, tt.want)
			}
		})
	}

	invalid := []struct {
		in, want string
	}{
		{"source:\n  timeout: 0s\n", "agent.yaml:2:12: source.timeout: must be positive, got 0s"},
		{"source:\n  timeout: -1m\n", "agent.yaml:2:12: source.timeout: must be positive, got -1m"},
		{"source:\n  timeout: 500ms\n", "agent.yaml:2:12: source.timeout: must be between 1s and 5m0s, got 500ms"},
		{"source:\n  timeout: 5m1s\n", "agent.yaml:2:12: source.timeout: must be between 1s and 5m0s, got 5m1s"},
		{"source:\n  url: /srv/env\n  timeout: 1h\n", "agent.yaml:3:12: source.timeout: must be between 1s and 5m0s, got 1h0m0s"},
		{"source:\n  timeout: 120\n", `agent.yaml:2:12: source.timeout: invalid duration "120": want a number with a unit such as 30s or 5m`},
		{"source:\n  timeout: [1m]\n", "agent.yaml:2:12: source.timeout: must be a duration such as 1m30s, got a list"},
		{"source: {timeout: 10m}\n", "agent.yaml:1:19: source.timeout: must be between 1s and 5m0s, got 10m0s"},
	}
	for _, tt := range invalid {
		t.Run(tt.in, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, []byte(tt.in), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path, true)
			var ce ConfigErrors
			if !errors.As(err, &ce) || len(ce) != 1 {
				t.Fatalf("LoadConfig(%q) = %v, %v; want one ConfigError", tt.in, cfg, err)
			}
			if got, want := ce[0].Error(), filepath.Dir(path)+"/"+tt.want; got != want {
				t.Errorf("LoadConfig(%q) error = %q, want %q", tt.in, got, want)
			}
		})
	}
}

// TestSourceTimeoutBound keeps a poll at the longest source.timeout (a ref
// advertisement and a fetch) below the stall that makes the watchdog
// restart the agent.
func TestSourceTimeoutBound(t *testing.T) {
	t.Parallel()
	if 2*maxSourceTimeout >= stallLimit {
		t.Errorf("two operations of %s each reach the watchdog's stall limit %s", maxSourceTimeout, stallLimit)
	}
	if time.Duration(Default().Source.Timeout) < minSourceTimeout || time.Duration(Default().Source.Timeout) > maxSourceTimeout {
		t.Errorf("the default source.timeout %s is out of its bounds", time.Duration(Default().Source.Timeout))
	}
}

// TestSourceTimeoutBoundsPolls polls a git:// server that accepts the
// connection and never answers, with source.timeout 1s: the poll ends with
// a timeout, long before the default's two minutes.
func TestSourceTimeoutBoundsPolls(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	})
	cfg, err := ParseConfig("agent.yaml", []byte("source:\n  url: git://"+l.Addr().String()+"/env.git\n  timeout: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = t.TempDir()
	src, err := newGitRevSource(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := src.Poll(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, pull.ErrTimeout) {
			t.Errorf("Poll of a server that never answers = %v, want pull.ErrTimeout", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Poll of a server that never answers still blocked after 60s with source.timeout 1s")
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(good, []byte("host: {name: h1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	t.Run("missing default file is the defaults", func(t *testing.T) {
		got, err := LoadConfig(missing, false)
		if err != nil {
			t.Fatalf("LoadConfig(%s, false) error: %v", missing, err)
		}
		if diff := cmp.Diff(Default(), got); diff != "" {
			t.Errorf("LoadConfig(%s, false) mismatch (-want +got):\n%s", missing, diff)
		}
	})
	t.Run("missing explicit file is an error", func(t *testing.T) {
		_, err := LoadConfig(missing, true)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadConfig(%s, true) error = %v, want fs.ErrNotExist", missing, err)
		}
	})
	t.Run("existing file", func(t *testing.T) {
		got, err := LoadConfig(good, true)
		if err != nil {
			t.Fatalf("LoadConfig(%s, true) error: %v", good, err)
		}
		if got.Host.Name != "h1" {
			t.Errorf("LoadConfig(%s).Host.Name = %q, want h1", good, got.Host.Name)
		}
	})
	t.Run("errors name the file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte("sorce: {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(bad, false)
		var ce ConfigErrors
		if !errors.As(err, &ce) || len(ce) != 1 || ce[0].File != bad || ce[0].Line != 1 || ce[0].Field != "sorce" {
			t.Errorf("LoadConfig(%s) error = %#v, want one ConfigError at %s:1 on field sorce", bad, err, bad)
		}
	})
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.Source.URL = "/srv/env"
	cfg.Host = HostConfig{Name: "from-file", Labels: map[string]string{"role": "db", "site": "berlin"}}
	Overrides{
		Source:   "/tmp/env",
		Host:     "from-flag",
		Labels:   map[string]string{"role": "web"},
		StateDir: "/tmp/state",
		Root:     "/tmp/root",
	}.Apply(cfg)
	want := Default()
	want.Source.URL = "/tmp/env"
	want.Host = HostConfig{Name: "from-flag", Labels: map[string]string{"role": "web", "site": "berlin"}}
	want.StateDir = "/tmp/state"
	want.Root = "/tmp/root"
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("Overrides.Apply mismatch (-want +got):\n%s", diff)
	}

	empty := Default()
	empty.Host.Name = "kept"
	Overrides{}.Apply(empty)
	if empty.Host.Name != "kept" || empty.StateDir != DefaultStateDir {
		t.Errorf("empty Overrides.Apply changed the configuration: %+v", empty)
	}
}

func TestResolveHostName(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	if cfg.Host.Name != host {
		t.Errorf("Resolve() host name = %q, want the hostname %q", cfg.Host.Name, host)
	}
}

func TestParseLabel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		key, value string
		ok         bool
	}{
		{"role=web", "role", "web", true},
		{"empty=", "empty", "", true},
		{"a=b=c", "a", "b=c", true},
		{"role", "", "", false},
		{"=web", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, v, err := ParseLabel(tt.in)
			if (err == nil) != tt.ok || k != tt.key || v != tt.value {
				t.Errorf("ParseLabel(%q) = %q, %q, %v; want %q, %q, ok %v", tt.in, k, v, err, tt.key, tt.value, tt.ok)
			}
		})
	}
}

// TestOCIStatusConfig accepts an oci:// source whose notes go to a Git
// status remote, or that pushes none.
func TestOCIStatusConfig(t *testing.T) {
	for _, in := range []string{
		"source: {url: oci://127.0.0.1:5000/env:main}\nstatus: {push: true, remote: https://git.example.com/fleet-status.git}\n",
		"source: {url: oci://127.0.0.1:5000/env:main}\nstatus: {push: false}\n",
		"source: {url: oci://127.0.0.1:5000/env:main}\n",
	} {
		if _, err := ParseConfig("agent.yaml", []byte(in)); err != nil {
			t.Errorf("ParseConfig(%q) = %v, want no error", in, err)
		}
	}
}
