package gitserver

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Repo is one bare repository of a Root and the work clone that commits to
// it.
type Repo struct {
	t    testing.TB
	Name string
	// Path is the bare repository.
	Path string
	// Work is the work clone in which commits are made.
	Work string
}

// Create makes the bare repository name.git with the default branch main.
// It accepts pushes over every transport (http.receivepack and
// receive.denyNonFastForwards off), so tests and agents can push notes.
func (r *Root) Create(name string) *Repo {
	r.t.Helper()
	path := r.Path(name)
	runGit(r.t, r.Dir, nil, nil, "init", "-q", "--bare", "-b", "main", path)
	runGit(r.t, path, nil, nil, "config", "http.receivepack", "true")
	work := filepath.Join(filepath.Dir(r.Dir), "work", name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		r.t.Fatalf("gitserver: %v", err)
	}
	runGit(r.t, work, nil, nil, "init", "-q", "-b", "main")
	runGit(r.t, work, nil, nil, "remote", "add", "origin", path)
	return &Repo{t: r.t, Name: name, Path: path, Work: work}
}

// Files maps a path in the repository to its content.
type Files map[string]string

// CommitOptions say what a commit changes and how it is made.
type CommitOptions struct {
	// Branch is the branch to commit on; "" means main. A branch that does
	// not exist yet starts empty (an orphan).
	Branch string
	// Message is the commit message; "" means "update".
	Message string
	// Files are written (created or replaced).
	Files Files
	// Symlinks maps a path to a symlink's target.
	Symlinks map[string]string
	// Remove are paths deleted from the tree.
	Remove []string
	// Replace empties the tree before Files and Symlinks are written.
	Replace bool
	// SSHKey is the path of a private key to sign the commit with
	// (ssh-keygen -Y sign through gpg.format=ssh).
	SSHKey string
	// OpenPGP signs the commit with this entity (through go-git).
	OpenPGP *openpgp.Entity
	// AllowEmpty makes a commit even when nothing changed.
	AllowEmpty bool
}

// Commit writes files on main, commits and pushes, and returns the commit's
// hash.
func (r *Repo) Commit(files Files, message string) string {
	r.t.Helper()
	return r.CommitWith(CommitOptions{Files: files, Message: message})
}

// CommitWith makes one commit as o says on the tip of o.Branch in the bare
// repository (following force-pushes made meanwhile), pushes it and
// returns its hash.
func (r *Repo) CommitWith(o CommitOptions) string {
	r.t.Helper()
	branch := o.Branch
	if branch == "" {
		branch = "main"
	}
	msg := o.Message
	if msg == "" {
		msg = "update"
	}
	runGit(r.t, r.Work, nil, nil, "fetch", "-q", "--prune", "origin")
	if _, err := gitOutput(r.Work, nil, nil, "rev-parse", "-q", "--verify", "refs/remotes/origin/"+branch); err == nil {
		runGit(r.t, r.Work, nil, nil, "checkout", "-q", "-f", "-B", branch, "origin/"+branch)
	} else {
		// A new (or deleted and re-created) branch starts with no history.
		_, _ = gitOutput(r.Work, nil, nil, "update-ref", "-d", "refs/heads/"+branch)
		runGit(r.t, r.Work, nil, nil, "symbolic-ref", "HEAD", "refs/heads/"+branch)
		runGit(r.t, r.Work, nil, nil, "read-tree", "--empty")
	}
	runGit(r.t, r.Work, nil, nil, "clean", "-f", "-d", "-x", "-q")
	if o.Replace {
		runGit(r.t, r.Work, nil, nil, "rm", "-r", "-f", "-q", "--ignore-unmatch", ".")
	}
	for _, p := range o.Remove {
		runGit(r.t, r.Work, nil, nil, "rm", "-r", "-f", "-q", "--ignore-unmatch", "--", p)
	}
	for _, p := range sortedKeys(o.Files) {
		full := filepath.Join(r.Work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatalf("gitserver: %v", err)
		}
		os.Remove(full)
		if err := os.WriteFile(full, []byte(o.Files[p]), 0o644); err != nil {
			r.t.Fatalf("gitserver: %v", err)
		}
	}
	for _, p := range sortedKeys(o.Symlinks) {
		full := filepath.Join(r.Work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatalf("gitserver: %v", err)
		}
		os.RemoveAll(full)
		if err := os.Symlink(o.Symlinks[p], full); err != nil {
			r.t.Fatalf("gitserver: %v", err)
		}
	}
	runGit(r.t, r.Work, nil, nil, "add", "-A")
	switch {
	case o.OpenPGP != nil:
		r.commitOpenPGP(msg, o.OpenPGP, o.AllowEmpty)
	default:
		args := []string{"-c", "commit.gpgsign=false", "commit", "-q", "-m", msg}
		if o.AllowEmpty {
			args = append(args, "--allow-empty")
		}
		if o.SSHKey != "" {
			mustLookPath(r.t, "ssh-keygen")
			args = append([]string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + o.SSHKey}, args...)
			args = append(args, "-S")
		}
		runGit(r.t, r.Work, nil, nil, args...)
	}
	runGit(r.t, r.Work, nil, nil, "push", "-q", "origin", "HEAD:refs/heads/"+branch)
	return runGit(r.t, r.Work, nil, nil, "rev-parse", "HEAD")
}

func (r *Repo) commitOpenPGP(msg string, key *openpgp.Entity, allowEmpty bool) {
	r.t.Helper()
	repo, err := git.PlainOpen(r.Work)
	if err != nil {
		r.t.Fatalf("gitserver: open work clone: %v", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		r.t.Fatalf("gitserver: %v", err)
	}
	sig := &object.Signature{Name: "Outpost Test", Email: "test@outpost.invalid", When: time.Now()}
	if _, err := wt.Commit(msg, &git.CommitOptions{
		Author: sig, Committer: sig, SignKey: key, AllowEmptyCommits: allowEmpty,
	}); err != nil {
		r.t.Fatalf("gitserver: signed commit: %v", err)
	}
	// go-git leaves git's index behind; let git rebuild it from HEAD.
	runGit(r.t, r.Work, nil, nil, "reset", "-q")
}

// Head returns the commit at the tip of branch in the bare repository, or
// "" when the branch does not exist.
func (r *Repo) Head(branch string) string {
	r.t.Helper()
	out, err := gitOutput(r.Path, nil, nil, "rev-parse", "-q", "--verify", "refs/heads/"+branch+"^{commit}")
	if err != nil {
		return ""
	}
	return out
}

// ForcePush moves branch in the bare repository to commit, which must be
// in it already (an older commit, for a rewrite of history).
func (r *Repo) ForcePush(branch, commit string) {
	r.t.Helper()
	runGit(r.t, r.Path, nil, nil, "update-ref", "refs/heads/"+branch, commit)
}

// DeleteBranch removes branch from the bare repository.
func (r *Repo) DeleteBranch(branch string) {
	r.t.Helper()
	runGit(r.t, r.Path, nil, nil, "update-ref", "-d", "refs/heads/"+branch)
}

// Git runs git with args in the bare repository and returns its trimmed
// output.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return runGit(r.t, r.Path, nil, nil, args...)
}

// CreateRefs points every ref of names at commit in one transaction and
// packs all refs, as a busy repository's are: the quick way to give a
// repository thousands of refs.
func (r *Repo) CreateRefs(names []string, commit string) {
	r.t.Helper()
	var b strings.Builder
	for _, n := range names {
		b.WriteString("create " + n + " " + commit + "\n")
	}
	runGit(r.t, r.Path, nil, []byte(b.String()), "update-ref", "--stdin")
	runGit(r.t, r.Path, nil, nil, "pack-refs", "--all")
}

// RawCommit returns the commit object's exact bytes (headers, signature,
// message).
func (r *Repo) RawCommit(commit string) []byte {
	r.t.Helper()
	cmd := exec.Command("git", "cat-file", "commit", commit)
	cmd.Dir = r.Path
	cmd.Env = gitEnv(filepath.Dir(r.Path))
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("gitserver: git cat-file commit %s: %v", commit, err)
	}
	return out
}

// WriteRawCommit stores raw as a commit object in the bare repository
// without checking it (a forged or tampered commit) and returns its hash.
func (r *Repo) WriteRawCommit(raw []byte) string {
	r.t.Helper()
	return runGit(r.t, r.Path, nil, raw, "hash-object", "-t", "commit", "-w", "--stdin", "--literally")
}

// WriteObject stores raw as an object of type typ ("blob", "tree") in the
// bare repository without checking it, and returns its hash: the way to
// make a tree that lists one subtree many times over.
func (r *Repo) WriteObject(typ string, raw []byte) string {
	r.t.Helper()
	return runGit(r.t, r.Path, nil, raw, "hash-object", "-t", typ, "-w", "--stdin", "--literally")
}

// CommitZeros commits, on top of main, a file at path of size zero bytes,
// without holding them in memory, and returns the commit. Such a blob packs
// into a thousandth of its size: a small fetch of a large object.
func (r *Repo) CommitZeros(path string, size int64) string {
	r.t.Helper()
	parent := strings.TrimSpace(r.Git("rev-parse", "main"))
	head := fmt.Sprintf("blob\nmark :1\ndata %d\n", size)
	tail := fmt.Sprintf("\ncommit refs/heads/main\ncommitter T <t@example.com> 1700000000 +0000\ndata 6\nzeros\nfrom %s\nM 100644 :1 %s\n\n", parent, path)
	r.Import(io.MultiReader(strings.NewReader(head), &zeros{n: size}, strings.NewReader(tail)))
	return strings.TrimSpace(r.Git("rev-parse", "main"))
}

// zeros reads as n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// RawHash is a hash as a tree entry holds it.
func RawHash(h string) string {
	b, err := hex.DecodeString(strings.TrimSpace(h))
	if err != nil {
		panic(err)
	}
	return string(b)
}

// CommitTree makes main point to a new commit of tree on top of main,
// without a work tree, and returns the commit.
func (r *Repo) CommitTree(tree string) string {
	r.t.Helper()
	parent := strings.TrimSpace(r.Git("rev-parse", "main"))
	raw := fmt.Sprintf("tree %s\nparent %s\nauthor T <t@example.com> 1700000000 +0000\ncommitter T <t@example.com> 1700000000 +0000\n\nhostile\n", strings.TrimSpace(tree), parent)
	c := strings.TrimSpace(r.WriteRawCommit([]byte(raw)))
	r.Git("update-ref", "refs/heads/main", c)
	return c
}

// CommitManyPaths commits a tree of outer directories that each list the
// same directory of inner files: outer*inner paths in a few KiB.
func (r *Repo) CommitManyPaths(outer, inner int) string {
	r.t.Helper()
	blob := r.WriteObject("blob", []byte("x\n"))
	var b strings.Builder
	for i := range inner {
		fmt.Fprintf(&b, "100644 f%07d\x00%s", i, RawHash(blob))
	}
	dir := r.WriteObject("tree", []byte(b.String()))
	b.Reset()
	for i := range outer {
		fmt.Fprintf(&b, "40000 d%07d\x00%s", i, RawHash(dir))
	}
	b.WriteString("100644 fleet.yaml\x00" + RawHash(blob))
	return r.CommitTree(r.WriteObject("tree", []byte(b.String())))
}

// CommitDeep commits a chain of depth directories with a file at the end.
func (r *Repo) CommitDeep(depth int) string {
	r.t.Helper()
	tree := r.WriteObject("tree", []byte("100644 f\x00"+RawHash(r.WriteObject("blob", []byte("x\n")))))
	for range depth {
		tree = r.WriteObject("tree", []byte("40000 d\x00"+RawHash(tree)))
	}
	return r.CommitTree(tree)
}

// Import feeds a git fast-import stream into the bare repository: the quick
// way to make a large history.
func (r *Repo) Import(stream io.Reader) {
	r.t.Helper()
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.Path
	cmd.Env = gitEnv(filepath.Dir(r.Path))
	cmd.Stdin = stream
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("gitserver: git fast-import: %v: %s", err, out)
	}
}

// SSHKey is a key pair made with ssh-keygen.
type SSHKey struct {
	// PrivateFile is the private key's path (no passphrase).
	PrivateFile string
	// Public is the public key in authorized_keys form ("ssh-ed25519 AAAA...").
	Public string
}

// AllowedSigner returns the key's line of an allowed_signers file for
// principal, limited to git's namespace.
func (k SSHKey) AllowedSigner(principal string) string {
	return fmt.Sprintf("%s namespaces=\"git\" %s\n", principal, k.Public)
}

// NewSSHKey makes an ed25519 key pair in a directory of t.
func NewSSHKey(t testing.TB) SSHKey {
	t.Helper()
	bin := mustLookPath(t, "ssh-keygen")
	path := filepath.Join(t.TempDir(), "id_ed25519")
	cmd := exec.Command(bin, "-q", "-t", "ed25519", "-N", "", "-C", "outpost-test", "-f", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gitserver: ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	f := strings.Fields(string(pub))
	return SSHKey{PrivateFile: path, Public: f[0] + " " + f[1]}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
