package spec

import (
	"errors"
	"io/fs"
	"sort"
	"strings"
)

// DefaultMaxFileSize is the default limit on a file resource's content and on
// any file that a manifest reads.
const DefaultMaxFileSize = 16 << 20

// Options tune loading.
type Options struct {
	// MaxFileSize limits a source file or rendered content; 0 means
	// DefaultMaxFileSize.
	MaxFileSize int64
}

// Error is one validation error at a position in the repository.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errors is every validation error of a repository, sorted by position.
// Load and Render return it (wrapped) when the repository is invalid; test
// for it with errors.As.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Sort orders the errors by file, line, column and message.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return es[i].Msg < es[j].Msg
	})
}

// ErrInvalid is matched by errors.Is for every Errors value.
var ErrInvalid = errors.New("invalid repository")

// Is makes errors.Is(err, ErrInvalid) true for validation errors.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Repo is a parsed and validated environment repository, not yet rendered for
// a host.
type Repo struct {
	fsys fs.FS
	opts Options
	// filled in by the parser
}

// Load reads every manifest in fsys (a directory or a commit's tree; when fsys
// implements fs.ReadLinkFS symlinks are resolved and confined to it), parses
// and validates it. On invalid input the error is an Errors listing every
// problem.
func Load(fsys fs.FS, opts Options) (*Repo, error) {
	panic("spec.Load: not implemented yet")
}

// Render selects the resources that apply to host through fleet.yaml,
// renders templates and reads sources, and returns the host's desired state.
func (r *Repo) Render(host Host) (*State, error) {
	panic("spec.Repo.Render: not implemented yet")
}
