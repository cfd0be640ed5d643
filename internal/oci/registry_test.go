package oci

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/ssh"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func packed(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Pack(&buf, os.DirFS(writeTree(t, files))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPublishFetchThroughRegistry(t *testing.T) {
	ctx := context.Background()
	srv := registry.Start(t)
	ref, err := ParseRef("oci://" + srv.Ref("fleet/env", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	key, other := newSigner(t), newSigner(t)
	signers := []pull.AllowedSigner{{Principals: []string{"ci"}, Key: key.PublicKey()}}
	files := map[string]string{"agent.yaml": "v: 1\n", "hosts/web/files/etc/motd": "hello\n"}
	good, err := Publish(ctx, ref, Artifact{Layer: packed(t, files), Revision: "abc123", Branch: "main", Source: "https://git.example/env"}, key)
	if err != nil {
		t.Fatal(err)
	}
	head, err := Head(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if head != good {
		t.Fatalf("Head = %s, Publish said %s", head, good)
	}

	t.Run("signed artifact unpacks", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "tree")
		f, err := Fetch(ctx, ref, good, signers, dir)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(Fetched{Digest: good, Revision: "abc123", Branch: "main", Source: "https://git.example/env"}, f); diff != "" {
			t.Errorf("Fetched (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(files, readTree(t, dir)); diff != "" {
			t.Errorf("tree (-want +got):\n%s", diff)
		}
	})

	t.Run("unsigned artifact refused", func(t *testing.T) {
		d, err := Publish(ctx, ref, Artifact{Layer: packed(t, map[string]string{"agent.yaml": "evil\n"}), Revision: "evil"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		assertRefused(t, ctx, ref, d, signers)
	})
	t.Run("artifact signed by another key refused", func(t *testing.T) {
		d, err := Publish(ctx, ref, Artifact{Layer: packed(t, map[string]string{"agent.yaml": "other\n"}), Revision: "other"}, other)
		if err != nil {
			t.Fatal(err)
		}
		assertRefused(t, ctx, ref, d, signers)
	})
	t.Run("tampered layer under an old signature refused", func(t *testing.T) {
		d, err := Publish(ctx, ref, Artifact{Layer: packed(t, map[string]string{"agent.yaml": "tampered\n"}), Revision: "abc123"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Copy the good digest's signature to the tampered digest's tag.
		oldSig, err := remote.Image(SignatureTag(ref, good))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(SignatureTag(ref, d), oldSig); err != nil {
			t.Fatal(err)
		}
		assertRefused(t, ctx, ref, d, signers)
	})
	t.Run("hostile layer refused", func(t *testing.T) {
		bad := layer(t, reg("../../escape", "x"))
		d, err := Publish(ctx, ref, Artifact{Layer: bad, Revision: "h"}, key)
		if err != nil {
			t.Fatal(err)
		}
		parent := t.TempDir()
		_, err = Fetch(ctx, ref, d, signers, filepath.Join(parent, "tree"))
		if !errors.Is(err, ErrHostile) {
			t.Fatalf("Fetch = %v, want ErrHostile", err)
		}
		if left, _ := os.ReadDir(parent); len(left) != 0 {
			t.Errorf("a refused layer left %v behind", left)
		}
	})
}

// assertRefused checks that Fetch refuses digest d as unverified and writes
// nothing.
func assertRefused(t *testing.T, ctx context.Context, ref name.Reference, d v1.Hash, signers []pull.AllowedSigner) {
	t.Helper()
	parent := t.TempDir()
	f, err := Fetch(ctx, ref, d, signers, filepath.Join(parent, "tree"))
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("Fetch = %v, want ErrUnverified", err)
	}
	// The refusal names what the manifest claims, to be reported on.
	if f.Digest != d {
		t.Errorf("refused Fetch returned digest %v, want %v", f.Digest, d)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("a refused artifact left %v behind", left)
	}
}

// TestSignerValidity checks allowed_signers' valid-after and valid-before
// against the time of the commit an artifact was packed from, as for a
// commit's signature; without that time, against now.
func TestSignerValidity(t *testing.T) {
	ctx := context.Background()
	srv := registry.Start(t)
	ref, err := ParseRef("oci://" + srv.Ref("fleet/valid", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	key := newSigner(t)
	made := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	withTime, err := Publish(ctx, ref, Artifact{Layer: packed(t, map[string]string{"a": "1\n"}), Revision: "c1", Created: made}, key)
	if err != nil {
		t.Fatal(err)
	}
	noTime, err := Publish(ctx, ref, Artifact{Layer: packed(t, map[string]string{"a": "2\n"}), Revision: "c2"}, key)
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	now := time.Now()
	tests := []struct {
		name          string
		after, before time.Time
		d             v1.Hash
		ok            bool
	}{
		{"no dates", time.Time{}, time.Time{}, withTime, true},
		{"valid around the commit", made.Add(-day), made.Add(day), withTime, true},
		{"valid only after the commit", made.Add(day), time.Time{}, withTime, false},
		{"expired before the commit", time.Time{}, made.Add(-day), withTime, false},
		{"no commit time: valid now", now.Add(-day), now.Add(day), noTime, true},
		{"no commit time: expired", time.Time{}, now.Add(-day), noTime, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signers := []pull.AllowedSigner{{Principals: []string{"ci"}, Key: key.PublicKey(), ValidAfter: tt.after, ValidBefore: tt.before}}
			if !tt.ok {
				assertRefused(t, ctx, ref, tt.d, signers)
				return
			}
			f, err := Fetch(ctx, ref, tt.d, signers, filepath.Join(t.TempDir(), "tree"))
			if err != nil {
				t.Fatalf("Fetch = %v, want the artifact", err)
			}
			if tt.d == withTime && !f.Created.Equal(made) {
				t.Errorf("Fetched.Created = %v, want %v", f.Created, made)
			}
		})
	}
}
