package status

import (
	"cmp"
	"slices"
	"strings"

	"github.com/outpost-gitops/outpost/internal/redact"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

// Redacted replaces a secret in a note or a log line.
const Redacted = "[redacted]"

// MinSecretLen is the length below which a secret value is not replaced:
// replacing every "1" or "on" of a text would destroy it and hide nothing
// worth hiding.
const MinSecretLen = 4

// Redactor removes credentials from text: the user information of every
// URL, and every occurrence of a list of secret values. The zero value and
// nil strip URLs only.
type Redactor struct {
	secrets []string // longest first, so a secret inside another goes too
}

// NewRedactor returns a Redactor that replaces the given secrets (such as
// the values of containers' environment variables) with Redacted.
func NewRedactor(secrets ...string) *Redactor {
	var s []string
	for _, v := range secrets {
		if len(v) >= MinSecretLen {
			s = append(s, v)
		}
	}
	slices.SortFunc(s, func(a, b string) int {
		if c := cmp.Compare(len(b), len(a)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return &Redactor{secrets: slices.Compact(s)}
}

// String returns s without URL user information and without the secrets.
func (r *Redactor) String(s string) string {
	if r != nil {
		for _, v := range r.secrets {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return redact.URLs(s)
}

// Secrets returns the values that a note about st must not contain: the
// environment values of every container, and the content of every file
// made from an encrypted source, whole and line by line.
func Secrets(st *spec.State) []string {
	if st == nil {
		return nil
	}
	var out []string
	for _, r := range st.Resources {
		if f := file.Of(r); f != nil && f.Secret {
			out = append(out, secretLines(f.Content)...)
		}
		c := docker.Of(r)
		if c == nil {
			continue
		}
		for _, v := range c.Env {
			out = append(out, v)
		}
		for _, f := range c.SecretFiles {
			out = append(out, secretLines(f.Content)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// secretLines is a secret's whole content and each of its lines of 8
// characters or more: an error may quote one.
func secretLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	out := []string{string(b)}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); len(l) >= 8 {
			out = append(out, l)
		}
	}
	return out
}
