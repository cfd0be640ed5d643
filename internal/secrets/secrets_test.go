package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
)

func encrypt(t *testing.T, plain string, armored bool, to ...age.Recipient) []byte {
	t.Helper()
	var b bytes.Buffer
	var dst interface {
		Write([]byte) (int, error)
		Close() error
	} = nopCloser{&b}
	if armored {
		dst = armor.NewWriter(&b)
	}
	w, err := age.Encrypt(dst, to...)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(plain))
	if err := errors.Join(w.Close(), dst.Close()); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func TestEnsureKeyAndDecrypt(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "etc", "age.key")
	r1, err := EnsureKey(key)
	if err != nil || !strings.HasPrefix(r1, "age1") {
		t.Fatalf("EnsureKey = %q, %v", r1, err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if r2, err := EnsureKey(key); err != nil || r2 != r1 {
		t.Fatalf("EnsureKey again = %q, %v; want the same key %q", r2, err, r1)
	}
	keys, err := Load([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := age.ParseX25519Recipient(r1)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateX25519Identity()
	for _, armored := range []bool{false, true} {
		ct := encrypt(t, "pl4nted", armored, other.Recipient(), mine)
		got, err := keys.Decrypt("x.age", ct)
		if err != nil || string(got) != "pl4nted" {
			t.Errorf("Decrypt(armored %v) = %q, %v", armored, got, err)
		}
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"another host's", encrypt(t, "pl4nted", true, other.Recipient()), ErrNoKey},
		{"truncated", encrypt(t, strings.Repeat("pl4nted", 10000), false, mine)[:40000], nil},
		{"tampered", func() []byte {
			b := encrypt(t, strings.Repeat("pl4nted", 100), false, mine)
			b[len(b)-10] ^= 1
			return b
		}(), nil},
		{"not age", []byte("pl4nted"), nil},
	}
	for _, tt := range tests {
		_, err := keys.Decrypt("x.age", tt.data)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: Decrypt = %v, want an error (%v)", tt.name, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "pl4nted") {
			t.Errorf("%s: the error quotes the content: %v", tt.name, err)
		}
		if tt.want == ErrNoKey && !strings.Contains(err.Error(), r1) {
			t.Errorf("%s: the error %q does not name the host's recipient", tt.name, err)
		}
	}
}

func TestMACKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := MACKey(dir)
	if err != nil || len(k1) != 32 {
		t.Fatalf("MACKey = %x, %v", k1, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "mac.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mac.key mode %v, want 0600", fi.Mode())
	}
	k2, _ := MACKey(dir)
	if !bytes.Equal(k1, k2) {
		t.Error("MACKey made a new key when one exists")
	}
	if bytes.Equal(MAC(k1, []byte("a")), MAC(k1, []byte("b"))) || !bytes.Equal(MAC(k1, []byte("a")), MAC(k2, []byte("a"))) {
		t.Error("MAC does not tell contents apart, or differs for one key")
	}
}

func TestLoadRefusesMissingKey(t *testing.T) {
	if _, err := Load([]string{filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Error("Load of a missing key = nil, want an error")
	}
}
