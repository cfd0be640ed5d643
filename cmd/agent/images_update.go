package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/outpost-gitops/outpost/internal/agent"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/writeback"
)

func newImagesUpdateCmd(g *globals) *cobra.Command {
	var o writeback.Options
	var toTarget bool
	var platform string
	cmd := &cobra.Command{
		Use:   "update --source REPO",
		Short: "Resolve the containers in update mode git for the fleet, and write the new tags back to Git",
		Long: `Update clones the environment repository (--source, a URL or a path, at
--target), reads the hosts' notes, renders every host, and resolves the update
policy of every container in update mode git for the platforms of the hosts
it applies to, passing over the tags that a host's note marks bad. It
rewrites each pinned tag that changes in place (only that value: comments,
order and quoting stay), commits with a message listing each change and the
tags passed over, optionally signed with an SSH key, and pushes to --branch
(made from the target's tip) or, with --to-target, to the target branch.

Nothing new makes no commit. A branch that already holds the same change is
left alone; a push refused because the branch moved starts over on its new
tip. A registry error leaves that container's tag as it is, and is reported
(exit status 1). It needs the git command.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if g.source == "" {
				return usageError{fmt.Errorf("images update needs --source")}
			}
			if o.Platform, err = registry.ParsePlatform(platform); err != nil {
				return usageError{fmt.Errorf("--platform: %w", err)}
			}
			if toTarget {
				o.Branch = ""
			}
			o.Source, o.Log = g.source, log
			res, err := writeback.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				err = agent.WriteJSON(g.stdout, res)
			} else {
				err = writeUpdate(g.stdout, res, o.DryRun)
			}
			if err != nil {
				return err
			}
			if len(res.Errors) > 0 {
				return exitStatus(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Target, "target", "main", "the `branch` the hosts follow")
	f.StringVar(&o.Branch, "branch", "outpost/images", "the `branch` the change is pushed to, for review")
	f.BoolVar(&toTarget, "to-target", false, "push to the target branch instead of --branch")
	f.StringVar(&o.SignKey, "sign-key", "", "sign the commit with this SSH `key` (git's user.signingkey)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the changes; commit and push nothing")
	f.StringVar(&platform, "platform", registry.HostPlatform().String(), "the `platform` of hosts whose note names none")
	return cmd
}

// writeUpdate prints what images update did.
func writeUpdate(w io.Writer, res *writeback.Result, dryRun bool) error {
	ew := &errWriter{w: w}
	for _, c := range res.Changes {
		ew.printf("%s:%d: %s %s -> %s (%s, %d hosts)\n", c.File, c.Line, c.Container, c.From, c.To, c.Digest, c.Hosts)
		for _, s := range c.Skipped {
			ew.printf("  passed over %s: %s\n", s.Tag, s.Reason)
		}
	}
	for _, p := range res.Errors {
		who := p.Host
		if p.Container != "" {
			who = p.File + ": " + p.Container
		}
		ew.printf("error: %s: %s\n", who, p.Error)
	}
	switch {
	case len(res.Changes) == 0:
		ew.printf("nothing new for %d hosts\n", res.Hosts)
	case dryRun:
		ew.printf("dry run: nothing written\n")
	case res.Proposed:
		ew.printf("%s already holds this change (%s)\n", res.Branch, short(res.Commit))
	default:
		ew.printf("pushed %s to %s\n", short(res.Commit), res.Branch)
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
