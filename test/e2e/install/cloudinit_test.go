package install

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/test/e2e/host"
	"gopkg.in/yaml.v3"
)

// instanceData is what a cloud's metadata service gives cloud-init, as far
// as user-data-metadata.yaml uses it (cloud-init query --all lists it all).
var instanceData = map[string]any{
	"v1": map[string]any{
		"cloud_name":        "aws",
		"platform":          "ec2",
		"region":            "eu-central-1",
		"availability_zone": "eu-central-1b",
		"local_hostname":    "edge-042",
		"instance_id":       "i-0a1b2c3d4e5f",
	},
}

// userData is the part of a cloud-config that the test reads.
type userData struct {
	WriteFiles []struct {
		Path        string `yaml:"path"`
		Owner       string `yaml:"owner"`
		Permissions string `yaml:"permissions"`
		Content     string `yaml:"content"`
	} `yaml:"write_files"`
	Runcmd []any `yaml:"runcmd"`
}

// TestCloudInit checks both cloud-init examples with Debian's cloud-init:
// the jinja one rendered by cloud-init from sample instance data first, as
// cloud-init on an instance does, since its schema check cannot read jinja.
// Then the agent.yaml that each writes must be a valid configuration that
// names a source, written root-only.
func TestCloudInit(t *testing.T) {
	ci := need(t, "cloud-init", "cloud-init")
	root, err := host.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	idata := filepath.Join(dir, "instance-data.json")
	b, err := json.Marshal(instanceData)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(idata, b, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		file   string
		jinja  bool
		name   string
		labels map[string]string
	}{
		{file: "user-data.yaml", labels: map[string]string{"site": "berlin", "role": "gateway"}},
		{file: "user-data-metadata.yaml", jinja: true, name: "edge-042",
			labels: map[string]string{"region": "eu-central-1", "zone": "eu-central-1b", "platform": "ec2"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(root, "packaging/cloud-init", tc.file)
			if tc.jinja {
				src, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(string(src), "## template: jinja\n") {
					t.Fatalf("%s does not begin with ## template: jinja, so cloud-init would not render it", tc.file)
				}
				out, err := exec.Command(ci, "devel", "render", "--instance-data", idata, path).Output()
				if err != nil {
					t.Fatalf("cloud-init devel render %s: %v\n%s", tc.file, err, stderrOf(err))
				}
				// cloud-init renders a variable it lacks as this marker
				// rather than failing.
				if strings.Contains(string(out), "CI_MISSING_JINJA_VAR") {
					t.Fatalf("%s uses instance data that cloud-init does not have:\n%s", tc.file, out)
				}
				path = filepath.Join(t.TempDir(), tc.file)
				if err := os.WriteFile(path, out, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			out, err := exec.Command(ci, "schema", "--config-file", path).CombinedOutput()
			if err != nil {
				t.Fatalf("cloud-init schema --config-file %s: %v\n%s", tc.file, err, out)
			}

			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var ud userData
			if err := yaml.Unmarshal(raw, &ud); err != nil {
				t.Fatalf("%s: %v", tc.file, err)
			}
			var found bool
			for _, wf := range ud.WriteFiles {
				if strings.HasPrefix(wf.Path, "/etc/outpost/") && (wf.Permissions != "0600" || wf.Owner != "root:root") {
					t.Errorf("%s writes %s as %s mode %s, want root:root 0600", tc.file, wf.Path, wf.Owner, wf.Permissions)
				}
				if wf.Path != "/etc/outpost/agent.yaml" {
					continue
				}
				found = true
				cfg, err := agent.ParseConfig(tc.file+": agent.yaml", []byte(wf.Content))
				if err != nil {
					t.Fatalf("%s writes an invalid agent.yaml: %v", tc.file, err)
				}
				if cfg.Source.URL == "" {
					t.Errorf("%s's agent.yaml names no source, so the service would not start", tc.file)
				}
				if cfg.Host.Name != tc.name {
					t.Errorf("%s's agent.yaml: host.name = %q, want %q", tc.file, cfg.Host.Name, tc.name)
				}
				for k, v := range tc.labels {
					if cfg.Host.Labels[k] != v {
						t.Errorf("%s's agent.yaml: label %s = %q, want %q", tc.file, k, cfg.Host.Labels[k], v)
					}
				}
			}
			if !found {
				t.Errorf("%s writes no /etc/outpost/agent.yaml", tc.file)
			}
			if !strings.Contains(string(raw), "dpkg --force-confold -i") {
				t.Errorf("%s does not install the package keeping the agent.yaml it wrote (dpkg --force-confold -i)", tc.file)
			}
		})
	}
}

func stderrOf(err error) []byte {
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}
