package spec_test

import (
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	. "github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
	_ "github.com/outpost-gitops/outpost/internal/targets/network"
	"github.com/outpost-gitops/outpost/internal/targets/systemd"
	_ "github.com/outpost-gitops/outpost/internal/targets/volume"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// corpusHost is the host that the invalid corpus renders for when a case
// loads: some cases only fail at Render.
var corpusHost = Host{Name: "host-1", Labels: map[string]string{"role": "web"}}

// setups add what a case cannot commit: huge sparse files. Each gets a
// copy of the case's directory to change.
var setups = map[string]func(t *testing.T, dir string){
	"file-source-huge": func(t *testing.T, dir string) {
		sparse(t, filepath.Join(dir, "huge.bin"), 2<<30) // 2 GiB, no blocks
	},
	"manifest-too-large": func(t *testing.T, dir string) {
		sparse(t, filepath.Join(dir, "big.yaml"), MaxManifestSize+1)
	},
	"control-characters": func(t *testing.T, dir string) {
		for _, name := range []string{"sub/evil\n- file x (prune).yaml", "sub/\x1b[31mred.txt", "sub/c1\u009b.yaml", "sub/bad\xff.yaml"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("kind: file\npath: /etc/evil\ncontent: x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	},
}

// caseOptions are the load options of cases that need other limits: the
// output cap is tested at 1 MiB to keep the race detector's run short.
var caseOptions = map[string]Options{
	"template-output-cap": {MaxFileSize: 1 << 20},
}

func sparse(t *testing.T, name string, size int64) {
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

// copyTree copies src to dst, keeping symlinks as symlinks.
func copyTree(t *testing.T, src, dst string) {
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
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, data, 0o644)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func caseDirs(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatalf("no cases in %s", root)
	}
	return out
}

// loadAndRender returns the error output of loading dir and rendering it for
// host, or "" when both succeed.
func loadAndRender(fsys fs.FS, host Host, opts Options) (string, error) {
	repo, err := Load(fsys, opts)
	if err == nil {
		_, err = repo.Render(host)
	}
	if err == nil {
		return "", nil
	}
	var es Errors
	if !errors.As(err, &es) {
		return "", err
	}
	if !errors.Is(err, ErrInvalid) {
		return "", errors.New("Errors does not match ErrInvalid")
	}
	return es.Error() + "\n", nil
}

// TestInvalidCorpus loads every repository under testdata/invalid and
// compares its errors with want.golden, which -update rewrites.
func TestInvalidCorpus(t *testing.T) {
	root := filepath.Join("testdata", "invalid")
	cases := caseDirs(t, root)
	if len(cases) < 40 {
		t.Errorf("testdata/invalid holds %d cases, want at least 40", len(cases))
	}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, name)
			if setup, ok := setups[name]; ok {
				tmp := t.TempDir()
				copyTree(t, dir, tmp)
				setup(t, tmp)
				dir = tmp
			}
			got, err := loadAndRender(os.DirFS(dir), corpusHost, caseOptions[name])
			if err != nil {
				t.Fatalf("Load(%s) = %v, want validation errors", name, err)
			}
			if got == "" {
				t.Fatalf("Load(%s) succeeded, want errors", name)
			}
			golden := filepath.Join(root, name, "want.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden: %v (run go test ./internal/spec -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Load(%s) errors (-want +got):\n%s", name, diff)
			}
		})
	}
}

// goldenResource is a rendered resource as the valid corpus's golden JSON
// shows it: contents as text, so that a diff reads.
type goldenResource struct {
	ID        string            `json:"id"`
	Pos       string            `json:"pos"`
	Prune     bool              `json:"prune"`
	Drift     DriftMode         `json:"drift"`
	After     []string          `json:"after,omitempty"`
	RestartOn []string          `json:"restart_on,omitempty"`
	Content   *string           `json:"content,omitempty"`
	Dropins   map[string]string `json:"dropins,omitempty"`
	File      *file.File        `json:"file,omitempty"`
	Unit      *systemd.Unit     `json:"unit,omitempty"`
	Container *docker.Container `json:"container,omitempty"`
	Hash      string            `json:"hash"`
}

type goldenState struct {
	Host           Host             `json:"host"`
	AllowMassPrune bool             `json:"allow_mass_prune"`
	Resources      []goldenResource `json:"resources"`
}

func toGolden(h Host, st *State) goldenState {
	g := goldenState{Host: h, AllowMassPrune: st.AllowMassPrune, Resources: []goldenResource{}}
	ids := func(in []ID) []string {
		var out []string
		for _, id := range in {
			out = append(out, id.String())
		}
		return out
	}
	for _, r := range st.Resources {
		gr := goldenResource{ID: r.ID.String(), Pos: r.Pos.String(), Prune: r.Prune, Drift: r.Drift,
			After: ids(r.After), RestartOn: ids(r.RestartOn), Hash: r.Hash()}
		if file.Of(r) != nil {
			f := *file.Of(r)
			if !f.Absent {
				s := string(f.Content)
				gr.Content = &s
			}
			f.Content = nil
			gr.File = &f
		}
		if systemd.Of(r) != nil {
			u := *systemd.Of(r)
			s := string(u.Content)
			gr.Content = &s
			for name, d := range u.Dropins {
				if gr.Dropins == nil {
					gr.Dropins = map[string]string{}
				}
				gr.Dropins[name] = string(d)
			}
			u.Content, u.Dropins = nil, nil
			gr.Unit = &u
		}
		gr.Container = docker.Of(r)
		g.Resources = append(g.Resources, gr)
	}
	return g
}

// TestValidCorpus loads every repository under testdata/valid/CASE/repo,
// renders it for each host of CASE/hosts.json and compares the state with
// CASE/want/HOST.json, which -update rewrites.
func TestValidCorpus(t *testing.T) {
	root := filepath.Join("testdata", "valid")
	for _, name := range caseDirs(t, root) {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, name)
			repo, err := Load(os.DirFS(filepath.Join(dir, "repo")), Options{})
			if err != nil {
				t.Fatalf("Load(%s) = %v", name, err)
			}
			data, err := os.ReadFile(filepath.Join(dir, "hosts.json"))
			if err != nil {
				t.Fatal(err)
			}
			var hosts []Host
			if err := json.Unmarshal(data, &hosts); err != nil {
				t.Fatalf("hosts.json: %v", err)
			}
			if len(hosts) == 0 {
				t.Fatal("hosts.json lists no host")
			}
			for _, h := range hosts {
				st, err := repo.Render(h)
				if err != nil {
					t.Fatalf("Render(%s) = %v", h.Name, err)
				}
				got, err := json.MarshalIndent(toGolden(h, st), "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, '\n')
				golden := filepath.Join(dir, "want", h.Name+".json")
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("read golden: %v (run go test ./internal/spec -update)", err)
				}
				if diff := cmp.Diff(string(want), string(got)); diff != "" {
					t.Errorf("Render(%s, %s) (-want +got):\n%s", name, h.Name, diff)
				}
			}
			// Every golden file belongs to a host of hosts.json.
			files, _ := filepath.Glob(filepath.Join(dir, "want", "*.json"))
			var names []string
			for _, h := range hosts {
				names = append(names, h.Name+".json")
			}
			sort.Strings(names)
			var have []string
			for _, f := range files {
				have = append(have, filepath.Base(f))
			}
			sort.Strings(have)
			if !*update && strings.Join(have, ",") != strings.Join(names, ",") {
				t.Errorf("want/ holds %v, want %v", have, names)
			}
		})
	}
}
