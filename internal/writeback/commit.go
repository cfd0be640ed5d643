package writeback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// commit stages the rewritten files and commits them with a message that
// lists each change and the tags passed over, signed with o.SignKey.
func commit(ctx context.Context, g *gitDir, o Options, files []string, res *Result) error {
	if _, err := g.run(ctx, append([]string{"add", "--"}, files...)...); err != nil {
		return err
	}
	args := []string{}
	if email, _ := g.run(ctx, "config", "user.email"); email == "" {
		args = append(args, "-c", "user.name=Outpost", "-c", "user.email=outpost@localhost")
	}
	if o.SignKey != "" {
		args = append(args, "-c", "gpg.format=ssh", "-c", "user.signingkey="+o.SignKey)
	}
	args = append(args, "commit", "--quiet", "--no-verify", "-F", "-")
	if o.SignKey != "" {
		args = append(args, "-S")
	}
	if _, err := g.runInput(ctx, Message(res.Changes), args...); err != nil {
		return err
	}
	head, err := g.run(ctx, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	res.Commit = head
	return nil
}

// Message is the commit message for changes: a subject, then per change
// the file, container, tags and the better tags passed over with why.
func Message(changes []Change) string {
	var b strings.Builder
	if len(changes) == 1 {
		c := changes[0]
		fmt.Fprintf(&b, "images: %s %s -> %s\n\n", c.Container, c.From, c.To)
	} else {
		fmt.Fprintf(&b, "images: update %d containers\n\n", len(changes))
	}
	for _, c := range changes {
		fmt.Fprintf(&b, "- %s:%d: %s (%s) %s -> %s@%s, %d hosts\n", c.File, c.Line, c.Container, c.Image, c.From, c.To, c.Digest, c.Hosts)
		for _, s := range c.Skipped {
			fmt.Fprintf(&b, "  passed over %s: %s\n", s.Tag, oneLine(s.Reason))
		}
	}
	return b.String()
}

// maxReason bounds a reason in the message.
const maxReason = 200

// oneLine makes a reason, which may come from a host's note, one bounded
// line: a note must not add lines (a trailer such as Outpost-Rollout) to
// the commit message.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 || r == 0x85 {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// push sends the commit to o.Branch (made from the target's tip, replacing
// what it held) or to the target. A branch that already holds the same
// tree is left alone. A push refused because the branch moved returns
// errMoved.
func push(ctx context.Context, g *gitDir, o Options, res *Result) error {
	dest := o.Target
	if o.Branch != "" {
		dest = o.Branch
	}
	res.Branch = dest
	ref := "refs/heads/" + dest
	lease := ""
	if o.Branch != "" {
		out, err := g.run(ctx, "ls-remote", "origin", ref)
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) > 0 {
			lease = f[0]
			if same, err := sameTree(ctx, g, ref, lease); err != nil {
				return err
			} else if same {
				res.Commit, res.Proposed = lease, true
				return nil
			}
		}
	}
	args := []string{"push", "--quiet", "--porcelain"}
	if o.Branch != "" {
		// Replace the branch only if it is what was read: a run beside
		// this one that pushed first wins, and this one starts over.
		args = append(args, "--force-with-lease="+ref+":"+lease)
	}
	args = append(args, "origin", "HEAD:"+ref)
	out, err := g.run(ctx, args...)
	if err != nil {
		var ge *gitError
		if errors.As(err, &ge) && rejected(out+"\n"+ge.stderr) {
			return errMoved
		}
		return err
	}
	return nil
}

// sameTree fetches commit (the tip of ref) and reports whether its tree
// is HEAD's.
func sameTree(ctx context.Context, g *gitDir, ref, commit string) (bool, error) {
	if _, err := g.run(ctx, "fetch", "--quiet", "origin", "+"+ref+":refs/outpost/proposed"); err != nil {
		return false, err
	}
	a, err := g.run(ctx, "rev-parse", commit+"^{tree}")
	if err != nil {
		return false, err
	}
	b, err := g.run(ctx, "rev-parse", "HEAD^{tree}")
	return a == b, err
}

// rejected reports whether git's output says the push was refused because
// the remote branch is not what this clone built on.
func rejected(out string) bool {
	for _, s := range []string{"[rejected]", "stale info", "non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}
