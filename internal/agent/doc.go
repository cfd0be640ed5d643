// Package agent owns the agent's configuration (/etc/outpost/agent.yaml) and
// the wiring of Outpost's parts into the operations that the command line
// runs: validate a repository, and diff or apply it once on this host. The
// daemon loop (timers, watchers, the control socket) comes later and lives
// here too.
//
// agent may import every other Outpost package; nothing imports agent except
// cmd/agent.
package agent

// Version is Outpost's version, set at build time with
// -ldflags "-X github.com/outpost-gitops/outpost/internal/agent.Version=v1.2.3".
var Version = "dev"
