package secrets

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// x25519Identity opens age's X25519 stanzas as age.X25519Identity does,
// with the private key parsed once: age's own identity goes through
// golang.org/x/crypto/curve25519, which builds a crypto/ecdh key for every
// file and so computes the public key again each time, a second scalar
// multiplication per file. A one-shot pass over 100 secrets spent about a
// third of its decryption there. The stanza's format is age's
// (age-encryption.org/v1): one argument, the sender's ephemeral share in
// unpadded base64; a body of the 16-byte file key sealed with
// ChaCha20-Poly1305 under HKDF-SHA-256(shared secret, share || our public
// key, "age-encryption.org/v1/X25519") and a zero nonce.
type x25519Identity struct {
	key *ecdh.PrivateKey
	pub []byte
}

const x25519Label = "age-encryption.org/v1/X25519"

// fileKeySize is the size of an age file key.
const fileKeySize = 16

func newX25519Identity(id *age.X25519Identity) (*x25519Identity, error) {
	// The bech32 form is the only way age gives the scalar out.
	raw, err := decodeAgeSecretKey(id.String())
	if err != nil {
		return nil, err
	}
	key, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return nil, err
	}
	return &x25519Identity{key: key, pub: key.PublicKey().Bytes()}, nil
}

// Unwrap implements age.Identity.
func (i *x25519Identity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	for _, s := range stanzas {
		fileKey, err := i.unwrap(s)
		if errors.Is(err, age.ErrIncorrectIdentity) {
			continue
		}
		return fileKey, err
	}
	return nil, age.ErrIncorrectIdentity
}

func (i *x25519Identity) unwrap(s *age.Stanza) ([]byte, error) {
	if s.Type != "X25519" {
		return nil, age.ErrIncorrectIdentity
	}
	if len(s.Args) != 1 {
		return nil, errors.New("invalid X25519 recipient block")
	}
	share, err := base64.RawStdEncoding.Strict().DecodeString(s.Args[0])
	if err != nil || len(share) != 32 {
		return nil, errors.New("invalid X25519 recipient block")
	}
	peer, err := ecdh.X25519().NewPublicKey(share)
	if err != nil {
		return nil, fmt.Errorf("invalid X25519 recipient: %w", err)
	}
	// ECDH refuses a share of low order (an all-zero secret).
	shared, err := i.key.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("invalid X25519 recipient: %w", err)
	}
	salt := make([]byte, 0, 64)
	salt = append(append(salt, share...), i.pub...)
	wrap, err := hkdf.Key(sha256.New, shared, salt, x25519Label, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	if len(s.Body) != fileKeySize+chacha20poly1305.Overhead {
		return nil, errors.New("invalid X25519 recipient block: incorrect file key size")
	}
	aead, err := chacha20poly1305.New(wrap)
	if err != nil {
		return nil, err
	}
	fileKey, err := aead.Open(nil, make([]byte, chacha20poly1305.NonceSize), s.Body, nil)
	if err != nil {
		return nil, age.ErrIncorrectIdentity
	}
	return fileKey, nil
}

// decodeAgeSecretKey returns the scalar of an age secret key,
// "AGE-SECRET-KEY-1...": Bech32 (BIP 173) with the human-readable part
// "age-secret-key-", checksum verified, without Bech32's length limit, as
// age writes it.
func decodeAgeSecretKey(s string) ([]byte, error) {
	const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	const hrp = "age-secret-key-"
	lower := []byte(s)
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	if len(lower) < len(hrp)+1+6 || string(lower[:len(hrp)+1]) != hrp+"1" {
		return nil, errors.New("malformed age secret key")
	}
	data := make([]byte, 0, len(lower)-len(hrp)-1)
	for _, c := range lower[len(hrp)+1:] {
		v := -1
		for j := range len(charset) {
			if charset[j] == c {
				v = j
				break
			}
		}
		if v < 0 {
			return nil, errors.New("malformed age secret key")
		}
		data = append(data, byte(v))
	}
	// The checksum: the polymod over the expanded prefix and the data is 1.
	values := make([]byte, 0, 2*len(hrp)+1+len(data))
	for i := range len(hrp) {
		values = append(values, hrp[i]>>5)
	}
	values = append(values, 0)
	for i := range len(hrp) {
		values = append(values, hrp[i]&31)
	}
	values = append(values, data...)
	if bech32Polymod(values) != 1 {
		return nil, errors.New("malformed age secret key: bad checksum")
	}
	// Regroup the 5-bit data, less the 6 checksum values, into bytes.
	var out []byte
	acc, bits := 0, 0
	for _, v := range data[:len(data)-6] {
		acc = acc<<5 | int(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
		acc &= 1<<bits - 1
	}
	if bits >= 5 || acc != 0 || len(out) != 32 {
		return nil, errors.New("malformed age secret key")
	}
	return out, nil
}

func bech32Polymod(values []byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := uint32(1)
	for _, v := range values {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i := range 5 {
			if (top>>i)&1 == 1 {
				chk ^= gen[i]
			}
		}
	}
	return chk
}
