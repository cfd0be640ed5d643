package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/oci"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

func TestPublishPushesSignedArtifact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := registry.Start(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "env")
	key := filepath.Join(dir, "key")
	sh := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	sh("git", "init", "-q", "-b", "main", repo)
	if err := os.MkdirAll(filepath.Join(repo, "hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "hosts", "motd"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh("git", "-C", repo, "add", ".")
	sh("git", "-C", repo, "commit", "-q", "-m", "first")
	commit := sh("git", "-C", repo, "rev-parse", "HEAD")
	committed, err := time.Parse(time.RFC3339, sh("git", "-C", repo, "log", "-1", "--format=%cI"))
	if err != nil {
		t.Fatal(err)
	}
	sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)

	target := "oci://" + srv.Ref("fleet/env", "prod")
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"publish", "--repo", repo, "--sign-key", key, target}, &stdout, &stderr); code != 0 {
		t.Fatalf("publish exited %d: %s", code, stderr.String())
	}
	t.Logf("publish: %s", stdout.String())
	if !strings.Contains(stdout.String(), "commit "+commit) {
		t.Errorf("publish printed %q, want the commit %s", stdout.String(), commit)
	}

	signers, err := pull.ReadAllowedSigners(writeAllowedSigners(t, key+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := oci.ParseRef(target)
	if err != nil {
		t.Fatal(err)
	}
	d, err := oci.Head(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "tree")
	f, err := oci.Fetch(ctx, ref, d, signers, out)
	if err != nil {
		t.Fatal(err)
	}
	// The commit's time, which allowed_signers' dates are checked against.
	if diff := cmp.Diff(oci.Fetched{Digest: d, Revision: commit, Branch: "main", Created: committed.UTC()}, f); diff != "" {
		t.Errorf("artifact (-want +got):\n%s", diff)
	}
	got, err := os.ReadFile(filepath.Join(out, "hosts", "motd"))
	if err != nil || string(got) != "hello\n" {
		t.Errorf("hosts/motd = %q, %v; want hello", got, err)
	}
}

func writeAllowedSigners(t *testing.T, pub string) string {
	t.Helper()
	b, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "allowed_signers")
	if err := os.WriteFile(p, []byte("ci@example "+string(b)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyFromOCIArtifact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := registry.Start(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "env")
	sh := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	sh("cp", "-r", "../../examples/basic", repo)
	sh("git", "init", "-q", "-b", "main", repo)
	sh("git", "-C", repo, "add", ".")
	sh("git", "-C", repo, "commit", "-q", "-m", "basic")
	key := filepath.Join(dir, "key")
	sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	cfg := filepath.Join(dir, "agent.yaml")
	allowed := writeAllowedSigners(t, key+".pub")
	if err := os.WriteFile(cfg, []byte("host:\n  name: web-1\n  labels: {role: web}\nsource:\n  verify:\n    allowed_signers: "+allowed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := "oci://" + srv.Ref("fleet/env", "prod")
	root, state := filepath.Join(dir, "root"), filepath.Join(dir, "state")
	apply := func() (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"apply", "--config", cfg, "--source", target, "--root", root, "--state-dir", state}, &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}

	var out bytes.Buffer
	if code := run(ctx, []string{"publish", "--repo", repo, "--sign-key", key, target}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	if code, out := apply(); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, out)
	}
	motd, err := os.ReadFile(filepath.Join(root, "etc", "motd"))
	if err != nil {
		t.Fatalf("apply from the artifact wrote no /etc/motd: %v", err)
	}

	// An unsigned artifact under the tag changes nothing.
	if err := os.WriteFile(filepath.Join(repo, "common", "motd.tmpl"), []byte("owned\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh("git", "-C", repo, "commit", "-q", "-am", "evil")
	out.Reset()
	if code := run(ctx, []string{"publish", "--repo", repo, target}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	code, msg := apply()
	if code == 0 || !strings.Contains(msg, "not signed") {
		t.Errorf("apply of an unsigned artifact exited %d, want a failure saying it is not signed:\n%s", code, msg)
	}
	after, err := os.ReadFile(filepath.Join(root, "etc", "motd"))
	if err != nil || !bytes.Equal(after, motd) {
		t.Errorf("/etc/motd changed after an unsigned artifact: %q, %v", after, err)
	}
}

func TestApplyOCIRegistryDownEnforcesLastGood(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, stop, err := registry.Launch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	dir := t.TempDir()
	repo := filepath.Join(dir, "env")
	for _, args := range [][]string{
		{"cp", "-r", "../../examples/basic", repo},
		{"git", "init", "-q", "-b", "main", repo},
		{"git", "-C", repo, "add", "."},
		{"git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "basic"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("host:\n  name: web-1\n  labels: {role: web}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := "oci://" + srv.Ref("fleet/env", "prod")
	root, state := filepath.Join(dir, "root"), filepath.Join(dir, "state")
	var out bytes.Buffer
	if code := run(ctx, []string{"publish", "--repo", repo, target}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	apply := func() (int, string) {
		var b bytes.Buffer
		code := run(ctx, []string{"apply", "--config", cfg, "--source", target, "--root", root, "--state-dir", state}, &b, &b)
		return code, b.String()
	}
	if code, msg := apply(); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, msg)
	}
	motd := filepath.Join(root, "etc", "motd")
	want, err := os.ReadFile(motd)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if err := os.WriteFile(motd, []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, msg := apply()
	if code != 0 || !strings.Contains(msg, "offline: converging the last good revision") {
		t.Errorf("apply with the registry down exited %d, want 0 and the last good revision:\n%s", code, msg)
	}
	// The commit the artifact was packed from is known offline too.
	head, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if commit := strings.TrimSpace(string(head)); !strings.Contains(msg, "at "+commit[:12]+" (sha256:") {
		t.Errorf("apply with the registry down does not show the commit %s with the digest:\n%s", commit, msg)
	}
	if got, err := os.ReadFile(motd); err != nil || !bytes.Equal(got, want) {
		t.Errorf("/etc/motd with the registry down = %q, %v; want the last good %q", got, err, want)
	}
}

func TestApplyOCIThroughPullThroughCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	upstream := registry.Start(t)
	cache := registry.StartProxy(t, upstream)
	dir := t.TempDir()
	repo := filepath.Join(dir, "env")
	for _, args := range [][]string{
		{"cp", "-r", "../../examples/basic", repo},
		{"git", "init", "-q", "-b", "main", repo},
		{"git", "-C", repo, "add", "."},
		{"git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "basic"},
		{"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "key")},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	cfg := filepath.Join(dir, "agent.yaml")
	allowed := writeAllowedSigners(t, filepath.Join(dir, "key.pub"))
	if err := os.WriteFile(cfg, []byte("host:\n  name: web-1\n  labels: {role: web}\nsource:\n  verify:\n    allowed_signers: "+allowed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(ctx, []string{"publish", "--repo", repo, "--sign-key", filepath.Join(dir, "key"), "oci://" + upstream.Ref("fleet/env", "prod")}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	root := filepath.Join(dir, "root")
	out.Reset()
	code := run(ctx, []string{"apply", "--config", cfg, "--source", "oci://" + cache.Ref("fleet/env", "prod"), "--root", root, "--state-dir", filepath.Join(dir, "state")}, &out, &out)
	if code != 0 {
		t.Fatalf("apply through the cache exited %d:\n%s", code, out.String())
	}
	if _, err := os.Stat(filepath.Join(root, "etc", "motd")); err != nil {
		t.Errorf("apply through the cache wrote no /etc/motd: %v", err)
	}
}

// TestApplyOCIWithSourceAuth applies from a registry that demands basic
// auth (htpasswd), with the credentials of source.auth: a user name and a
// password file. outpost publish logs in with the Docker config.json. A
// wrong password is refused, and nothing is applied.
func TestApplyOCIWithSourceAuth(t *testing.T) {
	ctx := context.Background()
	srv := registry.StartAuth(t, "ci", "s3cret")
	dir := t.TempDir()
	repo := filepath.Join(dir, "env")
	sh := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	sh("cp", "-r", "../../examples/basic", repo)
	sh("git", "init", "-q", "-b", "main", repo)
	sh("git", "-C", repo, "add", ".")
	sh("git", "-C", repo, "commit", "-q", "-m", "basic")
	docker := t.TempDir()
	login := `{"auths":{"` + srv.Host() + `":{"auth":"Y2k6czNjcmV0"}}}` // ci:s3cret
	if err := os.WriteFile(filepath.Join(docker, "config.json"), []byte(login), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", docker)
	target := "oci://" + srv.Ref("fleet/env", "prod")
	var out bytes.Buffer
	if code := run(ctx, []string{"publish", "--repo", repo, target}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	// The host has no Docker login: source.auth alone.
	t.Setenv("DOCKER_CONFIG", t.TempDir())

	for _, tt := range []struct {
		name, password string
		ok             bool
	}{
		{"wrong password", "wrong\n", false},
		{"password file", "s3cret\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pw := filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(pw, []byte(tt.password), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(t.TempDir(), "agent.yaml")
			body := "host:\n  name: web-1\n  labels: {role: web}\nsource:\n  auth:\n    username: ci\n    password_file: " + pw + "\n"
			if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			root, state := filepath.Join(t.TempDir(), "root"), filepath.Join(t.TempDir(), "state")
			var stdout bytes.Buffer
			code := run(ctx, []string{"apply", "--config", cfg, "--source", target, "--root", root, "--state-dir", state}, &stdout, &stdout)
			_, err := os.Stat(filepath.Join(root, "etc", "motd"))
			if tt.ok && (code != 0 || err != nil) {
				t.Fatalf("apply exited %d, /etc/motd: %v:\n%s", code, err, stdout.String())
			}
			if !tt.ok && (code == 0 || err == nil && !os.IsNotExist(err)) {
				t.Fatalf("apply with a wrong password exited %d, /etc/motd: %v, want a failure and nothing applied:\n%s", code, err, stdout.String())
			}
			if strings.Contains(stdout.String(), "s3cret") {
				t.Errorf("the output shows the password:\n%s", stdout.String())
			}
			t.Logf("apply exited %d:\n%s", code, stdout.String())
		})
	}
}
