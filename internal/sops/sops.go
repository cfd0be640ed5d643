// Package sops reads files that SOPS encrypted with age: YAML, JSON,
// dotenv and binary. It decrypts the data key with the host's age
// identities, each value with AES-256-GCM bound to its path, and checks
// the file's MAC over every value before any plaintext is returned, so a
// tampered, reordered or truncated file is refused whole. It writes
// nothing: a file is re-encrypted with the sops command.
//
// Linking SOPS's own decrypt package would cost about 42 MB (all its key
// services), so the format is read here, for age only.
package sops

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// Format is how a SOPS file stores its tree.
type Format string

// The formats, chosen by the file's name.
const (
	YAML   Format = "yaml"
	JSON   Format = "json"
	Dotenv Format = "dotenv"
	Binary Format = "binary"
)

// FormatOf returns the format of a file by its name, as the sops command
// chooses it: .yaml, .yml, .json, .env, else binary.
func FormatOf(name string) Format {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml":
		return YAML
	case ".json":
		return JSON
	case ".env":
		return Dotenv
	}
	return Binary
}

// Errors that callers match with errors.Is.
var (
	// ErrNotSOPS: the file has no SOPS metadata.
	ErrNotSOPS = errors.New("not a SOPS file")
	// ErrNoKey: none of the identities opens the data key.
	ErrNoKey = errors.New("no identity of this host can decrypt the file")
	// ErrTampered: a value or the MAC does not verify.
	ErrTampered = errors.New("the file does not verify (tampered, truncated or corrupt)")
	// ErrUnsupported: the file uses what this reader does not (key groups
	// with a threshold, no age recipient).
	ErrUnsupported = errors.New("unsupported SOPS file")
)

// metadata is the part of the sops section that decryption reads.
type metadata struct {
	recipients   []recipient
	lastModified string
	mac          string
	unencSuffix  string
	encSuffix    string
	unencRegex   *regexp.Regexp
	encRegex     *regexp.Regexp
	macOnlyEnc   bool
	version      string
}

type recipient struct {
	recipient string
	enc       string
}

// leaf is one value of the tree, in document order, as the MAC covers it.
type leaf struct {
	path  []string
	value string // as written: ENC[...] or plain
	set   func(plain string, typ string)
}

// File is a parsed SOPS file.
type File struct {
	Format Format
	meta   metadata
	leaves []leaf
	// emit writes the decrypted document once every leaf is set.
	emit func() ([]byte, error)
	// lookup finds a value by its path, after decryption.
	lookup func(keys []string) (string, bool)
	// plainKey is the data key while the document is written (its
	// comments are decrypted), nil otherwise.
	plainKey []byte
}

// Recipients returns the age recipients the file's data key is encrypted
// to. It needs no key.
func (f *File) Recipients() []string {
	out := make([]string, 0, len(f.meta.recipients))
	for _, r := range f.meta.recipients {
		out = append(out, r.recipient)
	}
	return out
}

// Parse reads a SOPS file of the given format without decrypting it.
func Parse(data []byte, format Format) (*File, error) {
	switch format {
	case YAML, JSON:
		return parseTree(data, format)
	case Dotenv:
		return parseDotenv(data)
	case Binary:
		f, err := parseTree(data, JSON)
		if err != nil {
			return nil, err
		}
		f.Format = Binary
		return f, nil
	}
	return nil, fmt.Errorf("%w: format %q", ErrUnsupported, format)
}

// Plaintext is a decrypted file.
type Plaintext struct {
	// Data is the whole document, as sops decrypt prints it (for binary,
	// the bytes themselves).
	Data []byte
	f    *File
}

// Value returns the value at a dotted path ("db.password"), as text.
func (p *Plaintext) Value(dotted string) (string, bool) {
	if p.f.lookup == nil {
		return "", false
	}
	return p.f.lookup(strings.Split(dotted, "."))
}

// Decrypt opens the data key with one of ids, decrypts every value and
// checks the MAC. Errors never quote a value.
func (f *File) Decrypt(ids []age.Identity) (*Plaintext, error) {
	key, err := f.dataKey(ids)
	if err != nil {
		return nil, err
	}
	h := sha512.New()
	if f.meta.macOnlyEnc {
		h.Write(macOnlyEncryptedInit)
	}
	for _, l := range f.leaves {
		enc := f.encrypted(l.path)
		plain, typ := l.value, ""
		if enc {
			plain, typ, err = decryptValue(l.value, key, strings.Join(l.path, ":")+":")
			if err != nil {
				return nil, fmt.Errorf("%w: the value at %s: %v", ErrTampered, strings.Join(l.path, "."), err)
			}
			l.set(plain, typ)
		}
		if !f.meta.macOnlyEnc || enc {
			h.Write(macBytes(plain, typ))
		}
	}
	mac, _, err := decryptValue(f.meta.mac, key, f.meta.lastModified)
	if err != nil {
		return nil, fmt.Errorf("%w: its MAC: %v", ErrTampered, err)
	}
	if want := fmt.Sprintf("%X", h.Sum(nil)); mac != want {
		return nil, fmt.Errorf("%w: the MAC does not match its values", ErrTampered)
	}
	f.plainKey = key
	data, err := f.emit()
	f.plainKey = nil
	if err != nil {
		return nil, err
	}
	return &Plaintext{Data: data, f: f}, nil
}

// macOnlyEncryptedInit starts the MAC of a file with mac_only_encrypted,
// so that it differs from the MAC of the same values without it.
var macOnlyEncryptedInit = []byte{0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0xb, 0xb, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69}

// macBytes is what the MAC reads of a value: its text, with booleans as
// True and False, as the sops command writes them.
func macBytes(plain, typ string) []byte {
	switch typ {
	case "bool":
		if b, err := strconv.ParseBool(plain); err == nil {
			if b {
				return []byte("True")
			}
			return []byte("False")
		}
	case "float":
		if v, err := strconv.ParseFloat(plain, 64); err == nil {
			return []byte(strconv.FormatFloat(v, 'f', -1, 64))
		}
	case "int":
		if v, err := strconv.Atoi(plain); err == nil {
			return []byte(strconv.Itoa(v))
		}
	}
	return []byte(plain)
}

// encrypted says whether the value at p is encrypted, by the file's rules.
func (f *File) encrypted(p []string) bool {
	m := f.meta
	switch {
	case m.unencSuffix != "":
		for _, k := range p {
			if strings.HasSuffix(k, m.unencSuffix) {
				return false
			}
		}
		return true
	case m.encSuffix != "":
		for _, k := range p {
			if strings.HasSuffix(k, m.encSuffix) {
				return true
			}
		}
		return false
	case m.unencRegex != nil:
		for _, k := range p {
			if m.unencRegex.MatchString(k) {
				return false
			}
		}
		return true
	case m.encRegex != nil:
		for _, k := range p {
			if m.encRegex.MatchString(k) {
				return true
			}
		}
		return false
	}
	return true
}

// dataKey decrypts the file's data key with the first identity that
// opens one of its age stanzas.
func (f *File) dataKey(ids []age.Identity) ([]byte, error) {
	if len(f.meta.recipients) == 0 {
		return nil, fmt.Errorf("%w: no age recipient", ErrUnsupported)
	}
	var last error
	for _, r := range f.meta.recipients {
		rd, err := age.Decrypt(armor.NewReader(strings.NewReader(r.enc)), ids...)
		if err != nil {
			last = err
			continue
		}
		key, err := io.ReadAll(io.LimitReader(rd, 64))
		if err != nil || len(key) != 32 {
			last = fmt.Errorf("data key of %d bytes", len(key))
			continue
		}
		return key, nil
	}
	var nm *age.NoIdentityMatchError
	if errors.As(last, &nm) {
		return nil, fmt.Errorf("%w (it is encrypted to %s)", ErrNoKey, strings.Join(f.Recipients(), ", "))
	}
	return nil, fmt.Errorf("%w: the data key: %v", ErrTampered, last)
}

var encValue = regexp.MustCompile(`^ENC\[AES256_GCM,data:([^,]*),iv:([^,]+),tag:([^,]+),type:([a-z]+)\]$`)

// decryptValue decrypts one ENC[...] value bound to aad. An empty string
// is a value that was empty.
func decryptValue(v string, key []byte, aad string) (string, string, error) {
	if v == "" {
		return "", "", nil
	}
	m := encValue.FindStringSubmatch(v)
	if m == nil {
		return "", "", errors.New("not an encrypted value")
	}
	var parts [3][]byte
	for i := range parts {
		b, err := base64.StdEncoding.DecodeString(m[i+1])
		if err != nil {
			return "", "", errors.New("not base64")
		}
		parts[i] = b
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", "", err
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, len(parts[1]))
	if err != nil {
		return "", "", err
	}
	plain, err := gcm.Open(nil, parts[1], append(parts[0], parts[2]...), []byte(aad))
	if err != nil {
		return "", "", errors.New("authentication failed")
	}
	return string(plain), m[4], nil
}

// dotenv is a dotenv file's lines.
func parseDotenv(data []byte) (*File, error) {
	f := &File{Format: Dotenv}
	type line struct {
		key, value string
		comment    bool
	}
	var lines []*line
	meta := map[string]string{}
	for _, raw := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if raw == "" {
			continue
		}
		if strings.HasPrefix(raw, "#") {
			lines = append(lines, &line{value: raw, comment: true})
			continue
		}
		k, v, ok := strings.Cut(raw, "=")
		if !ok {
			return nil, fmt.Errorf("%w: a line without =", ErrNotSOPS)
		}
		if rest, ok := strings.CutPrefix(k, "sops_"); ok {
			meta[rest] = strings.ReplaceAll(v, "\\n", "\n")
			continue
		}
		lines = append(lines, &line{key: k, value: v})
	}
	if err := f.readMeta(flatMeta(meta)); err != nil {
		return nil, err
	}
	for _, l := range lines {
		if l.comment {
			continue
		}
		f.leaves = append(f.leaves, leaf{path: []string{l.key}, value: l.value, set: func(p, _ string) { l.value = p }})
	}
	f.emit = func() ([]byte, error) {
		var b bytes.Buffer
		for _, l := range lines {
			if l.comment {
				b.WriteString(decryptComment(l.value, f, nil) + "\n")
				continue
			}
			b.WriteString(l.key + "=" + l.value + "\n")
		}
		return b.Bytes(), nil
	}
	f.lookup = func(keys []string) (string, bool) {
		for _, l := range lines {
			if !l.comment && len(keys) == 1 && l.key == keys[0] {
				return l.value, true
			}
		}
		return "", false
	}
	return f, nil
}

// flatMeta turns dotenv's flattened keys (age__list_0__map_recipient)
// into the metadata's own.
func flatMeta(m map[string]string) map[string]any {
	out := map[string]any{}
	var ages []any
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, "age__list_")
		if !ok {
			out[k] = v
			continue
		}
		idx, field, ok := strings.Cut(rest, "__map_")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i > 1024 {
			continue
		}
		for len(ages) <= i {
			ages = append(ages, map[string]any{})
		}
		ages[i].(map[string]any)[field] = v
	}
	if ages != nil {
		out["age"] = ages
	}
	return out
}

// readMeta reads the sops section.
func (f *File) readMeta(m map[string]any) error {
	if len(m) == 0 {
		return ErrNotSOPS
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	if _, ok := m["key_groups"]; ok {
		return fmt.Errorf("%w: key groups (shamir_threshold) are not read; encrypt to age recipients alone", ErrUnsupported)
	}
	ages, _ := m["age"].([]any)
	for _, a := range ages {
		am, _ := a.(map[string]any)
		r, _ := am["recipient"].(string)
		e, _ := am["enc"].(string)
		if r != "" && e != "" {
			f.meta.recipients = append(f.meta.recipients, recipient{recipient: r, enc: e})
		}
	}
	f.meta.lastModified = str("lastmodified")
	f.meta.mac = str("mac")
	f.meta.version = str("version")
	f.meta.unencSuffix = str("unencrypted_suffix")
	f.meta.encSuffix = str("encrypted_suffix")
	f.meta.macOnlyEnc = str("mac_only_encrypted") == "true" || m["mac_only_encrypted"] == true
	for _, r := range []struct {
		key string
		set **regexp.Regexp
	}{{"unencrypted_regex", &f.meta.unencRegex}, {"encrypted_regex", &f.meta.encRegex}} {
		if s := str(r.key); s != "" {
			re, err := regexp.Compile(s)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrUnsupported, r.key, err)
			}
			*r.set = re
		}
	}
	for _, k := range []string{"unencrypted_comment_regex", "encrypted_comment_regex"} {
		if str(k) != "" {
			return fmt.Errorf("%w: %s", ErrUnsupported, k)
		}
	}
	if f.meta.mac == "" || f.meta.lastModified == "" {
		return fmt.Errorf("%w: no mac or lastmodified", ErrNotSOPS)
	}
	return nil
}
