package file_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

func ctime(t *testing.T, p string) syscall.Timespec {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ctim
}

// editSameSize rewrites p in place with content of the same size until its
// change time differs from before: a hand edit in a later clock tick than
// the version that was verified.
func editSameSize(t *testing.T, p, content string) {
	t.Helper()
	before := ctime(t, p)
	for ctime(t, p) == before {
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

func TestContentCache(t *testing.T) {
	type step struct {
		name string
		// do changes the file by hand before the check; nil does nothing.
		do        func(t *testing.T, p string)
		want      spec.Change
		wantReads int64 // content reads during the check
	}
	// The driver's clock, from the change time of the file as first
	// written: an hour later, or a second later.
	later := func(c time.Time) time.Time { return c.Add(time.Hour) }
	recent := func(c time.Time) time.Time { return c.Add(time.Second) }
	tests := []struct {
		name  string
		clock func(written time.Time) time.Time
		steps []step
	}{
		{
			name:  "an old verified version is not read again",
			clock: later,
			steps: []step{
				{name: "first check reads", want: spec.Change{Action: spec.ActionNone}, wantReads: 1},
				{name: "second check trusts", want: spec.Change{Action: spec.ActionNone}, wantReads: 0},
				{
					name:      "same-size edit in place",
					do:        func(t *testing.T, p string) { editSameSize(t, p, "xxxx") },
					want:      spec.Change{Action: spec.ActionUpdate, Fields: []string{"content"}},
					wantReads: 1,
				},
			},
		},
		{
			name:  "a replaced file is read",
			clock: later,
			steps: []step{
				{name: "first check reads", want: spec.Change{Action: spec.ActionNone}, wantReads: 1},
				{
					name: "same content, new inode",
					do: func(t *testing.T, p string) {
						write(t, p+".tmp", "abcd", 0o640)
						if err := unix.Lsetxattr(p+".tmp", "trusted.outpost.path", []byte("/etc/a"), 0); err != nil {
							t.Fatal(err)
						}
						if err := os.Rename(p+".tmp", p); err != nil {
							t.Fatal(err)
						}
					},
					want:      spec.Change{Action: spec.ActionNone},
					wantReads: 1,
				},
				{name: "then trusted", want: spec.Change{Action: spec.ActionNone}, wantReads: 0},
			},
		},
		{
			name:  "a recent version is always read",
			clock: recent,
			steps: []step{
				{name: "first check reads", want: spec.Change{Action: spec.ActionNone}, wantReads: 1},
				{name: "second check reads", want: spec.Change{Action: spec.ActionNone}, wantReads: 1},
			},
		},
		{
			name:  "a mode changed by hand",
			clock: later,
			steps: []step{
				{name: "first check reads", want: spec.Change{Action: spec.ActionNone}, wantReads: 1},
				{
					name: "chmod",
					do: func(t *testing.T, p string) {
						if err := os.Chmod(p, 0o600); err != nil {
							t.Fatal(err)
						}
					},
					want:      spec.Change{Action: spec.ActionUpdate, Fields: []string{"mode 0600 -> 0640"}},
					wantReads: 1, // the change time moved: read once more
				},
				{name: "the repair moved the change time", want: spec.Change{Action: spec.ActionNone}, wantReads: 1},
				{name: "then trusted", want: spec.Change{Action: spec.ActionNone}, wantReads: 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			d := file.New(file.Options{Root: root})
			r := fileRes("/etc/a", "abcd", mode(0o640))
			p := d.Path("/etc/a")
			write(t, p, "abcd", 0o640)
			mark(t, root, "/etc/a")
			written := ctime(t, p)
			now := tt.clock(time.Unix(written.Unix()))
			file.SetClock(d, func() time.Time { return now })
			ctx := context.Background()
			for _, s := range tt.steps {
				if s.do != nil {
					s.do(t, p)
				}
				before := file.Reads(d)
				got, err := d.CheckApply(ctx, r, true)
				if err != nil {
					t.Fatalf("%s: CheckApply() error = %v", s.name, err)
				}
				if got.String() != s.want.String() {
					t.Errorf("%s: CheckApply() = %v, want %v", s.name, got, s.want)
				}
				if n := file.Reads(d) - before; n != s.wantReads {
					t.Errorf("%s: CheckApply() read the file %d times, want %d", s.name, n, s.wantReads)
				}
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "abcd" {
				t.Errorf("in the end the file holds %q, %v, want %q", b, err, "abcd")
			}
		})
	}
}
