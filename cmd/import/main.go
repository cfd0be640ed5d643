// Command outpost-import converts Compose files into Outpost manifests:
// `outpost-import compose FILE...`, also run as `outpost import compose`.
// It is a binary of its own so that the Compose loader, which is larger
// than the rest of the agent's budget allows, stays out of the agent.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/outpost-gitops/outpost/internal/compose"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errDropped makes the exit status 1: something was dropped.
var errDropped = errors.New("dropped")

// run runs the command line and returns the exit status: 0 every field
// converted, 1 something dropped, 2 error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "outpost-import",
		Short:         "Convert other tools' files into Outpost manifests",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newComposeCmd(stdout, stderr))
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errDropped):
		return 1
	}
	fmt.Fprintf(stderr, "outpost import: %v\n", err)
	return 2
}

func newComposeCmd(stdout, stderr io.Writer) *cobra.Command {
	var o compose.Options
	var out string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "compose FILE...",
		Short: "Convert Compose files into container manifests",
		Long: `Reads Compose files (merged in order, as docker compose -f does) and writes
one container manifest per service into --out, or to standard output. The
files are read with no environment (a variable interpolates to its default)
and the repository (--root, default the first file's directory) as the only
root. Every manifest is validated. What was dropped or changed is printed
on standard error and written as comments in the manifests. Exit status: 0
everything converted, 1 something was dropped, 2 error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Files = args
			res, err := compose.Import(cmd.Context(), o)
			if err != nil {
				return err
			}
			switch {
			case out != "":
				if err := res.Write(out); err != nil {
					return err
				}
			case !asJSON:
				stdout.Write(res.Text())
			}
			if asJSON {
				names := []string{}
				for _, m := range res.Manifests {
					names = append(names, m.Name)
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					*compose.Result
					Files []string `json:"manifests"`
				}{res, names}); err != nil {
					return err
				}
			}
			for _, n := range res.Changed {
				fmt.Fprintf(stderr, "changed: %s\n", n)
			}
			for _, n := range res.Dropped {
				fmt.Fprintf(stderr, "dropped: %s\n", n)
			}
			if len(res.Dropped) > 0 {
				return errDropped
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the manifests into `DIR` (created; no file is overwritten)")
	cmd.Flags().StringVar(&o.Root, "root", "", "the repository: `DIR` that every file read must be in (default: the first file's directory)")
	cmd.Flags().StringVar(&o.Project, "project", "", "the project's `NAME` (default: the files' name:, else the directory's)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON: the project, the manifests' names, what was dropped and changed")
	return cmd
}
