// Package compose converts Compose files into Outpost manifests: one
// container manifest per service, with a comment wherever something was
// dropped or changed. It reads the files with compose-go, with no
// environment of the process (interpolation sees only defaults) and the
// repository as the only root: include, extends, env files and bind
// sources outside it are refused. It is linked into the importer, never
// into the agent.
package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/outpost-gitops/outpost/internal/spec"
	_ "github.com/outpost-gitops/outpost/internal/targets/docker"  // the kinds, to validate the output
	_ "github.com/outpost-gitops/outpost/internal/targets/network" //
	_ "github.com/outpost-gitops/outpost/internal/targets/volume"  //
)

// Options say what to import.
type Options struct {
	// Files are the Compose files, merged in order as docker compose -f
	// merges them.
	Files []string
	// Root is the repository: every file the import reads must be in it.
	// "" means the directory of the first file.
	Root string
	// Project names the project; "" means the files' name:, else the
	// directory of the first file.
	Project string
}

// Manifest is one manifest file of the result.
type Manifest struct {
	// Name is the file's name, such as "web.yaml".
	Name string
	Data []byte
}

// Note is something of a Compose file that the manifests do not carry as
// written: dropped, or changed.
type Note struct {
	Service string `json:"service,omitempty"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (n Note) String() string {
	if n.Service == "" {
		return n.Field + ": " + n.Message
	}
	return n.Service + ": " + n.Field + ": " + n.Message
}

// Result is the manifests, and what was dropped or changed on the way.
type Result struct {
	Project   string     `json:"project"`
	Manifests []Manifest `json:"-"`
	Dropped   []Note     `json:"dropped"`
	Changed   []Note     `json:"changed"`
}

// ErrOutside is matched by errors.Is for a file outside the repository.
var ErrOutside = errors.New("outside the repository")

// Import reads o.Files and converts every service. Each manifest is
// validated as the agent would read it; an error is for files that cannot
// be read as Compose.
func Import(ctx context.Context, o Options) (*Result, error) {
	if len(o.Files) == 0 {
		return nil, errors.New("no Compose file given")
	}
	root := o.Root
	if root == "" {
		root = filepath.Dir(o.Files[0])
	}
	root, err := realDir(root)
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{WorkingDir: filepath.Dir(o.Files[0]), Environment: types.Mapping{}}
	if details.WorkingDir, err = inside(root, details.WorkingDir); err != nil {
		return nil, err
	}
	for _, f := range o.Files {
		path, err := inside(root, f)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: path, Content: data})
	}
	name := o.Project
	if name == "" {
		name = strings.ToLower(filepath.Base(details.WorkingDir))
	}
	p, err := loader.LoadWithContext(ctx, details, func(lo *loader.Options) {
		lo.SkipInclude = true
		lo.SkipExtends = true
		lo.SkipResolveEnvironment = true
		lo.SkipResolveLabels = true
		lo.ResolvePaths = false
		lo.ResourceLoaders = nil
		lo.Profiles = []string{"*"} // every service, whatever its profiles
		lo.SetProjectName(name, o.Project != "")
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", strings.Join(o.Files, ", "), err)
	}
	res := &Result{Project: p.Name, Dropped: []Note{}, Changed: []Note{}}
	im := &importer{project: p, root: root, dir: details.WorkingDir, res: res}
	im.raw(details.ConfigFiles)
	im.topLevel()
	for _, svc := range sorted(p.ServiceNames()) {
		s := p.Services[svc]
		m, ok := im.service(s)
		if ok {
			res.Manifests = append(res.Manifests, m)
		}
	}
	for _, svc := range mapsKeys(p.DisabledServices) {
		res.Dropped = append(res.Dropped, Note{Service: svc, Field: "profiles", Message: "the service is in a profile that is not active: it was not imported"})
	}
	if err := validate(res.Manifests); err != nil {
		return nil, fmt.Errorf("the manifests made from %s do not validate: %w", strings.Join(o.Files, ", "), err)
	}
	return res, nil
}

// mapsKeys returns m's keys, sorted.
func mapsKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// realDir resolves dir's symlinks.
func realDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// inside returns path with its symlinks resolved, or ErrOutside when it
// leaves root.
func inside(root, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", fmt.Errorf("%s: %w %s", path, ErrOutside, root)
	}
	return real, nil
}

// raw reports what the loader was told to skip: include and extends, which
// could read files outside the repository.
func (im *importer) raw(files []types.ConfigFile) {
	for _, f := range files {
		var doc struct {
			Include  []any                     `yaml:"include"`
			Services map[string]map[string]any `yaml:"services"`
		}
		if yaml.Unmarshal(f.Content, &doc) != nil {
			continue
		}
		if len(doc.Include) > 0 {
			im.drop("", "include", "not read: an included file may lie outside the repository; import it by name")
		}
		for _, svc := range mapsKeys(doc.Services) {
			if _, ok := doc.Services[svc]["extends"]; ok {
				im.drop(svc, "extends", "not followed: give the service's fields in full, or import the file it extends beside it")
			}
		}
	}
}

// validate loads the manifests as the agent would.
func validate(ms []Manifest) error {
	if len(ms) == 0 {
		return nil
	}
	dir, err := os.MkdirTemp("", "outpost-import-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, m := range ms {
		if err := os.WriteFile(filepath.Join(dir, m.Name), m.Data, 0o600); err != nil {
			return err
		}
	}
	_, err = spec.Load(os.DirFS(dir), spec.Options{})
	return err
}

// Write writes the manifests into dir, which it creates, and never over an
// existing file: it checks every name first and writes nothing when one
// exists.
func (r *Result) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, m := range r.Manifests {
		if _, err := os.Lstat(filepath.Join(dir, m.Name)); err == nil {
			return fmt.Errorf("%s already exists: import into an empty directory, or remove it", filepath.Join(dir, m.Name))
		}
	}
	for _, m := range r.Manifests {
		f, err := os.OpenFile(filepath.Join(dir, m.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, werr := f.Write(m.Data)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return err
		}
	}
	return nil
}

// Text is the manifests one after the other, for standard output.
func (r *Result) Text() []byte {
	var b bytes.Buffer
	for i, m := range r.Manifests {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "# %s\n", m.Name)
		b.Write(m.Data)
	}
	return b.Bytes()
}
