package agent

// The kinds the agent converges. Each is one package that registers itself
// with converge.Register from its init function: how spec reads the kind,
// and how its driver is built. Adding a kind is writing that package and
// importing it here.
import (
	_ "github.com/outpost-gitops/outpost/internal/targets/docker"
	_ "github.com/outpost-gitops/outpost/internal/targets/file"
	_ "github.com/outpost-gitops/outpost/internal/targets/network"
	_ "github.com/outpost-gitops/outpost/internal/targets/systemd"
	_ "github.com/outpost-gitops/outpost/internal/targets/volume"
)
