package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

// TestX25519IdentityAgreesWithAge opens files made by age for a key of
// their own each, among other recipients: the plaintext is age's; a file
// for other keys gives age's error. (The public key enters the stanza's
// key derivation: a wrong one would open nothing.)
func TestX25519IdentityAgreesWithAge(t *testing.T) {
	t.Parallel()
	for i := range 50 {
		ours, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		other, _ := age.GenerateX25519Identity()
		fast, err := newX25519Identity(ours)
		if err != nil {
			t.Fatalf("newX25519Identity: %v", err)
		}
		plain := make([]byte, 1+i*1337)
		rand.Read(plain)
		file := encrypt(t, string(plain), i%2 == 0, other.Recipient(), ours.Recipient())
		k := &Keys{ids: []age.Identity{fast}}
		got, err := k.decryptAge(file)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("decryptAge() = %d bytes, %v; want the %d bytes encrypted", len(got), err, len(plain))
		}
		if _, err := k.decryptAge(encrypt(t, "x", false, other.Recipient())); !errors.Is(err, ErrNoKey) {
			t.Fatalf("decryptAge() of a file for another key = %v, want ErrNoKey", err)
		}
	}
}

// TestX25519IdentityRefusesBadStanzas: a stanza of another type is not
// ours; a malformed X25519 stanza, a low-order share or a body of the
// wrong size is an error; a body sealed for another key is not ours.
func TestX25519IdentityRefusesBadStanzas(t *testing.T) {
	t.Parallel()
	id, _ := age.GenerateX25519Identity()
	fast, err := newX25519Identity(id)
	if err != nil {
		t.Fatal(err)
	}
	share := make([]byte, 32)
	rand.Read(share)
	b64 := base64.RawStdEncoding.EncodeToString
	zero := b64(make([]byte, 32)) // a point of low order
	tests := []struct {
		name    string
		stanza  age.Stanza
		notOurs bool
	}{
		{"other type", age.Stanza{Type: "scrypt", Args: []string{"salt", "10"}, Body: make([]byte, 32)}, true},
		{"no argument", age.Stanza{Type: "X25519", Body: make([]byte, 32)}, false},
		{"two arguments", age.Stanza{Type: "X25519", Args: []string{b64(share), b64(share)}, Body: make([]byte, 32)}, false},
		{"short share", age.Stanza{Type: "X25519", Args: []string{b64(share[:31])}, Body: make([]byte, 32)}, false},
		{"padded share", age.Stanza{Type: "X25519", Args: []string{base64.StdEncoding.EncodeToString(share)}, Body: make([]byte, 32)}, false},
		{"low-order share", age.Stanza{Type: "X25519", Args: []string{zero}, Body: make([]byte, 32)}, false},
		{"short body", age.Stanza{Type: "X25519", Args: []string{b64(share)}, Body: make([]byte, 31)}, false},
		{"sealed for another key", age.Stanza{Type: "X25519", Args: []string{b64(share)}, Body: make([]byte, 32)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := fast.Unwrap([]*age.Stanza{&tt.stanza})
			switch {
			case key != nil:
				t.Fatalf("Unwrap() = a key, want none")
			case tt.notOurs && !errors.Is(err, age.ErrIncorrectIdentity):
				t.Fatalf("Unwrap() = %v, want ErrIncorrectIdentity", err)
			case !tt.notOurs && (err == nil || errors.Is(err, age.ErrIncorrectIdentity)):
				t.Fatalf("Unwrap() = %v, want an error about the stanza", err)
			}
		})
	}
}

func TestDecodeAgeSecretKey(t *testing.T) {
	t.Parallel()
	id, _ := age.GenerateX25519Identity()
	good := id.String()
	flip := []byte(good)
	if flip[20] == 'Q' {
		flip[20] = 'P'
	} else {
		flip[20] = 'Q'
	}
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"as age writes it", good, true},
		{"lower case", strings.ToLower(good), true},
		{"one character changed", string(flip), false},
		{"checksum cut", good[:len(good)-1], false},
		{"other prefix", "AGE-PLUGIN-" + good[len("AGE-SECRET-KEY-"):], false},
		{"not in the alphabet", good[:30] + "B" + good[31:], false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := decodeAgeSecretKey(tt.key)
			if (err == nil) != tt.ok {
				t.Fatalf("decodeAgeSecretKey(%q) error = %v, want ok %v", tt.key, err, tt.ok)
			}
			if tt.ok && len(raw) != 32 {
				t.Fatalf("decodeAgeSecretKey() = %d bytes, want 32", len(raw))
			}
		})
	}
}
