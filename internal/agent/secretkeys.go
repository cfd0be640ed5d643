package agent

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/outpost-gitops/outpost/internal/atomicfile"
	"github.com/outpost-gitops/outpost/internal/targets/docker"

	"github.com/outpost-gitops/outpost/internal/secrets"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
)

// SecretsConfig names the keys that open the repository's encrypted files.
type SecretsConfig struct {
	// Key is the host's own age key, created on first start when
	// missing; default age.key beside agent.yaml (/etc/outpost/age.key).
	Key string `yaml:"key"`
	// Identities are the key files to try: age identity files and SSH
	// private keys (/etc/ssh/ssh_host_ed25519_key). Default: Key alone.
	Identities []string `yaml:"identities"`
	// RunDir holds the secret files that containers bind, on a tmpfs;
	// default /run/outpost/secrets.
	RunDir string `yaml:"run_dir"`
}

// DefaultSecretsRunDir is where containers' secret files are written.
const DefaultSecretsRunDir = "/run/outpost/secrets"

func (c SecretsConfig) runDir() string {
	if c.RunDir != "" {
		return c.RunDir
	}
	return DefaultSecretsRunDir
}

// mountSecrets binds each container's secret files, read-only, from the
// files that writeSecretFiles keeps under dir: DIR/CONTAINER/HASH, HASH
// the digest of the path in the container.
func mountSecrets(desired *spec.State, dir string) {
	for _, r := range desired.Resources {
		c := docker.Of(r)
		if c == nil {
			continue
		}
		for _, f := range c.SecretFiles {
			c.Volumes = append(c.Volumes, docker.Volume{Source: secretFilePath(dir, c.Name, f.Target), Target: f.Target, ReadOnly: true, Secret: true})
		}
	}
}

func secretFilePath(dir, container, target string) string {
	sum := sha256.Sum256([]byte(target))
	return filepath.Join(dir, container, hex.EncodeToString(sum[:8]))
}

// writeSecretFiles writes the secret files of desired's containers under
// dir (mode 0700 directories, 0444 files: readable by any user inside the
// container, by root alone on the host), and removes those of the owned
// containers that no longer have any. The directory should be on a tmpfs
// (/run), so that no plaintext reaches a disk: a warning says when it is
// not.
func writeSecretFiles(desired *spec.State, owned state.Inventory, dir string, log *slog.Logger) error {
	want := map[string]bool{}
	for _, r := range desired.Resources {
		c := docker.Of(r)
		if c == nil || len(c.SecretFiles) == 0 {
			continue
		}
		want[c.Name] = true
		if err := os.MkdirAll(filepath.Join(dir, c.Name), 0o700); err != nil {
			return fmt.Errorf("secret files of %s: %w", c.Name, err)
		}
		os.Chmod(dir, 0o700)
		for _, f := range c.SecretFiles {
			p := secretFilePath(dir, c.Name, f.Target)
			if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.Content) {
				continue
			}
			if err := atomicfile.WriteFile(p, f.Content, 0o444, atomicfile.Options{}); err != nil {
				return fmt.Errorf("secret file %s of %s: %w", f.Target, c.Name, err)
			}
		}
	}
	if len(want) > 0 && !onTmpfs(dir) {
		log.Warn("the secret files of containers are not on a tmpfs: their plaintext reaches a disk", "dir", dir)
	}
	for _, e := range owned {
		if e.Kind == docker.Kind && !want[e.Name] && filepath.Base(e.Name) == e.Name && e.Name != "" {
			os.RemoveAll(filepath.Join(dir, e.Name))
		}
	}
	return nil
}

// onTmpfs reports whether dir lies on a tmpfs.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
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
		s, ok := r.Object.(sealer)
		if !r.Secret || !ok {
			continue
		}
		if key == nil {
			var err error
			if key, err = secrets.MACKey(stateDir); err != nil {
				key = make([]byte, 32)
				rand.Read(key)
			}
		}
		s.Seal(func(b []byte) []byte { return secrets.MAC(key, b) })
	}
}

// sealer is an object that holds secrets: a file, a container.
type sealer interface{ Seal(mac func([]byte) []byte) }

// forgetPlaintexts empties plainCache, as a new process finds it.
func forgetPlaintexts() {
	plainCache.Lock()
	defer plainCache.Unlock()
	clear(plainCache.m)
	plainCache.bytes = 0
}
