// Package diff shows what changes between two versions of a resource: a
// unified diff of text, a size and hash line for binary or large content,
// each changed field of a kind's settings as before -> after, and secret
// values masked. It is used when a change is printed (outpost diff, apply
// -v, plan), never on a pass that only checks.
//
// diff imports spec and the kinds' packages, whose objects it shows.
package diff

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sergi/go-diff/diffmatchpatch"
)

// MaxText is the largest content shown as a unified diff; larger content
// gets a size and hash line.
const MaxText = 256 << 10

// maxLines bounds the diff lines printed for one content; the rest is
// counted.
const maxLines = 400

// context is the number of unchanged lines shown around a change.
const context = 3

// Content is one version of a content: its bytes, or for content too large
// to keep, only its size and hash.
type Content struct {
	Data []byte
	// Size and Sum (hex SHA-256) stand for Data when it was not kept
	// (Data is nil and Size is above 0).
	Size int64
	Sum  string
}

// Bytes returns the Content of b.
func Bytes(b []byte) Content { return Content{Data: b, Size: int64(len(b))} }

func (c Content) sum() string {
	if c.Sum != "" {
		return c.Sum
	}
	s := sha256.Sum256(c.Data)
	return hex.EncodeToString(s[:])
}

func (c Content) kept() bool { return c.Data != nil || c.Size == 0 }

// textual reports whether c can be shown as lines of text.
func (c Content) textual() bool {
	return c.kept() && len(c.Data) <= MaxText && utf8.Valid(c.Data) && bytes.IndexByte(c.Data, 0) < 0
}

// Masker hides secret values: a content that holds one is shown as the
// number of lines that changed, never as text.
type Masker struct {
	secrets [][]byte
}

// MinSecretLen is the length below which a value is not treated as a
// secret in content: masking every file that holds "1" or "on" would hide
// every diff and protect nothing (the same rule as status notes).
const MinSecretLen = 4

// NewMasker returns a Masker for the given secret values; nil masks nothing.
func NewMasker(secrets ...string) *Masker {
	m := &Masker{}
	for _, s := range secrets {
		if len(s) >= MinSecretLen {
			m.secrets = append(m.secrets, []byte(s))
		}
	}
	return m
}

// holds reports whether b contains a secret value.
func (m *Masker) holds(b []byte) bool {
	if m == nil {
		return false
	}
	for _, s := range m.secrets {
		if bytes.Contains(b, s) {
			return true
		}
	}
	return false
}

// Text returns the difference between before and after, named name: a
// unified diff ("--- name", "+++ name", hunks), a line with the sizes and
// hashes when either is binary or larger than MaxText, or
// "<secret: N lines changed>" when either holds a secret value. It returns
// "" when they are equal.
func (m *Masker) Text(name string, before, after Content) string {
	if before.kept() && after.kept() && bytes.Equal(before.Data, after.Data) {
		return ""
	}
	if !before.textual() || !after.textual() {
		if m.holds(before.Data) || m.holds(after.Data) {
			return "<secret: content changed>\n"
		}
		return fmt.Sprintf("binary or large content: %d bytes sha256:%s -> %d bytes sha256:%s\n",
			before.Size, short(before.sum()), after.Size, short(after.sum()))
	}
	ops := lines(string(before.Data), string(after.Data))
	if m.holds(before.Data) || m.holds(after.Data) {
		n := 0
		for _, o := range ops {
			if o.op != ' ' {
				n++
			}
		}
		return fmt.Sprintf("<secret: %d lines changed>\n", n)
	}
	return unified(name, ops)
}

func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16]
	}
	return sum
}

// line is one line of a line diff: ' ' kept, '-' removed, '+' added.
type line struct {
	op   byte
	text string // without its newline
	eol  bool   // whether it ended with a newline
}

// lines diffs a and b line by line.
func lines(a, b string) []line {
	dmp := diffmatchpatch.New()
	dmp.DiffTimeout = 2 * time.Second
	ca, cb, arr := dmp.DiffLinesToRunes(a, b)
	diffs := dmp.DiffCharsToLines(dmp.DiffMainRunes(ca, cb, false), arr)
	var out []line
	for _, d := range diffs {
		op := byte(' ')
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			op = '-'
		case diffmatchpatch.DiffInsert:
			op = '+'
		}
		text := d.Text
		for text != "" {
			l, rest, nl := strings.Cut(text, "\n")
			out = append(out, line{op: op, text: l, eol: nl})
			text = rest
		}
	}
	return out
}

// unified formats a line diff as hunks with context lines around each
// change, at most maxLines lines of them.
func unified(name string, ops []line) string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n+++ %s\n", name, name)
	printed := 0
	for i := 0; i < len(ops); {
		if ops[i].op == ' ' {
			i++
			continue
		}
		start := max(0, i-context)
		end := i
		// Extend the hunk while the next change is within 2*context.
		for j := i; j < len(ops); j++ {
			if ops[j].op != ' ' {
				end = j + 1
			} else if j-end >= 2*context {
				break
			}
		}
		end = min(len(ops), end+context)
		aStart, bStart := position(ops, start)
		aLen, bLen := 0, 0
		for _, o := range ops[start:end] {
			if o.op != '+' {
				aLen++
			}
			if o.op != '-' {
				bLen++
			}
		}
		fmt.Fprintf(&b, "@@ -%s +%s @@\n", span(aStart, aLen), span(bStart, bLen))
		for k, o := range ops[start:end] {
			if printed == maxLines {
				rest := 0
				for _, r := range ops[start+k:] {
					if r.op != ' ' {
						rest++
					}
				}
				fmt.Fprintf(&b, "... %d more changed lines\n", rest)
				return b.String()
			}
			printed++
			b.WriteByte(o.op)
			b.WriteString(o.text)
			b.WriteByte('\n')
			if !o.eol {
				b.WriteString("\\ No newline at end of file\n")
			}
		}
		i = end
	}
	return b.String()
}

// position returns the 1-based line numbers in a and b of ops[i].
func position(ops []line, i int) (int, int) {
	a, b := 1, 1
	for _, o := range ops[:i] {
		if o.op != '+' {
			a++
		}
		if o.op != '-' {
			b++
		}
	}
	return a, b
}

func span(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start-1)
	}
	if n == 1 {
		return fmt.Sprint(start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}
