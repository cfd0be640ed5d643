// Package install tests Outpost's packages the way hosts install them: the
// .deb installed with dpkg on a booted Debian 12 systemd host by the same
// provisioning script that sets up the Vagrant machines, upgraded, and
// removed; the .rpm checked for its files and scripts; the cloud-init
// examples checked by cloud-init itself.
//
// The packages are built from goreleaser.yaml's nfpm section by nfpm, the
// library GoReleaser packages with, run as its own command at the version
// that GoReleaser pins: GoReleaser itself takes many minutes to compile,
// nfpm a fraction of that. Build translates that one section, so the
// packages tested are the packages released.
//
// install is for tests only and no Outpost binary imports it.
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// NFPMModule is nfpm's command at the version GoReleaser v2.15.1 packages
// with (its go.mod requires github.com/goreleaser/nfpm/v2 v2.45.2).
const NFPMModule = "github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2"

// Release is the part of goreleaser.yaml that the packages are made from.
type Release struct {
	// Before holds the commands GoReleaser runs first: the generated
	// completions and man pages that the packages ship.
	Before struct {
		Hooks []string `yaml:"hooks"`
	} `yaml:"before"`
	// Env is the environment of every command and build.
	Env    []string         `yaml:"env"`
	Builds []Build          `yaml:"builds"`
	NFPMs  []map[string]any `yaml:"nfpms"`
}

// RunHooks runs the before hooks in the module root, as GoReleaser does.
// They hold no templates and no shell syntax.
func (r *Release) RunHooks(ctx context.Context, moduleRoot string) error {
	for _, h := range r.Before.Hooks {
		f := strings.Fields(h)
		if len(f) == 0 || strings.ContainsAny(h, "{}|&;<>$`'\"") {
			return fmt.Errorf("goreleaser.yaml before hook %q: a form that the package tests do not run", h)
		}
		cmd := exec.CommandContext(ctx, f[0], f[1:]...)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), r.Env...)
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("before hook %q: %w\n%s", h, err, o)
		}
	}
	return nil
}

// Build is one of goreleaser.yaml's builds.
type Build struct {
	ID      string   `yaml:"id"`
	Main    string   `yaml:"main"`
	Binary  string   `yaml:"binary"`
	Env     []string `yaml:"env"`
	Flags   []string `yaml:"flags"`
	Ldflags []string `yaml:"ldflags"`
	Goos    []string `yaml:"goos"`
	Goarch  []string `yaml:"goarch"`
	Goarm   []string `yaml:"goarm"`
	ModTime string   `yaml:"mod_timestamp"`
}

// ReadRelease reads goreleaser.yaml.
func ReadRelease(path string) (*Release, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Release
	if err := yaml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(r.Builds) == 0 || len(r.NFPMs) != 1 {
		return nil, fmt.Errorf("%s: want builds and one nfpms entry, got %d and %d", path, len(r.Builds), len(r.NFPMs))
	}
	return &r, nil
}

// template fills in the only template GoReleaser fields here use.
func template(s, version string) (string, error) {
	s = strings.ReplaceAll(s, "{{ .Version }}", version)
	if strings.Contains(s, "{{") {
		return "", fmt.Errorf("%q: a template that the package tests do not know", s)
	}
	return s, nil
}

// BuildBinaries builds every binary of the release (the agent, the
// importer) for linux/goarch with BuildBinary, and returns their paths.
func (r *Release) BuildBinaries(ctx context.Context, moduleRoot, dir, version, goarch string) ([]string, error) {
	var out []string
	for _, b := range r.Builds {
		b.Env = append(append([]string(nil), r.Env...), b.Env...) // the global env first, as GoReleaser does
		bin, err := b.BuildBinary(ctx, moduleRoot, dir, version, goarch)
		if err != nil {
			return nil, err
		}
		out = append(out, bin)
	}
	return out, nil
}

// BuildBinary builds b for linux/goarch as GoReleaser does: its
// environment, flags and ldflags, version filled in. It writes the binary
// to dir and returns its path.
func (b Build) BuildBinary(ctx context.Context, moduleRoot, dir, version, goarch string) (string, error) {
	out := filepath.Join(dir, b.Binary)
	var ldflags []string
	for _, f := range b.Ldflags {
		f, err := template(f, version)
		if err != nil {
			return "", fmt.Errorf("goreleaser.yaml builds ldflags: %w", err)
		}
		ldflags = append(ldflags, f)
	}
	args := append([]string{"build", "-o", out}, b.Flags...)
	args = append(args, "-ldflags="+strings.Join(ldflags, " "), b.Main)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch)
	cmd.Env = append(cmd.Env, b.Env...)
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, o)
	}
	return out, nil
}

// goreleaserOnly are the keys of an nfpms entry that GoReleaser itself
// uses; the rest is nfpm's own configuration.
var goreleaserOnly = []string{"id", "ids", "builds", "formats", "file_name_template", "bindir", "libdirs", "meta", "package_name", "goamd64"}

// NFPMConfig returns nfpm's configuration for the package GoReleaser would
// make of binaries: goreleaser.yaml's nfpms entry without GoReleaser's own
// keys, with the name, version and architecture set and each binary added
// to bindir, mode 0755, as GoReleaser adds it. Paths in it are relative to
// the module root.
func (r *Release) NFPMConfig(version, goarch string, binaries ...string) ([]byte, error) {
	in := r.NFPMs[0]
	cfg := map[string]any{}
	for k, v := range in {
		cfg[k] = v
	}
	for _, k := range goreleaserOnly {
		delete(cfg, k)
	}
	if d, ok := cfg["dependencies"]; ok {
		cfg["depends"] = d
		delete(cfg, "dependencies")
	}
	name, _ := in["package_name"].(string)
	if name == "" {
		return nil, errors.New("goreleaser.yaml nfpms: package_name is not set")
	}
	bindir, _ := in["bindir"].(string)
	if bindir == "" {
		bindir = "/usr/bin"
	}
	cfg["name"] = name
	cfg["version"] = version
	cfg["arch"] = goarch
	cfg["platform"] = "linux"
	contents, _ := cfg["contents"].([]any)
	contents = append([]any(nil), contents...)
	for _, binary := range binaries {
		contents = append(contents, map[string]any{
			"src":       binary,
			"dst":       filepath.Join(bindir, filepath.Base(binary)),
			"file_info": map[string]any{"mode": 0o755},
		})
	}
	cfg["contents"] = contents
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// FileName is the name GoReleaser's file_name_template gives a package
// of this project for linux/goarch (no arm variant) in format.
func FileName(name, version, goarch, format string) string {
	return fmt.Sprintf("%s_%s_linux_%s.%s", name, version, goarch, format)
}

// InstallNFPM builds nfpm's command into dir and returns its path.
func InstallNFPM(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "install", NFPMModule)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	cmd.Dir = dir
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", NFPMModule, err, o)
	}
	return filepath.Join(dir, "nfpm"), nil
}

// Package runs nfpm to make one package of format (deb or rpm) from config,
// reading the files it names relative to moduleRoot, and writes it to
// target.
func Package(ctx context.Context, nfpm, moduleRoot string, config []byte, format, target string) error {
	f, err := os.CreateTemp(filepath.Dir(target), "nfpm-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(config); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, nfpm, "package", "--config", f.Name(), "--packager", format, "--target", target)
	cmd.Dir = moduleRoot
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nfpm package %s: %w\n%s\nconfig:\n%s", format, err, o, config)
	}
	return nil
}
