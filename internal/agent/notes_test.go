package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/pull"
)

// TestNotesPullConfig checks that the registry credentials of an oci://
// source never reach the Git server of status.remote, while a Git source
// reaches its notes remote with its own.
func TestNotesPullConfig(t *testing.T) {
	auth := AuthConfig{SSHKeyFile: "/k", KnownHostsFile: "/kh", Username: "ci", PasswordFile: "/pw", TokenFile: "/tok", CAFile: "/ca"}
	tests := []struct {
		name, source string
		want         pull.Auth
	}{
		{"git source", "https://git.example.com/env.git", pull.Auth{SSHKeyFile: "/k", KnownHostsFile: "/kh", Username: "ci", PasswordFile: "/pw", TokenFile: "/tok", CAFile: "/ca"}},
		{"oci source", "oci://registry.example.com/fleet/env:prod", pull.Auth{SSHKeyFile: "/k", KnownHostsFile: "/kh", CAFile: "/ca"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Source: SourceConfig{URL: tt.source, Auth: auth}}
			got := notesPullConfig(cfg, "https://git.example.com/status.git")
			if got.URL != "https://git.example.com/status.git" {
				t.Errorf("URL = %q, want the notes remote", got.URL)
			}
			if diff := cmp.Diff(tt.want, got.Auth); diff != "" {
				t.Errorf("Auth (-want +got):\n%s", diff)
			}
		})
	}
}
