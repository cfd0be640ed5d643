package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckCredentials(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret-"+name), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, -1); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	for _, tc := range []struct {
		name string
		cfg  func() *Config
		want []string // substrings of the error; none means no error
	}{
		{"no credentials", Default, nil},
		{"private key", func() *Config {
			c := Default()
			c.Source.Auth.SSHKeyFile = file("key-ok", 0o600, -1)
			return c
		}, nil},
		{"missing key left to the reader", func() *Config {
			c := Default()
			c.Source.Auth.SSHKeyFile = filepath.Join(dir, "absent")
			return c
		}, nil},
		{"key readable by others", func() *Config {
			c := Default()
			c.Source.Auth.SSHKeyFile = file("key-644", 0o644, -1)
			return c
		}, []string{"source.auth.ssh_key_file", "key-644 has mode 0644", "chmod 600"}},
		{"password readable by group", func() *Config {
			c := Default()
			c.Source.Auth.PasswordFile = file("pw-640", 0o640, -1)
			return c
		}, []string{"source.auth.password_file", "mode 0640"}},
		{"token writable by others", func() *Config {
			c := Default()
			c.Source.Auth.TokenFile = file("tok-602", 0o602, -1)
			return c
		}, []string{"source.auth.token_file", "mode 0602"}},
		{"token owned by nobody", func() *Config {
			c := Default()
			c.Source.Auth.TokenFile = file("tok-nobody", 0o600, 65534)
			return c
		}, []string{"owned by uid 65534, not root", "chown root:root"}},
		{"every file reported", func() *Config {
			c := Default()
			c.Source.Auth.SSHKeyFile = file("k2", 0o644, -1)
			c.Source.Auth.TokenFile = file("t2", 0o644, -1)
			return c
		}, []string{"k2 has mode", "t2 has mode"}},
		{"config with a password in a URL", func() *Config {
			c := Default()
			c.Source.URL = "https://u:pw@git.invalid/env.git"
			c.File = file("agent-644.yaml", 0o644, -1)
			return c
		}, []string{"configuration file (a URL in it holds a password)", "agent-644.yaml has mode 0644"}},
		{"config with a user but no password", func() *Config {
			c := Default()
			c.Source.URL = "https://u@git.invalid/env.git"
			c.File = file("agent-user.yaml", 0o644, -1)
			return c
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCredentials(tc.cfg())
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("CheckCredentials() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInsecure) {
				t.Fatalf("CheckCredentials() = %v, want ErrInsecure", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckCredentials() = %q, want it to hold %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret-") {
				t.Errorf("CheckCredentials() = %q shows a file's content", err)
			}
		})
	}
}
