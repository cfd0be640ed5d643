package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckCredentials(t *testing.T) {
	t.Parallel()
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

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// TestStatePermissions checks that what the agent records is root's only:
// the state directory 0700 (even one made beforehand with 0755), state.json
// and the lock 0600.
func TestStatePermissions(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	writeTree(t, repo, map[string]string{"a.yaml": "kind: file\npath: /etc/a\ncontent: a\n"})
	cfg := sandbox(t, repo)
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), cfg, nil, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, cfg.StateDir).Perm(); m != 0o700 {
		t.Errorf("state directory mode = %04o, want 0700", m)
	}
	entries, err := os.ReadDir(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(cfg.StateDir, e.Name())
		if m := mode(t, p).Perm(); !e.IsDir() && m != 0o600 {
			t.Errorf("%s mode = %04o, want 0600", e.Name(), m)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "state.json")); err != nil {
		t.Errorf("state.json: %v", err)
	}
}

// TestControlSocketPermissions checks the socket is 0600 in a directory made
// 0700, and that an existing shared directory (such as /tmp) keeps its mode.
func TestControlSocketPermissions(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run", "outpost")
	ln, err := listenControl(filepath.Join(dir, "outpost.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if m := mode(t, dir).Perm(); m != 0o700 {
		t.Errorf("socket directory mode = %04o, want 0700", m)
	}
	if m := mode(t, filepath.Join(dir, "outpost.sock")); m.Type()&os.ModeSocket == 0 || m.Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", m)
	}

	shared := t.TempDir()
	if err := os.Chmod(shared, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	ln2, err := listenControl(filepath.Join(shared, "x.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if m := mode(t, shared); m.Perm() != 0o777 || m&os.ModeSticky == 0 {
		t.Errorf("shared directory mode = %v after listening in it, want it left 1777", m)
	}
	if m := mode(t, filepath.Join(shared, "x.sock")).Perm(); m != 0o600 {
		t.Errorf("socket mode = %04o, want 0600", m)
	}
}
