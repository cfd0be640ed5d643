package writeback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/redact"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
)

// Options say where `images update` reads and writes.
type Options struct {
	// Source is the environment repository: a URL or a local path that
	// git clones.
	Source string
	// Target is the branch the hosts follow; "" means main.
	Target string
	// Branch is the branch the change is pushed to, made from Target's
	// tip; "" pushes to Target itself.
	Branch string
	// SignKey, when set, is an SSH private key (or its .pub with an
	// agent) that signs the commit.
	SignKey string
	// DryRun resolves and reports, and writes nothing.
	DryRun bool
	// Platform is given to the hosts whose note names none.
	Platform registry.Platform
	// Attempts bounds the runs when a push is refused because the branch
	// moved; 0 means 5.
	Attempts int
	// NewResolver, when set, builds the resolver for the hosts (a test
	// seam); nil means a registry.Resolver that passes over the tags the
	// hosts' notes mark bad.
	NewResolver func(hosts []Host) (Resolver, error)
	Log         *slog.Logger
}

// Result is what a run did.
type Result struct {
	Hosts   int       `json:"hosts"`
	Changes []Change  `json:"changes"`
	Errors  []Problem `json:"errors"`
	// Commit is the commit made and pushed, "" when none was.
	Commit string `json:"commit,omitempty"`
	Branch string `json:"branch,omitempty"`
	// Proposed is true when Branch already held the same change, so that
	// nothing was pushed.
	Proposed bool `json:"already_proposed,omitempty"`
	Attempts int  `json:"attempts"`
}

// Change is one tag rewritten.
type Change struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Container string `json:"container"`
	Image     string `json:"image"`
	From      string `json:"from"`
	To        string `json:"to"`
	Digest    string `json:"digest"`
	// Hosts counts the hosts the container applies to.
	Hosts   int    `json:"hosts"`
	Skipped []Skip `json:"skipped,omitempty"`
}

// Skip is a better tag passed over, and why.
type Skip struct {
	Tag    string `json:"tag"`
	Digest string `json:"digest,omitempty"`
	Reason string `json:"reason"`
}

// Problem is a host, container or file left as it is, and why.
type Problem struct {
	Host      string `json:"host,omitempty"`
	File      string `json:"file,omitempty"`
	Container string `json:"container,omitempty"`
	Error     string `json:"error"`
	Skipped   []Skip `json:"skipped,omitempty"`
}

// errMoved is returned by a push that the server refused because the
// branch moved meanwhile.
var errMoved = errors.New("the branch moved")

// Run resolves, rewrites, commits and pushes, from a fresh clone of the
// source, and starts over from a new clone when the push is refused
// because the branch moved.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Target == "" {
		o.Target = "main"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	attempts := o.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	for i := 1; ; i++ {
		res, err := attempt(ctx, o)
		if res != nil {
			res.Attempts = i
		}
		if !errors.Is(err, errMoved) || i == attempts {
			return res, err
		}
		o.Log.Info("the branch moved during the update; starting over on its new tip", "attempt", i)
	}
}

// attempt is one run over a fresh clone.
func attempt(ctx context.Context, o Options) (*Result, error) {
	dir, err := os.MkdirTemp("", "outpost-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	g := &gitDir{dir: dir}
	if _, err := g.run(ctx, "clone", "--quiet", "--single-branch", "--branch", o.Target, "--", o.Source, dir); err != nil {
		return nil, err
	}
	// Notes refs may not exist yet: a fleet without notes is reported below.
	_, _ = g.run(ctx, "fetch", "--quiet", "origin", "+refs/notes/outpost/*:refs/notes/outpost/*")
	res := &Result{Changes: []Change{}, Errors: []Problem{}}
	changed, err := plan(ctx, o, dir, res)
	if err != nil || o.DryRun || len(changed) == 0 {
		return res, err
	}
	if err := commit(ctx, g, o, changed, res); err != nil {
		return res, err
	}
	return res, push(ctx, g, o, res)
}

// plan resolves the pins of the clone in dir and rewrites their files
// there; it returns the files it rewrote.
func plan(ctx context.Context, o Options, dir string, res *Result) ([]string, error) {
	repo, err := spec.Load(os.DirFS(dir), spec.Options{})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", o.Target, err)
	}
	noted, err := status.Fleet(ctx, dir, status.FleetOptions{Branch: o.Target})
	if err != nil {
		return nil, fmt.Errorf("read the hosts' notes: %w", err)
	}
	hosts := hostsOf(noted, repo.NamedHosts(), o.Platform)
	if len(hosts) == 0 {
		return nil, errNoHosts
	}
	res.Hosts = len(hosts)
	ps, problems := pins(repo, hosts)
	res.Errors = append(res.Errors, problems...)
	bad := newFleetBad(hosts)
	var resolver Resolver
	if o.NewResolver != nil {
		resolver, err = o.NewResolver(hosts)
	} else {
		resolver, err = registry.NewResolver(registry.Options{UserAgent: "outpost", Logger: o.Log, Bad: bad})
	}
	if err != nil {
		return nil, err
	}
	changes, problems := resolve(ctx, resolver, ps, bad)
	res.Errors = append(res.Errors, problems...)
	return rewrite(dir, changes, res)
}

// rewrite applies changes to the files under dir, in memory first, so
// that a change that cannot be written leaves its file as it was.
func rewrite(dir string, changes []Change, res *Result) ([]string, error) {
	data := map[string][]byte{}
	var files []string
	for _, ch := range changes {
		b, ok := data[ch.File]
		if !ok {
			var err error
			if b, err = readRepoFile(dir, ch.File); err != nil {
				return nil, err
			}
			files = append(files, ch.File)
		}
		out, line, err := rewriteTag(b, ch.Container, ch.From, ch.To)
		if err != nil {
			res.Errors = append(res.Errors, Problem{File: ch.File, Container: ch.Container, Error: err.Error()})
			data[ch.File] = b
			continue
		}
		data[ch.File] = out
		ch.Line = line
		res.Changes = append(res.Changes, ch)
	}
	var written []string
	for _, f := range files {
		orig, _ := readRepoFile(dir, f)
		if bytes.Equal(orig, data[f]) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f))
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(p, data[f], fi.Mode().Perm(), atomicfile.Options{}); err != nil {
			return nil, err
		}
		written = append(written, f)
	}
	return written, nil
}

// readRepoFile reads a manifest of the clone, refusing one that leaves it
// through a symbolic link: the file is rewritten where it is.
func readRepoFile(dir, file string) ([]byte, error) {
	if !fs.ValidPath(file) {
		return nil, fmt.Errorf("%s: not a path inside the repository", file)
	}
	p := filepath.Join(dir, filepath.FromSlash(file))
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	if real != p && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return nil, fmt.Errorf("%s: a symbolic link out of the repository", file)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", file)
	}
	return os.ReadFile(p)
}

// gitDir runs git in a clone.
type gitDir struct{ dir string }

func (g *gitDir) run(ctx context.Context, args ...string) (string, error) {
	return g.runInput(ctx, "", args...)
}

// runInput runs git with input on its standard input.
func (g *gitDir) runInput(ctx context.Context, input string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Stdin = strings.NewReader(input)
	cmd.Dir = g.dir
	if args[0] == "clone" {
		cmd.Dir = ""
	}
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), &gitError{args: args, stderr: redact.URLs(strings.TrimSpace(errb.String())), err: err}
	}
	return strings.TrimSpace(out.String()), nil
}

type gitError struct {
	args   []string
	stderr string
	err    error
}

func (e *gitError) Error() string {
	return fmt.Sprintf("git %s: %v: %s", redact.URLs(e.args[0]), e.err, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }
