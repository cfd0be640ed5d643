package docker

import (
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// TestUpdateCutAfterCreate leaves what an update killed after it created
// the new container leaves: the old container stopped and set aside, the
// new one under the name, started or not. The next CheckApply of the same
// spec keeps the new one and removes the old one, which would otherwise
// stay for good: nothing else looks for it until the next update.
func TestUpdateCutAfterCreate(t *testing.T) {
	for _, started := range []bool{true, false} {
		name := map[bool]string{true: "new one started", false: "new one created"}[started]
		t.Run(name, func(t *testing.T) {
			d := newDriverT(t, Options{})
			cli := rawClient(t)
			ctx := testCtx(t)
			name := uniqueName(t, "cut")
			r := web(name)
			apply(t, d, r)
			old := inspect(t, cli, name).ID

			// The update to tag 2, cut short before the old one is removed.
			Of(r).Tag = "2"
			if err := cli.ContainerStop(ctx, old, container.StopOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := cli.ContainerRename(ctx, old, name+asideSuffix); err != nil {
				t.Fatal(err)
			}
			digest, err := d.ensureImage(ctx, d.log, Of(r))
			if err != nil {
				t.Fatal(err)
			}
			id, err := d.createStart(ctx, Of(r), specHash(Of(r)), digest)
			if err != nil {
				t.Fatal(err)
			}
			if !started {
				if err := cli.ContainerStop(ctx, id, container.StopOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			ch, err := d.CheckApply(ctx, r, false)
			if err != nil || ch.Action != spec.ActionUpdate || !slices.Contains(ch.Fields, asideField(name)) {
				t.Errorf("CheckApply(dry run) = %v, %v; want an update that removes the old container", ch, err)
			}
			if ch := apply(t, d, r); ch.Action != spec.ActionUpdate {
				t.Errorf("CheckApply = %v, want update", ch)
			}
			list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelResource+"="+name))})
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].ID != id {
				var ids []string
				for _, c := range list {
					ids = append(ids, c.ID[:12])
				}
				t.Errorf("owned containers = %v, want only the new %.12s", ids, id)
			}
			if in := inspect(t, cli, name); in.ID != id || !in.State.Running {
				t.Errorf("container %s = %.12s running %v, want the new %.12s running", name, in.ID, in.State.Running, id)
			}
			noop(t, d, r)
		})
	}
}
