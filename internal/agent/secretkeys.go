package agent

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/outpost-gitops/outpost/internal/secrets"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

// SecretsConfig names the keys that open the repository's encrypted files.
type SecretsConfig struct {
	// Key is the host's own age key, created on first start when
	// missing; default age.key beside agent.yaml (/etc/outpost/age.key).
	Key string `yaml:"key"`
	// Identities are the key files to try: age identity files and SSH
	// private keys (/etc/ssh/ssh_host_ed25519_key). Default: Key alone.
	Identities []string `yaml:"identities"`
}

// keyFile is the host's own age key: secrets.key, else age.key beside
// the configuration file (/etc/outpost/age.key).
func (cfg *Config) keyFile() string {
	switch {
	case cfg.Secrets.Key != "":
		return cfg.Secrets.Key
	case cfg.File != "":
		return filepath.Join(filepath.Dir(cfg.File), "age.key")
	}
	return secrets.DefaultKeyFile
}

// identities are the key files to try.
func (cfg *Config) identities() []string {
	if len(cfg.Secrets.Identities) > 0 {
		return cfg.Secrets.Identities
	}
	return []string{cfg.keyFile()}
}

// EnsureSecretKey creates the host's own age key when the configuration
// uses it and it is missing, and returns its recipient ("" when the
// configuration names other identities).
func EnsureSecretKey(cfg *Config) (string, error) {
	key := cfg.keyFile()
	for _, id := range cfg.identities() {
		if id == key {
			return secrets.EnsureKey(key)
		}
	}
	return "", nil
}

// failingDecrypter fails every file with why the keys could not be read.
type failingDecrypter struct{ err error }

func (f failingDecrypter) Decrypt(string, []byte) ([]byte, error) { return nil, f.err }

// hostKeys reads this host's identities: what opens its encrypted sources,
// and their recipients. Keys that cannot be read fail each encrypted
// source alone.
func hostKeys(cfg *Config) (spec.Decrypter, []string) {
	k, err := secrets.Load(cfg.identities())
	if err != nil {
		return failingDecrypter{fmt.Errorf("%w: %w", secrets.ErrNoKey, err)}, nil
	}
	return cachedDecrypter{k, strings.Join(k.Recipients, "\n")}, k.Recipients
}

// plainCache keeps the plaintexts this process decrypted, by the keys
// and the ciphertext: a pass over unchanged secrets decrypts nothing
// again (the daemon's next pass, a repair). It holds what the desired
// state in memory holds anyway, and forgets everything past its bound.
var plainCache = struct {
	sync.Mutex
	m     map[[32]byte][]byte
	bytes int
}{m: map[[32]byte][]byte{}}

// plainCacheBytes bounds the plaintexts kept.
const plainCacheBytes = 64 << 20

// cachedDecrypter decrypts through plainCache.
type cachedDecrypter struct {
	*secrets.Keys
	keys string // the recipients: which keys opened it
}

func (c cachedDecrypter) Decrypt(name string, data []byte) ([]byte, error) {
	h := sha256.New()
	h.Write([]byte(c.keys))
	h.Write([]byte{0})
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(data)
	var key [32]byte
	h.Sum(key[:0])
	plainCache.Lock()
	p, ok := plainCache.m[key]
	plainCache.Unlock()
	if ok {
		return bytes.Clone(p), nil
	}
	p, err := c.Keys.Decrypt(name, data)
	if err != nil {
		return nil, err
	}
	plainCache.Lock()
	defer plainCache.Unlock()
	if plainCache.bytes+len(p) > plainCacheBytes {
		clear(plainCache.m)
		plainCache.bytes = 0
	}
	plainCache.m[key] = bytes.Clone(p)
	plainCache.bytes += len(p)
	return p, nil
}

// seal sets the keyed hash of every secret file of desired, with the key
// kept in the state directory (made on first use; a random one when it
// cannot be, which only makes the next pass record the digest again).
func seal(desired *spec.State, stateDir string) {
	var key []byte
	for _, r := range desired.Resources {
		f := file.Of(r)
		if f == nil || !f.Secret {
			continue
		}
		if key == nil {
			var err error
			if key, err = secrets.MACKey(stateDir); err != nil {
				key = make([]byte, 32)
				rand.Read(key)
			}
		}
		f.Seal(func(b []byte) []byte { return secrets.MAC(key, b) })
	}
}
