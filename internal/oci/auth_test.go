package oci

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// TestRegistryAuth reads an artifact from a docker-registry that demands
// basic auth (htpasswd) with the credential files of source.auth: a
// password file, a token file sent as the user's password, and files
// rotated between polls. Wrong or missing credentials are refused.
func TestRegistryAuth(t *testing.T) {
	ctx := context.Background()
	srv := registry.StartAuth(t, "ci", "s3cret")
	ref, err := ParseRef("oci://" + srv.Ref("fleet/env", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"agent.yaml": "v: 1\n"}
	d, err := Publish(ctx, ref, Artifact{Layer: packed(t, files), Revision: "c1"}, nil,
		remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"}))
	if err != nil {
		t.Fatalf("Publish with credentials = %v", err)
	}
	secret := func(content string) string {
		p := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		auth Auth
		ok   bool
	}{
		{"password file", Auth{Username: "ci", PasswordFile: secret("s3cret\n")}, true},
		{"token file as the user's password", Auth{Username: "ci", TokenFile: secret("s3cret")}, true},
		{"wrong password", Auth{Username: "ci", PasswordFile: secret("wrong\n")}, false},
		{"no credentials (an empty Docker config)", Auth{}, false},
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := tt.auth.Options()
			if err != nil {
				t.Fatalf("Options() = %v", err)
			}
			got, err := Head(ctx, ref, opts...)
			if !tt.ok {
				var terr *transport.Error
				if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
					t.Fatalf("Head = %v, %v, want 401 Unauthorized", got, err)
				}
				return
			}
			if err != nil || got != d {
				t.Fatalf("Head = %v, %v, want %s", got, err, d)
			}
			dir := filepath.Join(t.TempDir(), "tree")
			if _, err := Fetch(ctx, ref, d, nil, dir, opts...); err != nil {
				t.Fatalf("Fetch = %v", err)
			}
			if got := readTree(t, dir); got["agent.yaml"] != "v: 1\n" {
				t.Errorf("tree = %v, want agent.yaml", got)
			}
		})
	}

	t.Run("rotated password file", func(t *testing.T) {
		pw := secret("old\n")
		opts, err := Auth{Username: "ci", PasswordFile: pw}.Options()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Head(ctx, ref, opts...); err == nil {
			t.Fatalf("Head with the old password = nil error, want a refusal")
		}
		if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := Head(ctx, ref, opts...); err != nil || got != d {
			t.Fatalf("Head after the file was rotated = %v, %v, want %s", got, err, d)
		}
	})

	t.Run("settings that do not go together", func(t *testing.T) {
		for _, a := range []Auth{
			{PasswordFile: secret("x")},
			{Username: "ci", PasswordFile: secret("x"), TokenFile: secret("y")},
			{Username: "ci", TokenFile: secret("y"), CAFile: secret("not a certificate")},
		} {
			if _, err := a.Options(); !errors.Is(err, ErrAuthConfig) {
				t.Errorf("Auth%+v.Options() = %v, want ErrAuthConfig", a, err)
			}
		}
	})
}
