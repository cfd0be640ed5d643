package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/oci"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// ociNoteEnv is an environment repository of one file resource.
func ociNoteEnv(content string) gitserver.Files {
	return gitserver.Files{
		"fleet.yaml": "targets:\n  - path: .\n",
		"motd.yaml":  fmt.Sprintf("kind: file\npath: /etc/motd\ncontent: %q\n", content),
	}
}

// readNote reads host's note on commit from the bare repository at dir, or
// returns an error when there is none.
func readNote(dir, host, commit string) (status.Note, error) {
	out, err := exec.Command("git", "--git-dir", dir, "notes", "--ref", status.RefPrefix+host, "show", commit).CombinedOutput()
	if err != nil {
		return status.Note{}, fmt.Errorf("git notes show %s: %w: %s", commit, err, out)
	}
	return status.Parse(out)
}

// TestOCINotesGoToStatusRemote publishes commits of a served repository as
// OCI artifacts, applies them with apply and with the daemon, and reads
// each status note back from the repository's notes, on the commit the
// artifact was packed from, with the artifact's digest beside it.
func TestOCINotesGoToStatusRemote(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env, srv, target := ociNotesServers(t)
	dir := t.TempDir()
	sandbox, state := filepath.Join(dir, "root"), filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf("host: {name: web-1}\nsource:\n  url: %s\n  interval: 1s\nstatus:\n  push: true\n  remote: %s\nstate_dir: %s\n",
		target, srv.URL("env"), state), 0o644)
	publish := func() string {
		t.Helper()
		var out bytes.Buffer
		if code := run(ctx, []string{"publish", "--repo", env.Work, target}, &out, &out); code != 0 {
			t.Fatalf("publish exited %d: %s", code, out.String())
		}
		ref, err := oci.ParseRef(target)
		if err != nil {
			t.Fatal(err)
		}
		d, err := oci.Head(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}

	first := env.Commit(ociNoteEnv("first\n"), "first")
	digest := publish()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"apply", "--json", "--config", cfg, "--root", sandbox}, &stdout, &stderr); code != 0 {
		t.Fatalf("apply exited %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	var rep struct{ Revision, Commit, Result string }
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("apply --json: %v\n%s", err, stdout.String())
	}
	if rep.Revision != digest || rep.Commit != first || rep.Result != "applied" {
		t.Errorf("apply --json revision %q, commit %q, result %q; want %s, %s, applied", rep.Revision, rep.Commit, rep.Result, digest, first)
	}
	n, err := readNote(env.Path, "web-1", first)
	if err != nil {
		t.Fatalf("no note on %s after apply: %v\n%s", first, err, stderr.String())
	}
	if n.Commit != first || n.Digest != digest || n.Result != status.Applied {
		t.Errorf("note after apply: commit %q, digest %q, result %q; want %s, %s, applied", n.Commit, n.Digest, n.Result, first, digest)
	}

	sock := filepath.Join(dir, "run", "outpost.sock")
	checkStatus := func(from, commit, digest string) {
		t.Helper()
		var so, se bytes.Buffer
		if code := run(ctx, []string{"status", "--json", "--config", cfg, "--socket", sock}, &so, &se); code != 0 {
			t.Fatalf("status exited %d: %s", code, se.String())
		}
		var s struct {
			Source, Commit, Digest string
			LastGood               string `json:"last_good"`
			LastGoodDigest         string `json:"last_good_digest"`
		}
		if err := json.Unmarshal(so.Bytes(), &s); err != nil {
			t.Fatalf("status --json: %v\n%s", err, so.String())
		}
		if s.Source != from || s.Commit != commit || s.Digest != digest || s.LastGood != commit || s.LastGoodDigest != digest {
			t.Errorf("status --json from the %s = %s, want commit and last good %s, digest %s", s.Source, so.String(), commit, digest)
		}
		so.Reset()
		if code := run(ctx, []string{"status", "--config", cfg, "--socket", sock}, &so, &se); code != 0 {
			t.Fatalf("status exited %d: %s", code, se.String())
		}
		if want := fmt.Sprintf("revision:  %s (%s) applied", commit, digest); from == "daemon" && !strings.Contains(so.String(), want) {
			t.Errorf("status printed\n%s\nwant %q", so.String(), want)
		}
		if want := fmt.Sprintf("last good: %s (%s)\n", commit, digest); !strings.Contains(so.String(), want) {
			t.Errorf("status printed\n%s\nwant %q", so.String(), want)
		}
	}
	checkStatus("state", first, digest)

	// The text report shows the commit with the digest beside it.
	stdout.Reset()
	stderr.Reset()
	if code := run(ctx, []string{"diff", "--config", cfg, "--root", sandbox}, &stdout, &stderr); code != 0 {
		t.Fatalf("diff exited %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	want := fmt.Sprintf("at %s (%s)", first[:12], digest[:len("sha256:")+12])
	if !strings.Contains(stdout.String(), want) {
		t.Errorf("diff printed %q, want %q", stdout.String(), want)
	}

	// A tree cached without its origin (unpacked by an older version, or
	// a crash between the two) learns it again at the next poll.
	origin := filepath.Join(state, "oci", strings.TrimPrefix(digest, "sha256:")+".json")
	if err := os.Remove(origin); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run(ctx, []string{"apply", "--json", "--config", cfg, "--root", sandbox}, &stdout, &stderr); code != 0 {
		t.Fatalf("apply exited %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.Commit != first {
		t.Errorf("apply --json without the cached origin: commit %q, %v; want %s", rep.Commit, err, first)
	}
	if _, err := os.Stat(origin); err != nil {
		t.Errorf("the origin was not kept again: %v", err)
	}

	// The daemon applies a second commit and pushes its note.
	second := env.Commit(ociNoteEnv("second\n"), "second")
	digest2 := publish()
	dctx, cancel := context.WithCancel(ctx)
	var dout, derr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(dctx, []string{"run", "-v", "--config", cfg, "--root", sandbox, "--socket", sock}, &dout, &derr)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(90 * time.Second)
	for {
		n, err = readNote(env.Path, "web-1", second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon pushed no note on %s in time: %v\nlogs:\n%s", second, err, derr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n.Commit != second || n.Digest != digest2 || n.Result != status.Applied {
		t.Errorf("daemon's note: commit %q, digest %q, result %q; want %s, %s, applied", n.Commit, n.Digest, n.Result, second, digest2)
	}
	if got, err := os.ReadFile(filepath.Join(sandbox, "etc", "motd")); err != nil || string(got) != "second\n" {
		t.Errorf("/etc/motd = %q, %v; want the second commit's", got, err)
	}
	checkStatus("daemon", second, digest2)
	stop()
	if logs := dout.String() + derr.String(); !strings.Contains(logs, "revision="+digest2) || !strings.Contains(logs, "commit="+second) {
		t.Errorf("the daemon's logs do not name both the digest %s and the commit %s:\n%s", digest2, second, logs)
	}
}

// TestOCIArtifactWithoutCommitAppliesWithoutNote applies an artifact that
// names no commit (published by something other than outpost publish): it
// is applied, and its note is skipped with one warning.
func TestOCIArtifactWithoutCommitAppliesWithoutNote(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env, srv, target := ociNotesServers(t)
	env.Commit(ociNoteEnv("unused\n"), "first")
	tree := t.TempDir()
	for name, content := range ociNoteEnv("anonymous\n") {
		writeFile(t, filepath.Join(tree, name), content, 0o644)
	}
	var layer bytes.Buffer
	if err := oci.Pack(&layer, os.DirFS(tree)); err != nil {
		t.Fatal(err)
	}
	ref, err := oci.ParseRef(target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oci.Publish(ctx, ref, oci.Artifact{Layer: layer.Bytes()}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sandbox := filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf("host: {name: web-1}\nsource:\n  url: %s\nstatus:\n  push: true\n  remote: %s\nstate_dir: %s\n",
		target, srv.URL("env"), filepath.Join(dir, "state")), 0o644)
	var out bytes.Buffer
	if code := run(ctx, []string{"apply", "--config", cfg, "--root", sandbox}, &out, &out); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, out.String())
	}
	if got, err := os.ReadFile(filepath.Join(sandbox, "etc", "motd")); err != nil || string(got) != "anonymous\n" {
		t.Errorf("/etc/motd = %q, %v; want the artifact's", got, err)
	}
	if c := strings.Count(out.String(), "status note not written"); c != 1 {
		t.Errorf("apply warned %d times about the note, want once:\n%s", c, out.String())
	}
	if !strings.Contains(out.String(), oci.AnnotationRevision) {
		t.Errorf("the warning does not name the annotation %s:\n%s", oci.AnnotationRevision, out.String())
	}
	refs, err := exec.Command("git", "--git-dir", env.Path, "for-each-ref", "refs/notes/").CombinedOutput()
	if err != nil || len(refs) != 0 {
		t.Errorf("notes on the status remote: %q, %v; want none", refs, err)
	}
}

// TestOCIUnverifiedNoteOnCommit publishes an unsigned artifact for a host
// that wants signed ones: nothing is applied, and the unverified note goes
// on the commit the artifact names, with its digest.
func TestOCIUnverifiedNoteOnCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env, srv, target := ociNotesServers(t)
	dir := t.TempDir()
	key := gitserver.NewSSHKey(t)
	allowed := filepath.Join(dir, "allowed_signers")
	writeFile(t, allowed, "ci@example "+key.Public+"\n", 0o644)
	cfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf("host: {name: web-1}\nsource:\n  url: %s\n  verify: {allowed_signers: %s}\nstatus:\n  push: true\n  remote: %s\nstate_dir: %s\n",
		target, allowed, srv.URL("env"), filepath.Join(dir, "state")), 0o644)
	var out bytes.Buffer
	sandbox := filepath.Join(dir, "root")
	env.Commit(ociNoteEnv("signed\n"), "signed")
	if code := run(ctx, []string{"publish", "--repo", env.Work, "--sign-key", key.PrivateFile, target}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	if code := run(ctx, []string{"apply", "--config", cfg, "--root", sandbox}, &out, &out); code != 0 {
		t.Fatalf("apply of a signed artifact exited %d:\n%s", code, out.String())
	}
	commit := env.Commit(ociNoteEnv("unsigned\n"), "unsigned")
	if code := run(ctx, []string{"publish", "--repo", env.Work, target}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"apply", "--config", cfg, "--root", sandbox}, &out, &out); code == 0 {
		t.Errorf("apply of an unsigned artifact exited 0, want a failure:\n%s", out.String())
	}
	if got, err := os.ReadFile(filepath.Join(sandbox, "etc", "motd")); err != nil || string(got) != "signed\n" {
		t.Errorf("/etc/motd after an unsigned artifact = %q, %v; want the signed one's", got, err)
	}
	n, err := readNote(env.Path, "web-1", commit)
	if err != nil {
		t.Fatalf("no note on %s: %v\n%s", commit, err, out.String())
	}
	if n.Result != status.Unverified || !strings.HasPrefix(n.Digest, "sha256:") {
		t.Errorf("note: result %q, digest %q; want unverified and the artifact's digest", n.Result, n.Digest)
	}
}

// ociNotesServers starts what a host on an OCI source with notes talks to:
// the environment repository over git://, where notes go, and a registry,
// with the artifact's oci:// reference in it.
func ociNotesServers(t *testing.T) (*gitserver.Repo, *gitserver.GitDaemon, string) {
	t.Helper()
	root := gitserver.NewRoot(t)
	env := root.Create("env")
	srv := root.ServeGit()
	reg := registry.Start(t)
	return env, srv, "oci://" + reg.Ref("fleet/env", "prod")
}
