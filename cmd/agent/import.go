package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"
)

// importBinary is the importer's binary: it links the Compose loader,
// which the agent's size budget leaves out, and ships in the same
// packages.
const importBinary = "outpost-import"

func newImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import compose [--out DIR] [--root DIR] [--project NAME] [--json] FILE...",
		Short: "Convert Compose files into Outpost manifests (runs outpost-import)",
		Long: `Import runs outpost-import, found beside this binary or on PATH, with the
same arguments: import compose converts Compose files into one container
manifest per service, with a comment wherever something was dropped or
changed. Exit status: 0 everything converted, 1 something was dropped, 2
error. See docs/compose.md.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
				return cmd.Help()
			}
			bin, err := findImporter()
			if err != nil {
				return err
			}
			c := exec.CommandContext(cmd.Context(), bin, args...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, g.stdout, g.stderr
			err = c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				return exitStatus(ee.ExitCode())
			}
			return err
		},
	}
}

// findImporter looks for outpost-import beside the running binary, then
// on PATH.
func findImporter() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), importBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath(importBinary)
	if err != nil {
		return "", fmt.Errorf("%s not found beside outpost or on PATH: it ships in the outpost package (or: go build -o %s ./cmd/import)", importBinary, importBinary)
	}
	return p, nil
}
