package docker

import (
	"errors"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// TestSetUpdateMode renders a repository with fleet.yaml's update mode and
// containers that name theirs or not, and checks each container's mode and
// the errors for a tag that the mode forbids or needs.
func TestSetUpdateMode(t *testing.T) {
	const (
		pinnedNoMode   = "kind: container\nname: app-a\nimage: web\ntag: \"1.0.0\"\nupdate: {policy: semver}\n"
		followNoMode   = "kind: container\nname: app-b\nimage: web\nupdate: {policy: semver}\n"
		pinnedGit      = "kind: container\nname: app-c\nimage: web\ntag: \"1.0.0\"\nupdate: {policy: semver, mode: git}\n"
		followHost     = "kind: container\nname: app-d\nimage: web\nupdate: {policy: semver, mode: host}\n"
		pinnedNoUpdate = "kind: container\nname: app-e\nimage: web\ntag: \"1.0.0\"\n"
	)
	tests := []struct {
		name      string
		fleet     string // fleet.yaml's update line, or none
		manifests []string
		want      map[string]string // container -> mode, "" for no update
		wantErrs  []string          // files of the errors
	}{
		{"no default: host", "", []string{followNoMode, pinnedGit, followHost, pinnedNoUpdate},
			map[string]string{"app-b": "host", "app-c": "git", "app-d": "host", "app-e": ""}, nil},
		{"default host", "update: {mode: host}\n", []string{followNoMode, pinnedGit},
			map[string]string{"app-b": "host", "app-c": "git"}, nil},
		{"default git", "update: {mode: git}\n", []string{pinnedNoMode, pinnedGit, followHost, pinnedNoUpdate},
			map[string]string{"app-a": "git", "app-c": "git", "app-d": "host", "app-e": ""}, nil},
		{"default host refuses a tag with update", "", []string{pinnedNoMode, followNoMode},
			map[string]string{"app-a": "host", "app-b": "host"}, []string{"m0.yaml"}},
		{"default git needs a tag", "update: {mode: git}\n", []string{pinnedNoMode, followNoMode},
			map[string]string{"app-a": "git", "app-b": "git"}, []string{"m1.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"fleet.yaml": {Data: []byte("targets:\n  - path: .\n" + tt.fleet)}}
			for i, m := range tt.manifests {
				fsys[fmt.Sprintf("m%d.yaml", i)] = &fstest.MapFile{Data: []byte(m)}
			}
			repo, err := spec.Load(fsys, spec.Options{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			st, err := repo.Render(spec.Host{Name: "h"})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			err = SetUpdateMode(st)
			var gotErrs []string
			var es spec.Errors
			if errors.As(err, &es) {
				for _, e := range es {
					gotErrs = append(gotErrs, e.Pos.File)
				}
			} else if err != nil {
				t.Fatalf("SetUpdateMode = %v, want spec.Errors", err)
			}
			if diff := cmp.Diff(tt.wantErrs, gotErrs); diff != "" {
				t.Errorf("SetUpdateMode errors (-want +got):\n%s\n%v", diff, err)
			}
			got := map[string]string{}
			for _, r := range st.Resources {
				c := Of(r)
				got[c.Name] = ""
				if c.Update != nil {
					got[c.Name] = c.Update.Mode
				}
				if c.Follows() != (got[c.Name] == ModeHost) {
					t.Errorf("%s: Follows() = %v in mode %q", c.Name, c.Follows(), got[c.Name])
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
		})
	}
}
