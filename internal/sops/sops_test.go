package sops

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func identity(t *testing.T, name string) age.Identity {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil || len(ids) != 1 {
		t.Fatalf("identities of %s: %v", name, err)
	}
	return ids[0]
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDecryptMatchesSops decrypts files that the sops command encrypted,
// and compares with what sops decrypt printed for them.
func TestDecryptMatchesSops(t *testing.T) {
	host, other := identity(t, "host.key"), identity(t, "other.key")
	tests := []struct {
		file, want string
		format     Format
		ids        []age.Identity
		values     map[string]string
	}{
		{"app.sops.yaml", "app.yaml.want", YAML, []age.Identity{host}, map[string]string{"db.password": "s3cr3t-pl4nted-yaml", "db.port": "5432", "api_token": "tok-pl4nted-yaml", "public_unencrypted": "visible"}},
		{"app.sops.json", "app.json.want", JSON, []age.Identity{host}, map[string]string{"db.password": "s3cr3t-pl4nted-json", "flag": "false"}},
		{"app.sops.env", "app.env.want", Dotenv, []age.Identity{host}, map[string]string{"DB_PASSWORD": "s3cr3t-pl4nted-env", "EMPTY": ""}},
		{"cert.bin.sops", "cert.bin.want", Binary, []age.Identity{host}, nil},
		{"two.sops.yaml", "two.yaml.want", YAML, []age.Identity{other}, map[string]string{"db.password": "s3cr3t-pl4nted-yaml"}},
		{"two.sops.yaml", "two.yaml.want", YAML, []age.Identity{host}, nil},
		{"regex.sops.yaml", "regex.yaml.want", YAML, []age.Identity{host}, map[string]string{"db.password": "s3cr3t-pl4nted-yaml", "db.user": "shop"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if got := FormatOf(tt.file); got != tt.format && tt.format != Binary {
				t.Errorf("FormatOf(%s) = %s, want %s", tt.file, got, tt.format)
			}
			f, err := Parse(read(t, tt.file), tt.format)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			p, err := f.Decrypt(tt.ids)
			if err != nil {
				t.Fatalf("Decrypt = %v", err)
			}
			want := read(t, tt.want)
			if tt.format == JSON {
				var a, b any
				if json.Unmarshal(p.Data, &a) != nil || json.Unmarshal(want, &b) != nil || !jsonEqual(a, b) {
					t.Errorf("Decrypt = %s\nwant %s", p.Data, want)
				}
			} else if !bytes.Equal(p.Data, want) {
				t.Errorf("Decrypt =\n%q\nwant (sops decrypt)\n%q", p.Data, want)
			}
			for k, v := range tt.values {
				if got, ok := p.Value(k); !ok || got != v {
					t.Errorf("Value(%s) = %q, %v; want %q", k, got, ok, v)
				}
			}
		})
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestRefused changes encrypted files the ways an attacker or a bad disk
// would: each is refused, and no error quotes a planted plaintext.
func TestRefused(t *testing.T) {
	host := identity(t, "host.key")
	app := string(read(t, "app.sops.yaml"))
	env := string(read(t, "app.sops.env"))
	// A value moved to another key still decrypts with AES-GCM only if its
	// path matched: swap the encrypted user and password.
	user := lineOf(app, "    user: ")
	pass := lineOf(app, "    password: ")
	swapped := strings.Replace(strings.Replace(app, user, "@@", 1), pass, strings.Replace(user, "user", "password", 1), 1)
	swapped = strings.Replace(swapped, "@@", strings.Replace(pass, "password", "user", 1), 1)
	tests := []struct {
		name   string
		data   string
		format Format
		want   error
	}{
		{"a flipped bit in a value", flip(app, lineOf(app, "api_token: ")), YAML, ErrTampered},
		{"values swapped between keys", swapped, YAML, ErrTampered},
		{"a plain value changed", strings.Replace(app, "public_unencrypted: visible", "public_unencrypted: hidden", 1), YAML, ErrTampered},
		{"a value removed", strings.Replace(app, lineOf(app, "api_token: ")+"\n", "", 1), YAML, ErrTampered},
		{"a wrong MAC", strings.Replace(app, lineOf(app, "    mac: "), "    mac: "+macOf(t, "regex.sops.yaml"), 1), YAML, ErrTampered},
		{"another lastmodified", strings.Replace(app, "lastmodified: \"", "lastmodified: \"1", 1), YAML, ErrTampered},
		{"truncated", app[:len(app)/2], YAML, ErrNotSOPS},
		{"no sops section", "a: 1\n", YAML, ErrNotSOPS},
		{"a dotenv line changed", strings.Replace(env, "EMPTY=", "EMPTY=x", 1), Dotenv, ErrTampered},
		{"encrypted to another host", string(read(t, "other.sops.yaml")), YAML, ErrNoKey},
		{"key groups", strings.Replace(app, "sops:\n", "sops:\n    key_groups: []\n", 1), YAML, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.data), tt.format)
			if err == nil {
				_, err = f.Decrypt([]age.Identity{host})
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			for _, secret := range []string{"pl4nted", "shop"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes a value", err)
				}
			}
		})
	}
	f, err := Parse(read(t, "other.sops.yaml"), YAML)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Decrypt([]age.Identity{host})
	if want := "age1fj94tm27dqlyzn92re53vncfpvv75uxl8t7ctchskqp5zpge9egsdv32el"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Decrypt by the wrong host = %v, want it to name the recipient %s", err, want)
	}
}

func lineOf(doc, prefix string) string {
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return prefix
}

// flip changes one character of the data in line.
func flip(doc, line string) string {
	i := strings.Index(line, "data:") + len("data:")
	c := byte('A')
	if line[i] == 'A' {
		c = 'B'
	}
	return strings.Replace(doc, line, line[:i]+string(c)+line[i+1:], 1)
}

// macOf is the MAC line's value of another file: a valid MAC for other
// values.
func macOf(t *testing.T, name string) string {
	return strings.TrimPrefix(lineOf(string(read(t, name)), "    mac: "), "    mac: ")
}
