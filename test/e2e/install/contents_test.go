package install

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-gitops/outpost/internal/agent"
)

// entry is one file of a package as the test expects it.
type entry struct {
	path string
	mode string // as ls -l writes it
}

// wantFiles are the files and directories each package holds, sorted by
// path.
var wantFiles = func() []entry {
	files := []entry{
		{"/etc/outpost", "drwx------"},
		{"/etc/outpost/agent.yaml", "-rw-------"},
		{"/usr/bin/outpost", "-rwxr-xr-x"},
		{"/usr/bin/outpost-import", "-rwxr-xr-x"},
		{"/usr/lib/systemd/system/outpost.service", "-rw-r--r--"},
		{"/var/lib/outpost", "drwx------"},
		{"/usr/share/bash-completion/completions/outpost", "-rw-r--r--"},
		{"/usr/share/zsh/vendor-completions/_outpost", "-rw-r--r--"},
		{"/usr/share/fish/vendor_completions.d/outpost.fish", "-rw-r--r--"},
		{"/usr/share/man/man1/outpost.1.gz", "-rw-r--r--"},
	}
	for _, c := range manCommands {
		files = append(files, entry{"/usr/share/man/man1/outpost-" + c + ".1.gz", "-rw-r--r--"})
	}
	slices.SortFunc(files, func(a, b entry) int { return strings.Compare(a.path, b.path) })
	return files
}()

// manCommands are the commands that have a man page of their own: every
// command and subcommand that outpost --help lists (images update is
// outpost-images-update).
var manCommands = []string{"apply", "diff", "fleet", "images", "images-update", "import", "init", "plan", "publish", "reconcile",
	"resume", "retry", "run", "secrets", "secrets-check", "secrets-encrypt", "secrets-key", "secrets-recipients",
	"status", "suspend", "validate", "version"}

// packageScripts maps each maintainer script of the packages to its source.
var packageScripts = map[string]string{
	"postinst": "packaging/scripts/postinstall.sh",
	"prerm":    "packaging/scripts/preremove.sh",
	"postrm":   "packaging/scripts/postremove.sh",
}

func TestDebContents(t *testing.T) {
	need(t, "dpkg-deb", "dpkg")
	b := packages(t)

	// dpkg-deb -c: "drwx------ root/root 0 2026-01-01 00:00 ./etc/outpost/"
	got := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", b.Deb1)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: cannot read %q", line)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", p, f[1])
		}
		got[p] = entry{p, f[0]}
	}
	for _, w := range wantFiles {
		g, ok := got[w.path]
		switch {
		case !ok:
			t.Errorf("the .deb lacks %s", w.path)
		case g.mode != w.mode:
			t.Errorf("the .deb's %s has mode %s, want %s", w.path, g.mode, w.mode)
		}
	}

	fields := run(t, "dpkg-deb", "-f", b.Deb1, "Package", "Version", "Architecture", "Maintainer", "Homepage", "Section", "Priority", "Description")
	for _, want := range []string{"Package: outpost", "Version: " + version1, "Homepage: https://", "Section: admin", "Priority: optional", "Maintainer: ", "Description: GitOps pull agent"} {
		if !strings.Contains(fields, want) {
			t.Errorf("the .deb's control fields lack %q:\n%s", want, fields)
		}
	}

	control := t.TempDir()
	run(t, "dpkg-deb", "-e", b.Deb1, control)
	conffiles, err := os.ReadFile(filepath.Join(control, "conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/outpost/agent.yaml" {
		t.Errorf("conffiles = %q, %v; want /etc/outpost/agent.yaml alone", conffiles, err)
	}
	for name, src := range packageScripts {
		want, err := os.ReadFile(filepath.Join(b.Root, src))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(control, name))
		if err != nil {
			t.Errorf("the .deb has no %s: %v", name, err)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("the .deb's %s differs from %s:\n%s", name, src, got)
		}
	}

	// The files are the ones in the checkout, and the binary is the
	// static, stripped, versioned build that goreleaser.yaml describes.
	fsys := t.TempDir()
	run(t, "dpkg-deb", "-x", b.Deb1, fsys)
	for pkgPath, src := range map[string]string{
		"etc/outpost/agent.yaml":                 "packaging/agent.yaml",
		"usr/lib/systemd/system/outpost.service": "packaging/systemd/outpost.service",
	} {
		got, err := os.ReadFile(filepath.Join(fsys, pkgPath))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(b.Root, src))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("the .deb's /%s differs from %s", pkgPath, src)
		}
	}
	checkBinary(t, filepath.Join(fsys, "usr/bin/outpost"), version1)

	// The packaged configuration is valid and names no source, which is
	// what keeps the service from starting on install.
	cfg, err := agent.LoadConfig(filepath.Join(fsys, "etc/outpost/agent.yaml"), true)
	if err != nil {
		t.Fatalf("the packaged agent.yaml: %v", err)
	}
	if cfg.Source.URL != "" || cfg.StateDir != "/var/lib/outpost" || !cfg.Status.Push {
		t.Errorf("the packaged agent.yaml: source %q, state_dir %q, status.push %v; want no source, /var/lib/outpost, true",
			cfg.Source.URL, cfg.StateDir, cfg.Status.Push)
	}
}

// checkBinary checks that the file at path is the agent built as released.
func checkBinary(t *testing.T, path, version string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("the packaged outpost: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the packaged outpost is dynamically linked (%v), want a static binary", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("the packaged outpost has a symbol table, want it stripped (-s -w)")
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("the packaged outpost: %v", err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("the packaged outpost was built with CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	// -trimpath keeps -ldflags out of the build information; outpost
	// version below shows that they set the version.
	for _, m := range bi.Deps {
		for _, bad := range []string{"github.com/google/go-cmp", "github.com/rogpeppe/go-internal", "github.com/stretchr/testify"} {
			if m.Path == bad {
				t.Errorf("the packaged outpost holds the module %s, used by tests only", bad)
			}
		}
	}
	out, err := exec.Command(path, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), version) {
		t.Errorf("outpost version = %q, %v; want %s", out, err, version)
	}
}

func TestRPMContents(t *testing.T) {
	need(t, "rpm", "rpm")
	b := packages(t)

	list := strings.Fields(run(t, "rpm", "-qp", "--nosignature", "-l", b.RPM1))
	var want []string
	for _, w := range wantFiles {
		want = append(want, w.path)
	}
	slices.Sort(list)
	if !slices.Equal(list, want) {
		t.Errorf("rpm -qpl = %q, want %q", list, want)
	}

	// One line per file: path, mode, flags (c: config, n: noreplace), owner.
	files := run(t, "rpm", "-qp", "--nosignature", "--queryformat",
		`[%{FILENAMES} %{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]`, b.RPM1)
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(files), "\n") {
		f := strings.Fields(line)
		got[f[0]] = f[1:]
	}
	for _, w := range wantFiles {
		g := got[w.path]
		if len(g) < 2 || g[0] != w.mode || g[len(g)-1] != "root:root" {
			t.Errorf("the .rpm's %s: %q, want mode %s owned by root:root", w.path, g, w.mode)
		}
	}
	if g := got["/etc/outpost/agent.yaml"]; len(g) != 3 || g[1] != "cn" {
		t.Errorf("the .rpm's agent.yaml has flags %q, want cn (config, noreplace)", g)
	}

	meta := run(t, "rpm", "-qp", "--nosignature", "--queryformat",
		`%{NAME}|%{VERSION}|%{LICENSE}|%{URL}|%{VENDOR}|%{GROUP}|%{PACKAGER}|%{SUMMARY}\n`, b.RPM1)
	parts := strings.Split(strings.TrimSpace(meta), "|")
	if len(parts) != 8 || parts[0] != "outpost" || parts[1] != version1 || parts[2] != "Apache-2.0" ||
		!strings.HasPrefix(parts[3], "https://") || parts[4] == "(none)" || parts[7] == "(none)" {
		t.Errorf("the .rpm's metadata = %q, want name, version, licence, URL, vendor and summary", meta)
	}

	scripts := run(t, "rpm", "-qp", "--nosignature", "--scripts", b.RPM1)
	for _, s := range []struct{ scriptlet, src string }{
		{"postinstall scriptlet", "packaging/scripts/postinstall.sh"},
		{"preuninstall scriptlet", "packaging/scripts/preremove.sh"},
		{"postuninstall scriptlet", "packaging/scripts/postremove.sh"},
	} {
		body, err := os.ReadFile(filepath.Join(b.Root, s.src))
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(scripts, s.scriptlet)
		if i < 0 {
			t.Errorf("rpm -qp --scripts has no %s:\n%s", s.scriptlet, scripts)
			continue
		}
		if !strings.Contains(scripts[i:], strings.TrimSpace(string(body))) {
			t.Errorf("the .rpm's %s is not %s:\n%s", s.scriptlet, s.src, scripts[i:])
		}
	}
}
