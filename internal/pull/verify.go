package pull

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// sshNamespace is the namespace git signs commits in.
const sshNamespace = "git"

// VerifyError says why a commit is not trusted. It matches ErrUnverified.
type VerifyError struct {
	Commit string
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("commit %s not verified: %s", e.Commit, e.Reason)
}

// Is makes errors.Is(err, ErrUnverified) true.
func (e *VerifyError) Is(target error) bool { return target == ErrUnverified }

// Verify checks the commit's signature against the keys of the
// configuration: an SSH signature against Verify.AllowedSigners, an OpenPGP
// signature against Verify.OpenPGPKeyring. Without either, every commit
// passes. The key files are read on every call, so a changed list of
// trusted keys takes effect at once. An unsigned commit, an unknown key or
// a signature that does not match the commit is a *VerifyError.
func (r *Repo) Verify(commit string) error {
	v := r.cfg.Verify
	if !v.Enabled() {
		return nil
	}
	r.mu.Lock()
	c, err := r.resolve(commit)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	sig := c.PGPSignature
	payload := &plumbing.MemoryObject{}
	err = c.EncodeWithoutSignature(payload)
	r.mu.Unlock()
	if err != nil {
		return &Error{Op: "verify", URL: r.redacted, Err: fmt.Errorf("commit %s: %w", commit, err)}
	}
	msg, err := payload.Reader()
	if err != nil {
		return &Error{Op: "verify", URL: r.redacted, Err: err}
	}
	defer msg.Close()
	data, err := io.ReadAll(msg)
	if err != nil {
		return &Error{Op: "verify", URL: r.redacted, Err: err}
	}
	unverified := func(format string, args ...any) error {
		return &VerifyError{Commit: commit, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case strings.TrimSpace(sig) == "":
		return unverified("unsigned")
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		if v.AllowedSigners == "" {
			return unverified("signed with an SSH key, but no allowed_signers file is configured")
		}
		signers, err := ReadAllowedSigners(v.AllowedSigners)
		if err != nil {
			return &Error{Op: "verify", Kind: ErrConfig, Err: err}
		}
		if reason := verifySSH(data, sig, signers, c.Committer.When); reason != "" {
			return unverified("%s", reason)
		}
		return nil
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		if v.OpenPGPKeyring == "" {
			return unverified("signed with an OpenPGP key, but no OpenPGP keyring is configured")
		}
		keyring, err := readKeyring(v.OpenPGPKeyring)
		if err != nil {
			return &Error{Op: "verify", Kind: ErrConfig, Err: err}
		}
		_, err = openpgp.CheckArmoredDetachedSignature(keyring, bytes.NewReader(data), strings.NewReader(sig), nil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, pgperrors.ErrUnknownIssuer):
			return unverified("signed by an OpenPGP key that is not in the keyring")
		default:
			return unverified("bad OpenPGP signature: %v", err)
		}
	}
	return unverified("signature of an unknown format")
}

func readKeyring(file string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("openpgp keyring: %w", err)
	}
	var list openpgp.EntityList
	if bytes.Contains(b, []byte("-----BEGIN PGP")) {
		list, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	} else {
		list, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("openpgp keyring %s: %w", file, err)
	}
	return list, nil
}

// verifySSH returns "" when sig is a good signature of data by a key that
// signers allow for git at time when, or the reason it is not.
func verifySSH(data []byte, armored string, signers []AllowedSigner, when time.Time) string {
	sig, err := sshsig.Unarmor([]byte(armored))
	if err != nil {
		return fmt.Sprintf("malformed SSH signature: %v", err)
	}
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	var reason string
	for _, s := range signers {
		if s.CertAuthority || ssh.FingerprintSHA256(s.Key) != fp {
			continue
		}
		if !s.allowsNamespace(sshNamespace) {
			reason = fmt.Sprintf("key %s is not allowed to sign in namespace %q", fp, sshNamespace)
			continue
		}
		if !s.ValidAt(when) {
			reason = fmt.Sprintf("key %s was not valid when the commit was made (%s)", fp, when.UTC().Format(time.RFC3339))
			continue
		}
		if err := sshsig.Verify(bytes.NewReader(data), sig, s.Key, sig.HashAlgorithm, sshNamespace); err != nil {
			return fmt.Sprintf("bad SSH signature by %s (%s): %v", strings.Join(s.Principals, ","), fp, err)
		}
		return ""
	}
	if reason != "" {
		return reason
	}
	return fmt.Sprintf("signed by SSH key %s, which is not in allowed_signers", fp)
}

// AllowedSigner is one line of an allowed_signers file (see ssh-keygen(1),
// "ALLOWED SIGNERS").
type AllowedSigner struct {
	Principals    []string
	CertAuthority bool
	Namespaces    []string // empty: every namespace
	ValidAfter    time.Time
	ValidBefore   time.Time
	Key           ssh.PublicKey
}

func (s AllowedSigner) allowsNamespace(ns string) bool {
	if len(s.Namespaces) == 0 {
		return true
	}
	for _, p := range s.Namespaces {
		if ok, _ := path.Match(p, ns); ok {
			return true
		}
	}
	return false
}

// ReadAllowedSigners parses an allowed_signers file: per line, principals,
// optional options (cert-authority, namespaces="...", valid-after="...",
// valid-before="..."), a key type and its base64 key. Blank lines and
// # comments are skipped. Certificate authorities are read but not
// trusted: only plain keys verify commits.
func ReadAllowedSigners(file string) ([]AllowedSigner, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("allowed signers: %w", err)
	}
	defer f.Close()
	var out []AllowedSigner
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseAllowedSigner(line)
		if err != nil {
			return nil, fmt.Errorf("allowed signers %s:%d: %w", file, n, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("allowed signers %s: %w", file, err)
	}
	return out, nil
}

func parseAllowedSigner(line string) (AllowedSigner, error) {
	var s AllowedSigner
	fields := splitFields(line)
	if len(fields) < 3 {
		return s, errors.New("want principals, [options,] key type and key")
	}
	s.Principals = strings.Split(unquote(fields[0]), ",")
	rest := fields[1:]
	// The options are present when the second field is not a key type.
	if !isKeyType(rest[0]) {
		for _, opt := range splitOptions(rest[0]) {
			name, val, _ := strings.Cut(opt, "=")
			val = unquote(val)
			var err error
			switch strings.ToLower(name) {
			case "cert-authority":
				s.CertAuthority = true
			case "namespaces":
				s.Namespaces = strings.Split(val, ",")
			case "valid-after":
				s.ValidAfter, err = parseSignerTime(val)
			case "valid-before":
				s.ValidBefore, err = parseSignerTime(val)
			default:
				return s, fmt.Errorf("unknown option %q", name)
			}
			if err != nil {
				return s, err
			}
		}
		rest = rest[1:]
	}
	if len(rest) < 2 {
		return s, errors.New("want principals, [options,] key type and key")
	}
	raw, err := base64.StdEncoding.DecodeString(rest[1])
	if err != nil {
		return s, fmt.Errorf("key: %w", err)
	}
	key, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return s, fmt.Errorf("key: %w", err)
	}
	if key.Type() != rest[0] {
		return s, fmt.Errorf("key type %s does not match the key (%s)", rest[0], key.Type())
	}
	s.Key = key
	return s, nil
}

func isKeyType(s string) bool {
	for _, p := range []string{"ssh-", "ecdsa-", "sk-", "rsa-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// splitFields splits on blanks outside double quotes.
func splitFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\t') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// splitOptions splits on commas outside double quotes.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// parseSignerTime reads ssh-keygen's YYYYMMDD[HHMM[SS]][Z] times: local
// time unless Z says UTC.
func parseSignerTime(v string) (time.Time, error) {
	loc := time.Local
	if strings.HasSuffix(v, "Z") || strings.HasSuffix(v, "z") {
		v, loc = v[:len(v)-1], time.UTC
	}
	for _, layout := range []string{"20060102", "200601021504", "20060102150405"} {
		if len(v) == len(layout) {
			t, err := time.ParseInLocation(layout, v, loc)
			if err != nil {
				return time.Time{}, fmt.Errorf("time %q: %w", v, err)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want YYYYMMDD[HHMM[SS]][Z]", v)
}

// AllowsNamespace reports whether the signer may sign in namespace ns, as
// its namespaces="..." option says.
func (s AllowedSigner) AllowsNamespace(ns string) bool { return s.allowsNamespace(ns) }

// ValidAt reports whether t is within the key's valid-after and
// valid-before dates (either may be unset).
func (s AllowedSigner) ValidAt(t time.Time) bool {
	return (s.ValidAfter.IsZero() || !t.Before(s.ValidAfter)) && (s.ValidBefore.IsZero() || !t.After(s.ValidBefore))
}
