package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/spf13/cobra"
)

// Exit statuses shared by the commands: 0 success, 1 the answer is "no"
// (invalid, changes, a failed resource), 2 the command could not run.
const (
	exitOK      = 0
	exitNo      = 1
	exitFailure = 2
)

// exitStatus is returned by a command that printed its outcome and only
// needs the process to exit with a status other than 0.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// globals are the flags that every command shares.
type globals struct {
	stdout, stderr io.Writer

	configPath string
	source     string
	host       string
	labels     []string
	stateDir   string
	root       string
	allowEmpty bool
	json       bool
	logFormat  string
	verbose    int
}

// commands builds every subcommand; a new command is one file and one line
// here.
var commands = []func(g *globals) *cobra.Command{
	newValidateCmd,
	newDiffCmd,
	newApplyCmd,
	newVersionCmd,
	newRunCmd,
	newStatusCmd,
	newReconcileCmd,
	newSuspendCmd,
	newResumeCmd,
	newRetryCmd,
	newFleetCmd,
	newImagesCmd,
	newPublishCmd,
	newInitCmd,
	newPlanCmd,
	newImportCmd,
	newSecretsCmd,
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "outpost",
		Short:         "Outpost converges this host to an environment Git repository",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	f := root.PersistentFlags()
	f.StringVar(&g.configPath, "config", agent.DefaultConfigPath, "the agent's configuration `file`")
	f.StringVar(&g.source, "source", "", "the environment repository: a directory (overrides source.url)")
	f.StringVar(&g.host, "host", "", "this host's `name` (default: host.name, then the hostname)")
	f.StringArrayVar(&g.labels, "label", nil, "a host label `key=value`, merged over host.labels (repeatable)")
	f.StringVar(&g.stateDir, "state-dir", "", "the state `directory` (default: state_dir, then "+agent.DefaultStateDir+")")
	f.StringVar(&g.root, "root", "", "a `directory` that prefixes every file path, for demos and tests")
	f.BoolVar(&g.allowEmpty, "allow-empty", false, "accept a repository with no manifests, or none for this host")
	f.BoolVar(&g.json, "json", false, "print the outcome as JSON")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	f.CountVarP(&g.verbose, "verbose", "v", "log more: -v for changes, -vv for everything")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{err}
	})
	for _, mk := range commands {
		root.AddCommand(mk(g))
	}
	return root
}

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run runs the command line args and returns the process's exit status.
// Under --json an error that stops a command (exit status 2) is printed on
// stdout as {"error": "..."} as well as on stderr, so that a script reading
// stdout always gets one JSON document.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var st exitStatus
	if err == nil {
		return exitOK
	}
	if errors.As(err, &st) {
		return int(st)
	}
	msg := errorText(ctx, err)
	fmt.Fprintf(stderr, "outpost: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "Run 'outpost --help' for usage.")
	}
	// A usage error may stop the parse before --json is read.
	if g.json || slices.Contains(args, "--json") {
		doc := jsonError{Error: msg}
		var ce agent.ConfigErrors
		if errors.As(err, &ce) {
			for _, e := range ce {
				doc.Errors = append(doc.Errors, e.Error())
			}
		}
		agent.WriteJSON(stdout, doc)
	}
	return exitFailure
}

// jsonError is what --json prints on stdout when a command could not run.
type jsonError struct {
	Error string `json:"error"`
	// Errors lists each problem when there are several (an invalid
	// configuration file).
	Errors []string `json:"errors,omitempty"`
}

// errorText is the message for an error that stops a command: an invalid
// configuration lists each problem on its own line, and a permission error
// says how to run without one.
func errorText(ctx context.Context, err error) string {
	var ce agent.ConfigErrors
	switch {
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.As(err, &ce):
		return fmt.Sprintf("%v:\n%v", agent.ErrConfig, err)
	case errors.Is(err, fs.ErrPermission):
		return err.Error() + "\n" + permissionHint
	}
	return err.Error()
}

// permissionHint follows a "permission denied": the state directory, the
// control socket and /etc belong to root.
const permissionHint = `hint: run it as root (sudo outpost ...), or point --state-dir (and --socket
for the daemon's commands) at a directory you can write; --root DIR writes
files under DIR instead of /`

// logger builds the logger that --log-format and -v ask for, on stderr.
func (g *globals) logger() (*slog.Logger, error) {
	level := slog.LevelWarn
	switch {
	case g.verbose >= 2:
		level = slog.LevelDebug
	case g.verbose == 1:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want text or json", g.logFormat)}
}

// setup builds the logger and reads the configuration: what every command
// that converges or reads the source starts with.
func (g *globals) setup(cmd *cobra.Command) (*slog.Logger, *agent.Config, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := g.config(cmd)
	if err != nil {
		return nil, nil, err
	}
	return log, cfg, nil
}

// config reads the configuration file and applies the flags over it.
func (g *globals) config(cmd *cobra.Command) (*agent.Config, error) {
	explicit := cmd.Flags().Changed("config")
	cfg, err := agent.LoadConfig(g.configPath, explicit)
	if err != nil {
		return nil, err
	}
	o := agent.Overrides{Source: g.source, Host: g.host, StateDir: g.stateDir, Root: g.root, AllowEmpty: g.allowEmpty}
	for _, l := range g.labels {
		k, v, err := agent.ParseLabel(l)
		if err != nil {
			return nil, usageError{fmt.Errorf("--label: %w", err)}
		}
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels[k] = v
	}
	o.Apply(cfg)
	if err := cfg.Resolve(); err != nil {
		return nil, err
	}
	return cfg, nil
}
