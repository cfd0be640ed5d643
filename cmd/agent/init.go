package main

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/spf13/cobra"
)

// initRepo is the environment repository that `outpost init` writes: a
// fleet.yaml, a templated file, one unit and one container, each commented.
// testdata/script/init.txtar checks that it validates and diffs as written.
//
//go:embed initrepo
var initRepo embed.FS

func newInitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "init [DIR]",
		Short: "Write a small, commented environment repository to start from",
		Long: `Init writes a small environment repository into DIR (default: the current
directory, created when missing): a fleet.yaml, a file rendered per host, one
systemd unit and one container, each commented, and a README saying what to
run next. It validates as written, so that outpost validate DIR and then
outpost diff --source DIR work at once. It never overwrites a file: when one
of its files exists already it writes nothing and exits 2.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			files, err := writeInitRepo(dir)
			if err != nil {
				return err
			}
			if g.json {
				return agent.WriteJSON(g.stdout, struct {
					Dir   string   `json:"dir"`
					Files []string `json:"files"`
				}{dir, files})
			}
			fmt.Fprintf(g.stdout, "wrote %d files in %s; next:\n", len(files), dir)
			fmt.Fprintf(g.stdout, "  outpost validate %s\n", dir)
			fmt.Fprintf(g.stdout, "  outpost diff --source %s\n", dir)
			return nil
		},
	}
}

// writeInitRepo writes initRepo's files under dir and returns their paths,
// relative to dir. It checks first that none exists, so that it writes all
// or nothing.
func writeInitRepo(dir string) ([]string, error) {
	sub, err := fs.Sub(initRepo, "initrepo")
	if err != nil {
		return nil, err
	}
	var files []string
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		dst := filepath.Join(dir, filepath.FromSlash(f))
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("init: %s exists already; nothing written (choose an empty directory)", dst)
		}
	}
	for _, f := range files {
		b, err := fs.ReadFile(sub, f)
		if err != nil {
			return nil, err
		}
		dst := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		// O_EXCL: a file made since the check above is not overwritten.
		w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		_, err = w.Write(b)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	return files, nil
}
