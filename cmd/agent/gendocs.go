//go:build gendocs

package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
)

// The packages' shell completions and man pages are generated from the
// command tree at build time, by a hidden command that only a build with
// -tags gendocs has:
//
//	go run -tags gendocs ./cmd/agent gendocs packaging/generated
//
// goreleaser.yaml's before hook runs it. cobra/doc and the markdown to man
// converter it uses stay out of the released binary.
func init() { commands = append(commands, newGenDocsCmd) }

func newGenDocsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "gendocs DIR",
		Short:  "Write shell completions and man pages for the packages",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genDocs(cmd.Root(), args[0])
		},
	}
}

// genDocs writes DIR/completions/{outpost.bash,_outpost,outpost.fish} and
// DIR/man/outpost*.1.gz.
func genDocs(root *cobra.Command, dir string) error {
	comp := filepath.Join(dir, "completions")
	man := filepath.Join(dir, "man")
	for _, d := range []string{comp, man} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for name, gen := range map[string]func(*bytes.Buffer) error{
		"outpost.bash": func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) },
		"_outpost":     func(b *bytes.Buffer) error { return root.GenZshCompletion(b) },
		"outpost.fish": func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) },
	} {
		var b bytes.Buffer
		if err := gen(&b); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		// Atomic: two package builds of one checkout may run the
		// hook while the other reads the files.
		if err := atomicfile.WriteFile(filepath.Join(comp, name), b.Bytes(), 0o644, atomicfile.Options{}); err != nil {
			return err
		}
	}
	// The hidden gendocs command is no part of the pages.
	root.DisableAutoGenTag = true
	tmp, err := os.MkdirTemp("", "outpost-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	header := &doc.GenManHeader{Title: "OUTPOST", Section: "1", Source: "Outpost", Manual: "Outpost manual"}
	// A release build sets SOURCE_DATE_EPOCH (the commit's time), so
	// that the pages do not change with the day they were built on.
	if sec, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		t := time.Unix(sec, 0).UTC()
		header.Date = &t
	}
	if err := doc.GenManTree(root, header, tmp); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	pages, err := filepath.Glob(filepath.Join(tmp, "*.1"))
	if err != nil {
		return err
	}
	for _, p := range pages {
		if err := gzipFile(p, filepath.Join(man, filepath.Base(p)+".gz")); err != nil {
			return err
		}
	}
	return nil
}

// gzipFile writes src compressed to dst, with no name or time in the
// header so that a build is reproducible.
func gzipFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, out.Bytes(), 0o644, atomicfile.Options{})
}
