// Package secrets holds this host's keys for the encrypted files of the
// repository: age identities (an X25519 key of the host's own, created on
// first start, or the SSH host keys), and the key of the keyed hash that
// stands for a secret's content in the state. It opens age files and SOPS
// files (internal/sops) for the renderer; an error names the file and the
// host's recipients, never the content.
package secrets

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/sops"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// DefaultKeyFile is where the host's own age key lives.
const DefaultKeyFile = "/etc/outpost/age.key"

// MaxRecipients bounds the recipients of one age file: each costs a try
// per identity.
const MaxRecipients = 256

// ErrNoKey is matched by errors.Is when none of this host's identities
// opens a file.
var ErrNoKey = errors.New("none of this host's keys can decrypt it")

// EnsureKey creates an age X25519 identity at path (mode 0600, its
// directory 0700 when made) unless a file is there, and returns the
// recipient of the key at path.
func EnsureKey(path string) (string, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", fmt.Errorf("create the host's age key: %w", err)
		}
		body := fmt.Sprintf("# Outpost's age key of this host: its recipient is in the host's status notes.\n# public key: %s\n%s\n", id.Recipient(), id)
		if err := atomicfile.WriteFile(path, []byte(body), 0o600, atomicfile.Options{}); err != nil {
			return "", fmt.Errorf("create the host's age key: %w", err)
		}
	}
	k, err := Load([]string{path})
	if err != nil {
		return "", err
	}
	return k.Recipients[0], nil
}

// Keys are the identities this host decrypts with.
type Keys struct {
	ids []age.Identity
	// Recipients are the identities' public recipients (age1..., or the
	// SSH public key), in the order of the files.
	Recipients []string
}

// Load reads identity files: age identity files (age-keygen's format) and
// SSH private keys (ed25519 or RSA, unencrypted, as host keys are). A file
// that cannot be read is an error: a key the configuration names must be
// there.
func Load(paths []string) (*Keys, error) {
	k := &Keys{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("secrets identity %s: %w", p, err)
		}
		if err := k.add(p, data); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *Keys) add(p string, data []byte) error {
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		id, err := agessh.ParseIdentity(data)
		if err != nil {
			return fmt.Errorf("secrets identity %s: %w", p, err)
		}
		key, err := ssh.ParseRawPrivateKey(data)
		if err != nil {
			return fmt.Errorf("secrets identity %s: %w", p, err)
		}
		signer, err := ssh.NewSignerFromKey(key)
		if err != nil {
			return fmt.Errorf("secrets identity %s: %w", p, err)
		}
		k.ids = append(k.ids, id)
		k.Recipients = append(k.Recipients, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
		return nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("secrets identity %s: %w", p, err)
	}
	for _, id := range ids {
		x, ok := id.(*age.X25519Identity)
		if !ok {
			return fmt.Errorf("secrets identity %s: not an X25519 identity", p)
		}
		fast, err := newX25519Identity(x)
		if err != nil {
			return fmt.Errorf("secrets identity %s: %w", p, err)
		}
		k.ids = append(k.ids, fast)
		k.Recipients = append(k.Recipients, x.Recipient().String())
	}
	return nil
}

// Decrypt implements spec.Decrypter: an age file (armored or binary) or a
// SOPS file, by its name.
func (k *Keys) Decrypt(name string, data []byte) ([]byte, error) {
	if strings.HasSuffix(name, ".age") {
		return k.decryptAge(data)
	}
	f, err := sops.Parse(data, sops.FormatOf(strings.TrimSuffix(name, ".sops")))
	if err != nil {
		return nil, fmt.Errorf("read as SOPS: %w", err)
	}
	p, err := f.Decrypt(k.ids)
	if errors.Is(err, sops.ErrNoKey) {
		return nil, fmt.Errorf("%w (this host: %s; the file: %s)", ErrNoKey, k.names(), strings.Join(f.Recipients(), ", "))
	}
	if err != nil {
		return nil, err
	}
	return p.Data, nil
}

// decryptAge opens an age file, at most spec.DefaultMaxFileSize of
// plaintext.
func (k *Keys) decryptAge(data []byte) ([]byte, error) {
	var src io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte(armor.Header)) {
		src = armor.NewReader(bytes.NewReader(data))
	}
	r, err := age.Decrypt(src, k.ids...)
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return nil, fmt.Errorf("%w (this host: %s)", ErrNoKey, k.names())
	}
	if err != nil {
		return nil, fmt.Errorf("not a valid age file: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, spec.DefaultMaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("the age file does not verify (tampered or truncated): %w", err)
	}
	if len(out) > spec.DefaultMaxFileSize {
		return nil, fmt.Errorf("its plaintext is larger than %d bytes", spec.DefaultMaxFileSize)
	}
	return out, nil
}

// names lists the host's recipients for an error, "no key" without any.
func (k *Keys) names() string {
	if len(k.Recipients) == 0 {
		return "no key"
	}
	return strings.Join(k.Recipients, ", ")
}

// MACKey returns the key of the keyed hash of secrets, kept in the state
// directory (mac.key, 0600), made on first use.
func MACKey(stateDir string) ([]byte, error) {
	p := filepath.Join(stateDir, "mac.key")
	key, err := os.ReadFile(p)
	if err == nil && len(key) == 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the keyed hash's key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(p, key, 0o600, atomicfile.Options{}); err != nil {
		return nil, fmt.Errorf("the keyed hash's key: %w", err)
	}
	return key, nil
}

// MAC returns the keyed hash of a secret's content.
func MAC(key, content []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(content)
	return m.Sum(nil)
}
