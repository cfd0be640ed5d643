package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/redact"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// FleetOptions tune Fleet.
type FleetOptions struct {
	// Branch is the source branch whose tip each host's commit is compared
	// with; "" means main.
	Branch string
	// Commit, when set, selects each host's note on this commit (a full
	// hash or a unique prefix of at least 4 hex digits) instead of its
	// latest note.
	Commit string
	// Auth and CABundle are used when the source is a URL.
	Auth     transport.AuthMethod
	CABundle []byte
}

// HostStatus is one host's line of a fleet view.
type HostStatus struct {
	Host string `json:"host"`
	// Note is the host's latest note, or its note on FleetOptions.Commit;
	// nil when it has none on that commit.
	Note *Note `json:"note"`
	// AtTip is true when the note's commit is the branch's tip.
	AtTip bool `json:"at_tip"`
	// Warning says why the note may be incomplete (a newer schema) or
	// could not be read.
	Warning string `json:"warning,omitempty"`
}

// ErrAmbiguousCommit is matched by errors.Is when FleetOptions.Commit is a
// prefix of more than one noted commit.
var ErrAmbiguousCommit = errors.New("ambiguous commit prefix")

// Fleet reads every host's notes ref, refs/notes/outpost/*, of the
// repository src and returns each host's status, sorted by host. src is a
// URL (fetched once into memory, only the tips of the notes refs) or the
// path of a local repository (read in place).
func Fleet(ctx context.Context, src string, o FleetOptions) ([]HostStatus, error) {
	branch := o.Branch
	if branch == "" {
		branch = "main"
	}
	branchRef := plumbing.NewBranchReferenceName(branch)
	var st storer.Storer
	var refs []*plumbing.Reference
	var tip plumbing.Hash
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		repo, err := git.PlainOpenWithOptions(src, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
		if err != nil {
			return nil, fmt.Errorf("open repository %s: %w", src, err)
		}
		st = repo.Storer
		iter, err := repo.References()
		if err != nil {
			return nil, fmt.Errorf("list refs of %s: %w", src, err)
		}
		err = iter.ForEach(func(r *plumbing.Reference) error {
			if r.Name() == branchRef {
				tip = r.Hash()
			}
			if strings.HasPrefix(r.Name().String(), RefPrefix) && r.Type() == plumbing.HashReference {
				refs = append(refs, r)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list refs of %s: %w", src, err)
		}
	} else {
		mem := memory.NewStorage()
		st = mem
		var err error
		refs, tip, err = fetchFleet(ctx, mem, src, branchRef, o)
		if err != nil {
			return nil, &redactedError{msg: redact.URLs(err.Error()), err: err}
		}
	}
	return readFleet(st, refs, tip, o.Commit)
}

// fetchFleet lists the remote's notes refs and branch, asking for them
// alone where the server speaks protocol v2 (so that the listing does not
// grow with the repository's other refs), then fetches the tips of the
// notes refs in one shallow fetch. The branch's objects are not fetched:
// its tip hash is all a fleet view needs.
func fetchFleet(ctx context.Context, st *memory.Storage, url string, branch plumbing.ReferenceName, o FleetOptions) ([]*plumbing.Reference, plumbing.Hash, error) {
	rm := pull.NewRemote(pull.Transport{URL: url, Auth: o.Auth, CABundle: o.CABundle}, nil)
	advertised, err := rm.ListRefs(ctx, RefPrefix, branch.String())
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return nil, plumbing.ZeroHash, nil // a new status repository: no host has pushed yet
	}
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("list refs of %s: %w", url, err)
	}
	tip := advertised[branch.String()]
	notes := 0
	for name := range advertised {
		if strings.HasPrefix(name, RefPrefix) {
			notes++
		}
	}
	if notes == 0 {
		return nil, tip, nil
	}
	if rm.Protocol() == pull.ProtocolV2 {
		refs, err := fetchNotesV2(ctx, rm, st, advertised)
		if !errors.Is(err, pull.ErrNotV2) {
			if err != nil {
				return nil, plumbing.ZeroHash, fmt.Errorf("fetch notes of %s: %w", url, err)
			}
			return refs, tip, nil
		}
	}
	remote := git.NewRemote(st, &config.RemoteConfig{Name: remoteName, URLs: []string{url}})
	err = remote.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + RefPrefix + "*:" + RefPrefix + "*")},
		Depth:      1,
		Auth:       o.Auth,
		CABundle:   o.CABundle,
		Tags:       git.NoTags,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, plumbing.ZeroHash, fmt.Errorf("fetch notes of %s: %w", url, err)
	}
	iter, err := st.IterReferences()
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("list fetched notes: %w", err)
	}
	var refs []*plumbing.Reference
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if strings.HasPrefix(r.Name().String(), RefPrefix) {
			refs = append(refs, r)
		}
		return nil
	})
	return refs, tip, err
}

// fetchNotesV2 fetches the tips of the listed notes refs in protocol v2,
// by their hashes, without listing the refs again as a v0 fetch does.
func fetchNotesV2(ctx context.Context, rm *pull.Remote, st *memory.Storage, listed map[string]plumbing.Hash) ([]*plumbing.Reference, error) {
	var refs []*plumbing.Reference
	var wants []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, name := range slices.Sorted(maps.Keys(listed)) {
		h := listed[name]
		if !strings.HasPrefix(name, RefPrefix) {
			continue
		}
		refs = append(refs, plumbing.NewHashReference(plumbing.ReferenceName(name), h))
		if !seen[h] {
			seen[h] = true
			wants = append(wants, h)
		}
	}
	if err := rm.Fetch(ctx, st, wants, nil, 1); err != nil {
		return nil, err
	}
	return refs, nil
}

// readFleet reads each host's note from the notes refs.
func readFleet(st storer.EncodedObjectStorer, refs []*plumbing.Reference, tip plumbing.Hash, commit string) ([]HostStatus, error) {
	type hostTip struct {
		host string
		c    *object.Commit
		err  error
	}
	tips := make([]hostTip, 0, len(refs))
	for _, r := range refs {
		host := strings.TrimPrefix(r.Name().String(), RefPrefix)
		if checkHost(host) != nil {
			continue // not a host's ref (e.g. a nested name)
		}
		c, err := object.GetCommit(st, r.Hash())
		tips = append(tips, hostTip{host: host, c: c, err: err})
	}
	if commit != "" {
		full, err := resolveCommit(tips, commit, func(t hostTip) (*object.Commit, error) { return t.c, t.err })
		if err != nil {
			return nil, err
		}
		commit = full
	}
	out := make([]HostStatus, 0, len(tips))
	for _, t := range tips {
		hs := HostStatus{Host: t.host}
		if t.err != nil {
			hs.Warning = fmt.Sprintf("read notes commit: %v", t.err)
			out = append(out, hs)
			continue
		}
		var n Note
		var err error
		if commit == "" {
			n, _, err = latest(st, t.c)
		} else {
			entries, eerr := noteEntries(t.c)
			h, ok := entries[commit]
			switch {
			case eerr != nil:
				err = eerr
			case !ok:
				out = append(out, hs)
				continue
			default:
				n, err = readNote(st, h)
			}
		}
		if err != nil && !isSchemaError(err) {
			hs.Warning = err.Error()
			out = append(out, hs)
			continue
		}
		if err != nil {
			hs.Warning = err.Error()
		}
		if n.Host != t.host {
			hs.Warning = fmt.Sprintf("note names host %q", n.Host)
		}
		hs.Note = &n
		hs.AtTip = !tip.IsZero() && n.Commit == tip.String()
		out = append(out, hs)
	}
	slices.SortFunc(out, func(a, b HostStatus) int { return strings.Compare(a.Host, b.Host) })
	return out, nil
}

// resolveCommit expands a commit prefix against the commits that hosts
// have notes on.
func resolveCommit[T any](tips []T, prefix string, commitOf func(T) (*object.Commit, error)) (string, error) {
	prefix = strings.ToLower(prefix)
	if isHash(prefix) {
		return prefix, nil
	}
	if len(prefix) < 4 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return "", fmt.Errorf("commit %q: want a hash or a prefix of at least 4 hex digits", prefix)
	}
	found := map[string]bool{}
	for _, t := range tips {
		c, err := commitOf(t)
		if err != nil {
			continue
		}
		entries, err := noteEntries(c)
		if err != nil {
			continue
		}
		for k := range entries {
			if strings.HasPrefix(k, prefix) {
				found[k] = true
			}
		}
	}
	switch len(found) {
	case 0:
		return prefix, nil // no host has a note on it
	case 1:
		for k := range found {
			return k, nil
		}
	}
	return "", fmt.Errorf("%w: %s matches %s", ErrAmbiguousCommit, prefix, strings.Join(slices.Sorted(maps.Keys(found)), ", "))
}

// ExitCode returns the exit status of a fleet view for a pipeline: 1 when
// any host's note reports a failure (failed, rolled-back, invalid,
// unverified), else 0. Hosts without a note do not count.
func ExitCode(hosts []HostStatus) int {
	for _, h := range hosts {
		if h.Note != nil && h.Note.Result.Failure() {
			return 1
		}
	}
	return 0
}

// WriteJSON writes hosts as one indented JSON array.
func WriteJSON(w io.Writer, hosts []HostStatus) error {
	if hosts == nil {
		hosts = []HostStatus{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(hosts); err != nil {
		return fmt.Errorf("write fleet json: %w", err)
	}
	return nil
}

// WriteTable writes hosts as an aligned table: host, labels, commit (with
// "(tip)" when it is the branch's tip), result (with the number of failed
// resources), age at now, images; then a line per host with a warning.
func WriteTable(w io.Writer, hosts []HostStatus, now time.Time) error {
	// Notes are written by other hosts, and may be forged: every string is
	// quoted when it holds a control character (a tab, a newline, an escape).
	q := spec.Quote
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tLABELS\tCOMMIT\tRESULT\tAGE\tIMAGES")
	for _, h := range hosts {
		if h.Note == nil {
			result := "-"
			if h.Warning != "" {
				result = "unreadable"
			}
			fmt.Fprintf(tw, "%s\t-\t-\t%s\t-\t-\n", q(h.Host), result)
			continue
		}
		n := h.Note
		commit := q(short(n.Commit))
		if n.Digest != "" {
			// An OCI artifact: its digest, cut as images' are.
			commit += " " + q(shortDigest(n.Digest))
		}
		if h.AtTip {
			commit += " (tip)"
		}
		result := q(string(n.Result))
		if len(n.Failed) > 0 {
			result = fmt.Sprintf("%s (%d)", result, len(n.Failed))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", q(h.Host), q(orDash(formatLabels(n.Labels))), commit, result, age(now.Sub(n.AppliedAt)), q(orDash(formatImages(n.Images))))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write fleet table: %w", err)
	}
	for _, h := range hosts {
		if h.Warning != "" {
			if _, err := fmt.Fprintf(w, "warning: %s: %s\n", q(h.Host), q(h.Warning)); err != nil {
				return fmt.Errorf("write fleet table: %w", err)
			}
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatLabels(l map[string]string) string {
	parts := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

// formatImages writes name=tag@digest with the digest cut to 12 hex
// digits, as docker does.
func formatImages(images map[string]string) string {
	parts := make([]string, 0, len(images))
	for _, k := range slices.Sorted(maps.Keys(images)) {
		v := images[k]
		if tag, digest, ok := strings.Cut(v, "@"); ok {
			algo, hex, ok := strings.Cut(digest, ":")
			if ok && len(hex) > 12 {
				digest = algo + ":" + hex[:12]
			}
			v = tag + "@" + digest
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// age formats d in its largest whole unit.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// shortDigest cuts a manifest digest to 12 hex digits: sha256:0a0a0a0a0a0a.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
