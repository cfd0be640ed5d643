package pull_test

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// TestTree reads a commit with files, directories and symlinks inside and
// outside the tree.
func TestTree(t *testing.T) {
	t.Parallel()
	repo, cfg := httpSource(t)
	commit := repo.CommitWith(gitserver.CommitOptions{
		Files: gitserver.Files{
			"fleet.yaml":          "targets: []\n",
			"common/app.yaml":     "kind: file\n",
			"common/app.conf":     "port = 80\n",
			"roles/web/site.yaml": "kind: unit\n",
		},
		Symlinks: map[string]string{
			"common/link.conf": "app.conf",
			"roles/web/common": "../../common",
			"escape":           "../../etc/passwd",
			"absolute":         "/etc/passwd",
			"dangling":         "nowhere",
			"loop":             "loop",
		},
	})
	r := open(t, cfg)
	poll(t, r)
	fsys, err := r.Tree(context.Background(), commit)
	if err != nil {
		t.Fatalf("Tree = %v", err)
	}
	rl, ok := fsys.(fs.ReadLinkFS)
	if !ok {
		t.Fatalf("Tree(%s) is a %T, want an fs.ReadLinkFS", commit, fsys)
	}

	t.Run("fstest", func(t *testing.T) {
		// fstest walks every path that can be opened; the links that
		// cannot be followed are left out of its view.
		sub, err := fs.Sub(fsys, "common")
		if err != nil {
			t.Fatal(err)
		}
		if err := fstest.TestFS(sub, "app.yaml", "app.conf", "link.conf"); err != nil {
			t.Error(err)
		}
		sub, err = fs.Sub(fsys, "roles")
		if err != nil {
			t.Fatal(err)
		}
		if err := fstest.TestFS(sub, "web/site.yaml"); err != nil {
			t.Error(err)
		}
	})

	reads := []struct {
		path    string
		want    string
		wantErr error
	}{
		{"fleet.yaml", "targets: []\n", nil},
		{"common/link.conf", "port = 80\n", nil},
		{"roles/web/common/app.conf", "port = 80\n", nil},
		{"roles/web/common/link.conf", "port = 80\n", nil},
		{"escape", "", pull.ErrSymlinkEscapes},
		{"absolute", "", pull.ErrSymlinkEscapes},
		{"dangling", "", fs.ErrNotExist},
		{"missing.yaml", "", fs.ErrNotExist},
		{"../x", "", fs.ErrInvalid},
		{"/fleet.yaml", "", fs.ErrInvalid},
	}
	for _, tt := range reads {
		got, err := fs.ReadFile(fsys, tt.path)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadFile(%q) = %q, %v; want an error matching %v", tt.path, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("ReadFile(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
	if _, err := fs.ReadFile(fsys, "loop"); err == nil {
		t.Errorf("ReadFile(loop) = nil error, want too many symlinks")
	}

	links := []struct{ path, want string }{
		{"common/link.conf", "app.conf"},
		{"roles/web/common", "../../common"},
		{"escape", "../../etc/passwd"},
		{"absolute", "/etc/passwd"},
	}
	for _, tt := range links {
		got, err := rl.ReadLink(tt.path)
		if err != nil || got != tt.want {
			t.Errorf("ReadLink(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
		fi, err := rl.Lstat(tt.path)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("Lstat(%q) = %v, %v; want a symlink", tt.path, fi, err)
		}
	}
	if _, err := rl.ReadLink("fleet.yaml"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("ReadLink(fleet.yaml) = %v, want fs.ErrInvalid", err)
	}
	if fi, err := fs.Stat(fsys, "roles/web/common"); err != nil || !fi.IsDir() {
		t.Errorf("Stat(roles/web/common) = %v, %v; want the directory it links to", fi, err)
	}

	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"absolute", "common", "dangling", "escape", "fleet.yaml", "loop", "roles"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("ReadDir(.) differs (-want +got):\n%s", diff)
	}
}

func TestTreeUnknownCommit(t *testing.T) {
	t.Parallel()
	repo, cfg := httpSource(t)
	repo.Commit(gitserver.Files{"a": "1"}, "one")
	r := open(t, cfg)
	poll(t, r)
	for _, c := range []string{"0123456789012345678901234567890123456789", "main", ""} {
		if _, err := r.Tree(context.Background(), c); !errors.Is(err, pull.ErrCommitNotFound) {
			t.Errorf("Tree(%q) = %v, want ErrCommitNotFound", c, err)
		}
	}
}

func TestChoose(t *testing.T) {
	t.Parallel()
	const tip, good = "tip", "good"
	offline := &pull.Error{Op: "ls-remote", Kind: pull.ErrUnreachable}
	refused := &pull.Error{Op: "ls-remote", Kind: pull.ErrAuth}
	unverified := &pull.VerifyError{Commit: tip, Reason: "unsigned"}
	tests := []struct {
		name               string
		tip                string
		pollErr, verifyErr error
		lastGood           string
		want               pull.Choice
		wantErr            error
	}{
		{"tip", tip, nil, nil, good, pull.Choice{Commit: tip, Tip: tip}, nil},
		{"first tip", tip, nil, nil, "", pull.Choice{Commit: tip, Tip: tip}, nil},
		{"offline", "", offline, nil, good, pull.Choice{Commit: good, Offline: true, Fallback: offline}, nil},
		{"offline, never good", "", offline, nil, "", pull.Choice{Offline: true, Fallback: offline}, pull.ErrNoGoodCommit},
		{"refused", "", refused, nil, good, pull.Choice{Commit: good, Fallback: refused}, nil},
		{"refused, never good", "", refused, nil, "", pull.Choice{Fallback: refused}, pull.ErrAuth},
		{"unverified", tip, nil, unverified, good, pull.Choice{Commit: good, Tip: tip, Fallback: unverified}, nil},
		{"unverified, never good", tip, nil, unverified, "", pull.Choice{Tip: tip, Fallback: unverified}, pull.ErrUnverified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pull.Choose(tt.tip, tt.pollErr, tt.verifyErr, tt.lastGood)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("Choose differs (-want +got):\n%s", diff)
			}
			if tt.wantErr == nil && err != nil {
				t.Errorf("Choose error = %v, want nil", err)
			}
			if tt.wantErr != nil && (!errors.Is(err, tt.wantErr) || !errors.Is(err, pull.ErrNoGoodCommit)) {
				t.Errorf("Choose error = %v, want ErrNoGoodCommit and %v", err, tt.wantErr)
			}
		})
	}
}
