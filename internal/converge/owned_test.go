package converge_test

import (
	"context"
	"slices"
	"testing"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
)

// TestOwnedAfterEachCreate checks that a pass hands over the objects it
// creates as it goes, before it converges what comes next: a pass killed in
// the middle has them recorded already.
func TestOwnedAfterEachCreate(t *testing.T) {
	ids := func(inv state.Inventory) []string {
		var out []string
		for _, id := range inv.IDs() {
			out = append(out, id.String())
		}
		return out
	}
	tests := []struct {
		name  string
		have  []*spec.Resource // converged before the pass
		want  []*spec.Resource
		apply bool
		// calls are the inventories handed over, in order.
		calls [][]string
	}{
		{
			name:  "each create, before the next kind",
			want:  []*spec.Resource{res("file:/a"), res("unit:u"), res("container:c")},
			apply: true,
			calls: [][]string{
				{"file:/a"},
				{"file:/a", "unit:u"},
				{"file:/a", "unit:u", "container:c"},
			},
		},
		{
			name:  "only what adds an object",
			have:  []*spec.Resource{res("file:/a"), res("unit:u")},
			want:  []*spec.Resource{res("file:/a", version("v2")), res("unit:u"), res("container:c")},
			apply: true,
			calls: [][]string{{"file:/a", "unit:u", "container:c"}},
		},
		{
			name:  "nothing new",
			have:  []*spec.Resource{res("file:/a"), res("unit:u")},
			want:  []*spec.Resource{res("file:/a", version("v2")), res("unit:u", version("v2"))},
			apply: true,
		},
		{
			name: "dry run",
			want: []*spec.Resource{res("file:/a"), res("unit:u")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost()
			inv := synced(h, desired(tt.have...))
			var calls [][]string
			eng := converge.New(drivers(h), converge.Options{Owned: func(got state.Inventory) {
				// What the pass created so far is on the host already.
				for _, id := range got.IDs() {
					if _, ok := h.Objects()[id]; !ok {
						t.Errorf("%s handed over before it was created", id)
					}
				}
				calls = append(calls, ids(got))
			}})
			_, err := eng.Converge(context.Background(), desired(tt.want...), inv, tt.apply)
			if err != nil {
				t.Fatalf("Converge() = %v", err)
			}
			if !slices.EqualFunc(calls, tt.calls, slices.Equal[[]string]) {
				t.Errorf("Owned calls = %v, want %v", calls, tt.calls)
			}
		})
	}
}
