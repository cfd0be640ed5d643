package converge

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// Env is what a kind's driver is built from.
type Env struct {
	// Root is --root: the directory that stands for / (empty for the
	// real host). A kind that cannot honour it refuses to build.
	Root string
	// StateDir is the agent's state directory.
	StateDir string
	Logger   *slog.Logger
	// Recorded reports whether the state records an object as applied by
	// Outpost, as it stands when asked: the daemon's inventory grows as it
	// runs.
	Recorded func(spec.ID) bool
}

// NewDriverFunc builds the driver of one kind. The agent calls it only when
// the kind is desired or owned, so a host without Docker still converges
// its files, and again after it failed: the engine may have come back.
type NewDriverFunc func(ctx context.Context, env Env) (Driver, error)

// Kind is a kind as the agent knows it: how spec reads it, and how its
// driver is built.
type Kind struct {
	spec.KindDef
	NewDriver NewDriverFunc
}

var registered struct {
	sync.Mutex
	drivers map[spec.Kind]NewDriverFunc
}

// Register registers a kind with spec and its driver with the agent. A
// kind's package calls it once, from init: that one line is all it takes
// to add a kind.
func Register(k Kind) {
	if k.NewDriver == nil {
		panic(fmt.Sprintf("converge.Register: kind %q has no driver", k.Name))
	}
	spec.Register(k.KindDef)
	registered.Lock()
	defer registered.Unlock()
	if registered.drivers == nil {
		registered.drivers = map[spec.Kind]NewDriverFunc{}
	}
	registered.drivers[k.Name] = k.NewDriver
}

// Drivers returns how to build the driver of each registered kind. The map
// is the caller's.
func Drivers() map[spec.Kind]NewDriverFunc {
	registered.Lock()
	defer registered.Unlock()
	return maps.Clone(registered.drivers)
}
