package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/secrets"
	"github.com/outpost-gitops/outpost/internal/sops"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/status"
)

// AdminRecipientsFile lists, in the repository, the recipients that every
// secret is encrypted to besides the hosts: the people who edit secrets.
const AdminRecipientsFile = ".outpost/recipients"

// RecipientsSuffix is the file beside an age file that lists its
// recipients (age files do not name them): outpost secrets encrypt writes
// it, and outpost secrets check reads it.
const RecipientsSuffix = ".recipients"

// HostRecipients is a host's recipients, as its latest note says.
type HostRecipients struct {
	Host       string            `json:"host"`
	Labels     map[string]string `json:"labels"`
	Recipients []string          `json:"recipients"`
}

// Recipients is who a secret for some hosts is encrypted to.
type Recipients struct {
	Hosts  []HostRecipients `json:"hosts"`
	Admins []string         `json:"admins"`
	// All is every recipient once: the admins', then the hosts'.
	All []string `json:"all"`
}

// fleetSource is the source's tip and the fleet's notes.
type fleetSource struct {
	repo  *pull.Repo
	tip   string
	fsys  fs.FS
	hosts []status.HostStatus
	close func()
}

// openFleet fetches the branch's tip into a temporary cache and reads
// every host's latest note.
func openFleet(ctx context.Context, cfg *Config) (*fleetSource, error) {
	dir, err := os.MkdirTemp("", "outpost-secrets-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*fleetSource, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	repo, err := pull.Open(dir, pullConfig(cfg), nil)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrSource, err))
	}
	res, err := repo.Poll(ctx)
	if err != nil {
		repo.Close()
		return fail(err)
	}
	fsys, err := repo.Tree(ctx, res.Commit)
	if err != nil {
		repo.Close()
		return fail(err)
	}
	o, url, err := FleetOptions(cfg)
	var hosts []status.HostStatus
	if err == nil {
		hosts, err = status.Fleet(ctx, url, o)
	}
	if err != nil {
		repo.Close()
		return fail(err)
	}
	return &fleetSource{repo: repo, tip: res.Commit, fsys: fsys, hosts: hosts, close: func() {
		repo.Close()
		os.RemoveAll(dir)
	}}, nil
}

// SecretRecipients lists the recipients of the hosts whose labels match
// sel (every host when empty), from their notes, and the repository's
// admin recipients.
func SecretRecipients(ctx context.Context, cfg *Config, sel map[string]string) (*Recipients, error) {
	f, err := openFleet(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer f.close()
	return f.recipients(sel)
}

func (f *fleetSource) recipients(sel map[string]string) (*Recipients, error) {
	admins, err := adminRecipients(f.fsys)
	if err != nil {
		return nil, err
	}
	out := &Recipients{Hosts: []HostRecipients{}, Admins: admins}
	for _, h := range f.hosts {
		if h.Note == nil || !matches(h.Note.Labels, sel) {
			continue
		}
		out.Hosts = append(out.Hosts, HostRecipients{Host: h.Host, Labels: h.Note.Labels, Recipients: h.Note.Recipients})
	}
	seen := map[string]bool{}
	for _, r := range admins {
		if !seen[r] {
			seen[r] = true
			out.All = append(out.All, r)
		}
	}
	for _, h := range out.Hosts {
		for _, r := range h.Recipients {
			if !seen[r] {
				seen[r] = true
				out.All = append(out.All, r)
			}
		}
	}
	return out, nil
}

func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// adminRecipients reads .outpost/recipients: one recipient per line, #
// comments; missing is none.
func adminRecipients(fsys fs.FS) ([]string, error) {
	data, err := fs.ReadFile(fsys, AdminRecipientsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", AdminRecipientsFile, err)
	}
	return readRecipients(AdminRecipientsFile, data)
}

// readRecipients reads a recipients file and checks every line.
func readRecipients(name string, data []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := parseRecipient(line); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, line)
	}
	return out, nil
}

// parseRecipient reads an age recipient or an SSH public key.
func parseRecipient(s string) (age.Recipient, error) {
	if strings.HasPrefix(s, "ssh-") {
		return agessh.ParseRecipient(s)
	}
	return age.ParseX25519Recipient(s)
}

// EncryptSecret encrypts plaintext, armored, to the recipients of the
// hosts that match sel and to the admins, and returns the ciphertext and
// the recipients.
func EncryptSecret(ctx context.Context, cfg *Config, sel map[string]string, plaintext []byte) ([]byte, []string, error) {
	rs, err := SecretRecipients(ctx, cfg, sel)
	if err != nil {
		return nil, nil, err
	}
	if len(rs.All) == 0 {
		return nil, nil, errors.New("no recipient: no host matches, none of them has a recipient in its note, and the repository has no " + AdminRecipientsFile)
	}
	if len(rs.All) > secrets.MaxRecipients {
		return nil, nil, fmt.Errorf("%d recipients: at most %d", len(rs.All), secrets.MaxRecipients)
	}
	var to []age.Recipient
	for _, s := range rs.All {
		r, err := parseRecipient(s)
		if err != nil {
			return nil, nil, fmt.Errorf("recipient %q: %w", s, err)
		}
		to = append(to, r)
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, to...)
	if err != nil {
		return nil, nil, err
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, nil, err
	}
	if err := errors.Join(w.Close(), aw.Close()); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), rs.All, nil
}

// SecretProblem is a host that a resource sends a secret to but that
// cannot decrypt it.
type SecretProblem struct {
	Host     string `json:"host"`
	Resource string `json:"resource"`
	File     string `json:"file"`
	Problem  string `json:"problem"`
}

// CheckSecrets renders the branch's tip for every host of the notes and
// reports each encrypted file that a host's resources need and that is
// not encrypted to one of the host's recipients (SOPS files name theirs;
// an age file's are in NAME.age.recipients).
func CheckSecrets(ctx context.Context, cfg *Config) ([]SecretProblem, int, error) {
	f, err := openFleet(ctx, cfg)
	if err != nil {
		return nil, 0, err
	}
	defer f.close()
	repo, err := spec.Load(f.fsys, spec.Options{})
	if err != nil {
		return nil, 0, fmt.Errorf("commit %s: %w", shortRev(f.tip), err)
	}
	problems := []SecretProblem{}
	files := map[string][]string{} // recipients of each file read
	checked := 0
	for _, h := range f.hosts {
		if h.Note == nil {
			continue
		}
		desired, err := repo.Render(spec.Host{Name: h.Host, Labels: h.Note.Labels})
		if err != nil {
			continue // plan reports render failures; this is about keys
		}
		for _, r := range desired.Resources {
			for _, name := range r.SecretFiles {
				checked++
				if p := f.checkFile(files, h, r.ID.String(), name); p != nil {
					problems = append(problems, *p)
				}
			}
		}
	}
	return problems, checked, nil
}

// checkFile checks that host can decrypt the file name.
func (f *fleetSource) checkFile(files map[string][]string, h status.HostStatus, res, name string) *SecretProblem {
	p := &SecretProblem{Host: h.Host, Resource: res, File: name}
	if len(h.Note.Recipients) == 0 {
		p.Problem = "the host's note names no recipient (an agent too old, or without a key)"
		return p
	}
	rs, ok := files[name]
	if !ok {
		var err error
		rs, err = fileRecipients(f.fsys, name)
		if err != nil {
			p.Problem = err.Error()
			return p
		}
		files[name] = rs
	}
	for _, r := range h.Note.Recipients {
		if slices.Contains(rs, r) {
			return nil
		}
	}
	p.Problem = fmt.Sprintf("not encrypted to the host's recipient %s", strings.Join(h.Note.Recipients, ", "))
	return p
}

// fileRecipients returns the recipients an encrypted file names.
func fileRecipients(fsys fs.FS, name string) ([]string, error) {
	if strings.HasSuffix(name, ".age") {
		data, err := fs.ReadFile(fsys, name+RecipientsSuffix)
		if err != nil {
			return nil, fmt.Errorf("an age file does not name its recipients, and %s is missing: make the file with outpost secrets encrypt", name+RecipientsSuffix)
		}
		return readRecipients(name+RecipientsSuffix, data)
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	sf, err := sops.Parse(data, sops.FormatOf(strings.TrimSuffix(name, ".sops")))
	if err != nil {
		return nil, fmt.Errorf("read as SOPS: %w", err)
	}
	return sf.Recipients(), nil
}

// writeRecipientsList writes a recipients file: a comment, then one
// recipient per line.
func writeRecipientsList(w io.Writer, rs []string) error {
	if _, err := fmt.Fprintln(w, "# The recipients this file is encrypted to (outpost secrets encrypt)."); err != nil {
		return err
	}
	for _, r := range rs {
		if _, err := fmt.Fprintln(w, r); err != nil {
			return err
		}
	}
	return nil
}

// RecipientsList is the content of a NAME.age.recipients file.
func RecipientsList(rs []string) []byte {
	var b bytes.Buffer
	writeRecipientsList(&b, rs)
	return b.Bytes()
}

// sortedLabels formats labels for a table.
func sortedLabels(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
