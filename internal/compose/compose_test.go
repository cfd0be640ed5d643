package compose

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// body is a manifest without its head comment, its kind, its name and its
// project (TestTopLevel checks those).
func body(t *testing.T, m Manifest) string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(string(m.Data), "\n") {
		if strings.HasPrefix(l, "#") || strings.HasPrefix(l, "kind: ") || strings.HasPrefix(l, "name: ") || l == "project: p" {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// withDefaultNetwork inserts the project's default network, which every
// service without networks joins, where the manifest writes it: before
// the limits and the host settings.
func withDefaultNetwork(want string) string {
	if want == "" || strings.Contains(want, "networks:") || strings.Contains(want, "network_mode:") {
		return want
	}
	lines := strings.SplitAfter(want, "\n")
	for i, l := range lines {
		for _, k := range []string{"memory:", "cpus:", "pids_limit:", "cpuset:", "hostname:", "extra_hosts:", "dns:", "cap_add:", "security_opt:", "privileged:", "read_only:", "sysctls:"} {
			if strings.HasPrefix(l, k) {
				return strings.Join(lines[:i], "") + "networks: [p_default]\n" + strings.Join(lines[i:], "")
			}
		}
	}
	return want + "networks: [p_default]\n"
}

// TestSnippets imports one service at a time, written as Compose users
// write it, and checks the manifest it yields (validated by Import, as the
// agent would read it) and what it says it dropped or changed.
func TestSnippets(t *testing.T) {
	tests := []struct {
		name    string
		service string // the service "app"'s fields
		extra   string // more top-level Compose
		want    string // the manifest after kind and name; "" when none
		dropped []string
		changed []string
	}{
		{name: "image with tag", service: "image: nginx:1.27", want: "image: nginx\ntag: \"1.27\"\n"},
		{name: "image with registry port", service: "image: registry.local:5000/team/web:2.0", want: "image: registry.local:5000/team/web\ntag: \"2.0\"\n"},
		{name: "image without tag", service: "image: redis", want: "image: redis\ntag: latest # Compose's default: pin a version, or follow the registry with update:\n", changed: []string{"image: no tag"}},
		{name: "image by digest", service: "image: alpine@sha256:" + strings.Repeat("a", 64), want: "image: alpine@sha256:" + strings.Repeat("a", 64) + "\n"},
		{name: "build only", service: "build: .", dropped: []string{"build: Outpost runs images from a registry"}},
		{name: "build and image", service: "build: .\nimage: web:1", want: "image: web\ntag: \"1\"\n", dropped: []string{"build: not built"}},
		{name: "command as a string", service: "image: a:1\ncommand: echo \"hello world\" 'x y'", want: "image: a\ntag: \"1\"\ncommand: [echo, hello world, x y]\n"},
		{name: "entrypoint as a list", service: "image: a:1\nentrypoint: [/bin/sh, -c]", want: "image: a\ntag: \"1\"\nentrypoint: [/bin/sh, -c]\n"},
		{name: "environment as a list", service: "image: a:1\nenvironment: [A=1, B=two words]", want: "image: a\ntag: \"1\"\nenv:\n  A: \"1\"\n  B: two words\n"},
		{name: "environment as a map", service: "image: a:1\nenvironment: {A: 1, B: \"\"}", want: "image: a\ntag: \"1\"\nenv:\n  A: \"1\"\n  B: \"\"\n"},
		{name: "environment from the shell", service: "image: a:1\nenvironment: [HOME]", want: "image: a\ntag: \"1\"\n", dropped: []string{"environment: HOME has no value"}},
		{name: "interpolation sees no environment", service: "image: a:${TAG:-1.0}\nenvironment:\n  - U=${USER:-nobody}", want: "image: a\ntag: \"1.0\"\nenv:\n  U: nobody\n"},
		{name: "env_file merged under environment", service: "image: a:1\nenv_file: app.env\nenvironment: [B=env]", want: "image: a\ntag: \"1\"\nenv:\n  A: file\n  B: env\n", changed: []string{"env_file: app.env"}},
		{name: "env_file outside the repository", service: "image: a:1\nenv_file: ../outside.env", want: "image: a\ntag: \"1\"\n", dropped: []string{"env_file: ../outside.env", "outside the repository"}},
		{name: "ports short", service: "image: a:1\nports: [\"80\", \"8080:80\", \"127.0.0.1:53:53/udp\"]", want: "image: a\ntag: \"1\"\nports: [\"80\", '8080:80', '127.0.0.1:53:53/udp']\n"},
		{name: "ports long", service: "image: a:1\nports: [{target: 80, published: \"8081\", host_ip: \"::1\", protocol: tcp}]", want: "image: a\ntag: \"1\"\nports: ['[::1]:8081:80']\n"},
		{name: "port range", service: "image: a:1\nports: [\"9000-9002:9000-9002\"]", want: "image: a\ntag: \"1\"\nports: ['9000:9000', '9001:9001', '9002:9002']\n"},
		{name: "absolute bind, read-only", service: "image: a:1\nvolumes: [\"/srv/data:/data:ro\"]", want: "image: a\ntag: \"1\"\nvolumes: ['/srv/data:/data:ro']\n"},
		{name: "relative bind", service: "image: a:1\nvolumes: [\"./html:/www\"]", want: "image: a\ntag: \"1\"\n", dropped: []string{"./html: a relative bind"}},
		{name: "named volume", service: "image: a:1\nvolumes: [\"data:/var/lib/x\"]", extra: "volumes:\n  data: {}\n", want: "image: a\ntag: \"1\"\nvolumes: ['p_data:/var/lib/x']\n"},
		{name: "named volume with its own name", service: "image: a:1\nvolumes: [\"data:/d\"]", extra: "volumes:\n  data: {name: shared}\n", want: "image: a\ntag: \"1\"\nvolumes: ['shared:/d']\n"},
		{name: "anonymous volume", service: "image: a:1\nvolumes: [\"/cache\"]", want: "image: a\ntag: \"1\"\n", dropped: []string{"anonymous volume"}},
		{name: "volume long syntax", service: "image: a:1\nvolumes: [{type: bind, source: /etc/x, target: /x, read_only: true}]", want: "image: a\ntag: \"1\"\nvolumes: ['/etc/x:/x:ro']\n"},
		{name: "bind with SELinux label", service: "image: a:1\nvolumes: [\"/srv/x:/x:z\"]", want: "image: a\ntag: \"1\"\nvolumes: ['/srv/x:/x']\n", dropped: []string{"SELinux"}},
		{name: "tmpfs both forms", service: "image: a:1\ntmpfs: /run\nvolumes: [{type: tmpfs, target: /tmp, tmpfs: {size: 1048576}}]", want: "image: a\ntag: \"1\"\ntmpfs: [/run, '/tmp:size=1048576']\n"},
		{name: "restart, user, workdir", service: "image: a:1\nrestart: on-failure:3\nuser: \"1000:1000\"\nworking_dir: /app", want: "image: a\ntag: \"1\"\nrestart: on-failure:3\nuser: 1000:1000\nworkdir: /app\n"},
		{name: "labels", service: "image: a:1\nlabels: [team=web]", want: "image: a\ntag: \"1\"\nlabels:\n  team: web\n"},
		{name: "healthcheck CMD", service: "image: a:1\nhealthcheck: {test: [CMD, wget, -qO-, http://127.0.0.1/], interval: 10s, timeout: 2s, start_period: 1m, retries: 3}", want: "image: a\ntag: \"1\"\nhealth:\n  cmd: [wget, -qO-, 'http://127.0.0.1/']\n  interval: 10s\n  timeout: 2s\n  start_period: 1m0s\n  retries: 3\n"},
		{name: "healthcheck as a string", service: "image: a:1\nhealthcheck: {test: curl -f localhost}", want: "image: a\ntag: \"1\"\nhealth:\n  cmd: [/bin/sh, -c, curl -f localhost]\n", changed: []string{"CMD-SHELL"}},
		{name: "healthcheck disabled", service: "image: a:1\nhealthcheck: {disable: true}", want: "image: a\ntag: \"1\"\n", dropped: []string{"healthcheck: disable"}},
		{name: "logging", service: "image: a:1\nlogging: {driver: json-file, options: {max-size: 10m}}", want: "image: a\ntag: \"1\"\nlog:\n  driver: json-file\n  options:\n    max-size: 10m\n"},
		{name: "stop grace period and signal", service: "image: a:1\nstop_grace_period: 1m30s\nstop_signal: SIGINT", want: "image: a\ntag: \"1\"\nstop_timeout: 1m30s\nstop_signal: SIGINT\n"},
		{name: "depends_on healthy", service: "image: a:1\ndepends_on: {db: {condition: service_healthy}}", extra: "  db: {image: db:1}\n", want: "image: a\ntag: \"1\"\nafter: ['container:p-db']\nnetworks: [p_default]\n", changed: []string{"depends_on: db: service_healthy"}},
		{name: "depends_on completed", service: "image: a:1\ndepends_on: {init: {condition: service_completed_successfully}}", extra: "  init: {image: init:1}\n", want: "image: a\ntag: \"1\"\nafter: ['container:p-init']\nnetworks: [p_default]\n", dropped: []string{"service_completed_successfully"}},
		{name: "networks", service: "image: a:1\nnetworks: [front, back]", extra: "networks:\n  front: {}\n  back: {name: backend}\n", want: "image: a\ntag: \"1\"\nnetworks: [backend, p_front]\n"},
		{name: "network aliases", service: "image: a:1\nnetworks: {front: {aliases: [web]}}", extra: "networks:\n  front: {}\n", want: "image: a\ntag: \"1\"\nnetworks:\n  p_front:\n    aliases: [web]\n"},
		{name: "static addresses", service: "image: a:1\nnetworks:\n    back: {ipv4_address: 172.30.0.5, ipv6_address: \"fd00::5\", mac_address: \"02:42:ac:11:00:02\"}\n    front:", extra: "networks:\n  front: {}\n  back: {}\n", want: "image: a\ntag: \"1\"\nnetworks:\n  p_back:\n    ipv4_address: 172.30.0.5\n    ipv6_address: fd00::5\n  p_front:\n", dropped: []string{"back: MAC"}, changed: []string{"back: a static address needs a subnet on the network"}},
		{name: "network options", service: "image: a:1\nnetworks: [n]", extra: "networks:\n  n: {driver: bridge, driver_opts: {com.docker.network.bridge.name: br9}}\n", want: "image: a\ntag: \"1\"\nnetworks: [p_n]\n"},
		{name: "network mode host", service: "image: a:1\nnetwork_mode: host", want: "image: a\ntag: \"1\"\nnetwork_mode: host\n"},
		{name: "network mode of a service", service: "image: a:1\nnetwork_mode: service:vpn", extra: "  vpn: {image: vpn:1}\n", want: "image: a\ntag: \"1\"\nafter: ['container:p-vpn']\nnetwork_mode: container:p-vpn\n"},
		{name: "memory and cpus", service: "image: a:1\nmem_limit: 512m\ncpus: 0.5", want: "image: a\ntag: \"1\"\nmemory: 512m\ncpus: 0.5\n"},
		{name: "deploy limits", service: "image: a:1\ndeploy: {resources: {limits: {memory: 1G, cpus: \"2\"}}}", want: "image: a\ntag: \"1\"\nmemory: 1g\ncpus: 2\n"},
		{name: "deploy replicas", service: "image: a:1\ndeploy: {replicas: 3}", want: "image: a\ntag: \"1\"\n", dropped: []string{"deploy.replicas"}},
		{name: "host settings", service: "image: a:1\nhostname: web1\nextra_hosts: [\"db.internal:10.0.0.5\"]\ndns: [1.1.1.1]\nread_only: true\ninit: true\ntty: true", want: "image: a\ntag: \"1\"\nhostname: web1\nextra_hosts: ['db.internal:10.0.0.5']\ndns: [1.1.1.1]\nread_only: true\ninit: true\ntty: true\n"},
		{name: "privileges", service: "image: a:1\ncap_add: [NET_ADMIN]\ncap_drop: [ALL]\nsecurity_opt: [no-new-privileges:true]\ngroup_add: [\"44\"]", want: "image: a\ntag: \"1\"\ncap_add: [NET_ADMIN]\ncap_drop: [ALL]\nsecurity_opt: ['no-new-privileges:true']\ngroup_add: [\"44\"]\n"},
		{name: "limits of the kernel", service: "image: a:1\npids_limit: 100\ncpuset: 0-1\nsysctls: [net.core.somaxconn=1024]", want: "image: a\ntag: \"1\"\npids_limit: 100\ncpuset: 0-1\nsysctls:\n  net.core.somaxconn: \"1024\"\n"},
		{name: "devices", service: "image: a:1\ndevices: [\"/dev/ttyUSB0\", \"/dev/sda:/dev/xvda:r\"]", want: "image: a\ntag: \"1\"\ndevices: [/dev/ttyUSB0, '/dev/sda:/dev/xvda:r']\n"},
		{name: "fields Outpost lacks", service: "image: a:1\nlinks: [db]", extra: "  db: {image: db:1}\n", want: "image: a\ntag: \"1\"\nafter: ['container:p-db']\nnetworks: [p_default]\n", dropped: []string{"app: links"}},
		{name: "expose", service: "image: a:1\nexpose: [\"3000\", 8000-8002/udp, 9000]", want: "image: a\ntag: \"1\"\nnetworks: [p_default]\nexpose: [\"3000\", 8000-8002/udp, \"9000\"]\n"},
		{name: "ulimits and shm_size", service: "image: a:1\nshm_size: 256m\nulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}, core: 0}", want: "image: a\ntag: \"1\"\nnetworks: [p_default]\nshm_size: 256m\nulimits:\n  core: {soft: 0, hard: 0}\n  nofile: {soft: 20000, hard: 40000}\n  nproc: 65535\n"},
		{name: "secrets and configs", service: "image: a:1\nsecrets: [pw]", extra: "secrets:\n  pw: {file: ./pw.txt}\n", want: "image: a\ntag: \"1\"\n", dropped: []string{"app: secrets", "secrets: Compose secrets"}},
		{name: "profiles", service: "image: a:1\nprofiles: [debug]", want: "image: a\ntag: \"1\"\n", changed: []string{"profiles"}},
		{name: "extends", service: "extends: {file: ../base.yaml, service: web}\nimage: a:1", want: "image: a\ntag: \"1\"\n", dropped: []string{"app: extends"}},
		{name: "container name", service: "image: a:1\ncontainer_name: my-app", want: "image: a\ntag: \"1\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			repo := filepath.Join(dir, "repo")
			if err := os.MkdirAll(repo, 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(repo, "app.env"), []byte("# env\nA=file\nB=file\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "outside.env"), []byte("SECRET=1\n"), 0o644)
			svc := "  app:\n    " + strings.ReplaceAll(tt.service, "\n", "\n    ") + "\n"
			file := filepath.Join(repo, "compose.yaml")
			if err := os.WriteFile(file, []byte("name: p\nservices:\n"+svc+tt.extra), 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := Import(context.Background(), Options{Files: []string{file}})
			if err != nil {
				t.Fatalf("Import = %v", err)
			}
			var got string
			for _, m := range res.Manifests {
				if m.Name == "app.yaml" {
					got = body(t, m)
				}
			}
			want := withDefaultNetwork(tt.want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("app.yaml (-want +got):\n%s\nwhole:\n%s", diff, res.Text())
			}
			for _, l := range []struct {
				what  string
				want  []string
				notes []Note
			}{{"dropped", tt.dropped, res.Dropped}, {"changed", tt.changed, res.Changed}} {
				for _, w := range l.want {
					found := false
					for _, n := range l.notes {
						found = found || strings.Contains(n.String(), w)
					}
					if !found {
						t.Errorf("%s notes %v lack %q", l.what, l.notes, w)
					}
				}
			}
			if len(tt.dropped) == 0 && len(res.Dropped) > 0 {
				t.Errorf("dropped %v, want nothing dropped", res.Dropped)
			}
		})
	}
}

// TestTopLevel imports a project's networks and volumes: each declared
// one becomes a manifest of its kind, and every manifest names the project.
func TestTopLevel(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, []byte(`name: shop
services:
  db:
    image: db:1
    volumes: [data:/data, cache:/cache]
    networks:
      back: {ipv4_address: 172.28.0.10}
  web:
    image: web:1
networks:
  back:
    internal: true
    driver_opts: {com.docker.network.bridge.name: br-shop}
    ipam: {config: [{subnet: 172.28.0.0/24, gateway: 172.28.0.1}]}
  outside: {external: true}
volumes:
  data: {}
  cache: {driver_opts: {type: tmpfs, device: tmpfs}, labels: {tier: cache}}
  shared: {external: true}
`), 0o644)
	res, err := Import(context.Background(), Options{Files: []string{file}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range res.Manifests {
		got[m.Name] = string(m.Data)
	}
	want := map[string]string{
		"back.network.yaml": "# Imported from network back of Compose project shop by outpost import compose.\nkind: network\nname: shop_back\nproject: shop\n" +
			"options:\n  com.docker.network.bridge.name: br-shop\ninternal: true\nipam:\n  config:\n    - {subnet: 172.28.0.0/24, gateway: 172.28.0.1}\n",
		"data.volume.yaml": "# Imported from volume data of Compose project shop by outpost import compose.\nkind: volume\nname: shop_data\nproject: shop\n" +
			"adopt: true # a volume Compose made keeps its data; never removed unless it says prune: true\n",
		"cache.volume.yaml": "# Imported from volume cache of Compose project shop by outpost import compose.\nkind: volume\nname: shop_cache\nproject: shop\n" +
			"options:\n  device: tmpfs\n  type: tmpfs\nlabels:\n  tier: cache\nadopt: true # a volume Compose made keeps its data; never removed unless it says prune: true\n",
	}
	for name, w := range want {
		if diff := cmp.Diff(w, got[name]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	for _, name := range []string{"db.yaml", "web.yaml"} {
		if !strings.Contains(got[name], "\nproject: shop\n") {
			t.Errorf("%s does not name the project:\n%s", name, got[name])
		}
	}
	if len(got) != len(want)+2 {
		t.Errorf("manifests %v: want the two services, the network back and the volumes data and cache; none for the external ones or the default network", slices.Sorted(maps.Keys(got)))
	}
	for _, n := range res.Changed {
		if strings.Contains(n.String(), "static address") {
			t.Errorf("changed: %s; back has a subnet", n)
		}
	}
}

func TestImportRefusesFilesOutside(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	os.MkdirAll(repo, 0o755)
	outside := filepath.Join(dir, "compose.yaml")
	os.WriteFile(outside, []byte("services:\n  a: {image: a:1}\n"), 0o644)
	os.Symlink(outside, filepath.Join(repo, "link.yaml"))
	for _, f := range []string{outside, filepath.Join(repo, "link.yaml")} {
		if _, err := Import(context.Background(), Options{Files: []string{f}, Root: repo}); !errors.Is(err, ErrOutside) {
			t.Errorf("Import(%s) = %v, want ErrOutside", f, err)
		}
	}
}

// TestWriteNeverOverwrites writes the manifests of a project, then again
// into the same directory: the second write changes nothing.
func TestWriteNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, []byte("services:\n  a: {image: a:1}\n  b: {image: b:1}\n"), 0o644)
	res, err := Import(context.Background(), Options{Files: []string{file}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := res.Write(out); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "b.yaml"), []byte("mine\n"), 0o644)
	os.Remove(filepath.Join(out, "a.yaml"))
	if err := res.Write(out); err == nil {
		t.Fatal("second Write = nil, want an error for b.yaml")
	}
	if _, err := os.Stat(filepath.Join(out, "a.yaml")); err == nil {
		t.Error("the second Write wrote a.yaml although b.yaml exists")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "b.yaml")); string(b) != "mine\n" {
		t.Errorf("b.yaml = %q, overwritten", b)
	}
}

// TestExamples imports every Compose file under the project's examples:
// each service becomes a manifest or is named in a note.
func TestExamples(t *testing.T) {
	var files []string
	err := filepath.WalkDir("../../examples", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(d.Name(), "compose") || strings.HasPrefix(d.Name(), "docker-compose")) && strings.HasSuffix(d.Name(), ".yaml") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Compose file under examples/")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			res, err := Import(context.Background(), Options{Files: []string{f}})
			if err != nil {
				t.Fatalf("Import(%s) = %v", f, err)
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Services map[string]any `yaml:"services"`
			}
			if err := yaml.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			for svc := range doc.Services {
				made := slices.ContainsFunc(res.Manifests, func(m Manifest) bool { return m.Name == svc+".yaml" })
				noted := slices.ContainsFunc(res.Dropped, func(n Note) bool { return n.Service == svc })
				if !made && !noted {
					t.Errorf("service %s of %s: no manifest and no note", svc, f)
				}
			}
			t.Logf("%s: %d manifests, %d dropped, %d changed", f, len(res.Manifests), len(res.Dropped), len(res.Changed))
		})
	}
}
