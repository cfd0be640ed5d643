package pull_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

func newEntity(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@outpost.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// keyring writes the public keys of entities to a file, armored or not.
func keyring(t *testing.T, armored bool, entities ...*openpgp.Entity) string {
	t.Helper()
	var buf bytes.Buffer
	w := &buf
	var aw interface{ Close() error }
	if armored {
		a, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
		if err != nil {
			t.Fatal(err)
		}
		aw = a
		for _, e := range entities {
			if err := e.Serialize(a); err != nil {
				t.Fatal(err)
			}
		}
		if err := aw.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		for _, e := range entities {
			if err := e.Serialize(w); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := filepath.Join(t.TempDir(), "keyring")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tamper stores a copy of commit whose message was changed but whose
// signature was kept, and moves main to it.
func tamper(t *testing.T, repo *gitserver.Repo, commit string) string {
	t.Helper()
	raw := string(repo.RawCommit(commit))
	i := strings.LastIndex(raw, "\n\n")
	forged := repo.WriteRawCommit([]byte(raw[:i] + "\n\ntampered message\n"))
	repo.ForcePush("main", forged)
	return forged
}

// TestVerify signs commits with SSH keys (ssh-keygen through git) and
// OpenPGP keys (go-crypto through go-git) and checks which are trusted.
func TestVerify(t *testing.T) {
	t.Parallel()
	trusted := gitserver.NewSSHKey(t)
	stranger := gitserver.NewSSHKey(t)
	signers := secretFile(t, "allowed_signers", "# the deploy team\n"+trusted.AllowedSigner("test@outpost.invalid"))
	fileOnly := secretFile(t, "allowed_signers", `test@outpost.invalid namespaces="file" `+trusted.Public+"\n")
	expired := secretFile(t, "allowed_signers", `test@outpost.invalid valid-before="20000101" `+trusted.Public+"\n")
	pgpTrusted := newEntity(t, "deploy")
	pgpStranger := newEntity(t, "stranger")
	armored := keyring(t, true, pgpTrusted)
	binary := keyring(t, false, pgpTrusted)

	tests := []struct {
		name   string
		verify pull.Verify
		commit func(repo *gitserver.Repo) string
		ok     bool
		reason string // part of the error
	}{
		{"ssh trusted", pull.Verify{AllowedSigners: signers}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, SSHKey: trusted.PrivateFile})
		}, true, ""},
		{"ssh unsigned", pull.Verify{AllowedSigners: signers}, func(repo *gitserver.Repo) string {
			return repo.Commit(gitserver.Files{"a": "1"}, "unsigned")
		}, false, "unsigned"},
		{"ssh untrusted key", pull.Verify{AllowedSigners: signers}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, SSHKey: stranger.PrivateFile})
		}, false, "not in allowed_signers"},
		{"ssh tampered", pull.Verify{AllowedSigners: signers}, func(repo *gitserver.Repo) string {
			return tamper(t, repo, repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, SSHKey: trusted.PrivateFile}))
		}, false, "bad SSH signature"},
		{"ssh wrong namespace", pull.Verify{AllowedSigners: fileOnly}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, SSHKey: trusted.PrivateFile})
		}, false, "namespace"},
		{"ssh key expired", pull.Verify{AllowedSigners: expired}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, SSHKey: trusted.PrivateFile})
		}, false, "not valid"},
		{"ssh signature, only a keyring", pull.Verify{OpenPGPKeyring: armored}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, SSHKey: trusted.PrivateFile})
		}, false, "no allowed_signers"},
		{"openpgp trusted", pull.Verify{OpenPGPKeyring: armored}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, OpenPGP: pgpTrusted})
		}, true, ""},
		{"openpgp trusted, binary keyring", pull.Verify{OpenPGPKeyring: binary}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, OpenPGP: pgpTrusted})
		}, true, ""},
		{"openpgp unsigned", pull.Verify{OpenPGPKeyring: armored}, func(repo *gitserver.Repo) string {
			return repo.Commit(gitserver.Files{"a": "1"}, "unsigned")
		}, false, "unsigned"},
		{"openpgp untrusted key", pull.Verify{OpenPGPKeyring: armored}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, OpenPGP: pgpStranger})
		}, false, "not in the keyring"},
		{"openpgp tampered", pull.Verify{OpenPGPKeyring: armored}, func(repo *gitserver.Repo) string {
			return tamper(t, repo, repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, OpenPGP: pgpTrusted}))
		}, false, "bad OpenPGP signature"},
		{"openpgp signature, only allowed_signers", pull.Verify{AllowedSigners: signers}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, OpenPGP: pgpTrusted})
		}, false, "no OpenPGP keyring"},
		{"both, ssh signed", pull.Verify{AllowedSigners: signers, OpenPGPKeyring: armored}, func(repo *gitserver.Repo) string {
			return repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "1"}, SSHKey: trusted.PrivateFile})
		}, true, ""},
		{"nothing to verify against", pull.Verify{}, func(repo *gitserver.Repo) string {
			return repo.Commit(gitserver.Files{"a": "1"}, "unsigned")
		}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, cfg := httpSource(t)
			cfg.Verify = tt.verify
			commit := tt.commit(repo)
			r := open(t, cfg)
			if got := poll(t, r); got.Commit != commit {
				t.Fatalf("Poll = %+v, want %s", got, commit)
			}
			err := r.Verify(commit)
			if strings.HasPrefix(tt.name, "ssh") && tt.verify.OpenPGPKeyring == "" {
				// git itself, through ssh-keygen -Y verify, must agree.
				_, gitErr := gitOutput(repo.Path, "-c", "gpg.ssh.allowedSignersFile="+tt.verify.AllowedSigners, "verify-commit", commit)
				if (gitErr == nil) != tt.ok {
					t.Errorf("git verify-commit %s = %v, want ok=%v as Verify", commit, gitErr, tt.ok)
				}
			}
			if tt.ok {
				if err != nil {
					t.Errorf("Verify(%s) = %v, want nil", commit, err)
				}
				return
			}
			var ve *pull.VerifyError
			if !errors.Is(err, pull.ErrUnverified) || !errors.As(err, &ve) || ve.Commit != commit {
				t.Fatalf("Verify(%s) = %v, want a VerifyError for the commit", commit, err)
			}
			if !strings.Contains(err.Error(), tt.reason) || !strings.Contains(err.Error(), commit) {
				t.Errorf("Verify(%s) = %q, want it to name the commit and say %q", commit, err, tt.reason)
			}
		})
	}
}

// TestResolveUnverified never chooses a tip that is not trusted.
func TestResolveUnverified(t *testing.T) {
	t.Parallel()
	key := gitserver.NewSSHKey(t)
	repo, cfg := httpSource(t)
	cfg.Verify.AllowedSigners = secretFile(t, "allowed_signers", key.AllowedSigner("test@outpost.invalid"))
	ctx := context.Background()
	bad := repo.Commit(gitserver.Files{"a": "unsigned"}, "unsigned")
	r := open(t, cfg)
	if c, err := r.Resolve(ctx, "", quick, 1); !errors.Is(err, pull.ErrNoGoodCommit) || !errors.Is(err, pull.ErrUnverified) {
		t.Errorf("Resolve of an unsigned tip with no last good = %+v, %v; want ErrNoGoodCommit and ErrUnverified", c, err)
	}
	good := repo.CommitWith(gitserver.CommitOptions{Files: gitserver.Files{"a": "signed"}, SSHKey: key.PrivateFile})
	c, err := r.Resolve(ctx, "", quick, 1)
	if err != nil || c.Commit != good || c.Fallback != nil {
		t.Fatalf("Resolve of a signed tip = %+v, %v; want %s", c, err, good)
	}
	bad = repo.Commit(gitserver.Files{"a": "unsigned again"}, "unsigned")
	c, err = r.Resolve(ctx, good, quick, 1)
	if err != nil || c.Commit != good || c.Tip != bad || c.Offline || !errors.Is(c.Fallback, pull.ErrUnverified) {
		t.Errorf("Resolve of an unsigned tip = %+v, %v; want the last good %s and ErrUnverified", c, err, good)
	}
}

func gitOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
