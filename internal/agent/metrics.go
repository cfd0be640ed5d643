package agent

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are the daemon's Prometheus metrics, served in the text exposition
// format only when metrics.listen is set. Six counters and gauges do not
// justify the client library's dependencies in a binary that ships to small
// devices, so the format is written here.
type metrics struct {
	converges    counter
	changes      counter
	failures     counter
	driftRepairs counter
	lastPoll     gauge

	mu     sync.Mutex
	commit string
}

type counter struct{ n atomic.Int64 }

func (c *counter) Inc()         { c.n.Add(1) }
func (c *counter) Value() int64 { return c.n.Load() }

type gauge struct{ v atomic.Int64 } // unix seconds

func (g *gauge) SetToCurrentTime() { g.v.Store(time.Now().Unix()) }

func newMetrics() *metrics { return &metrics{} }

func (m *metrics) appliedCommit(rev string) {
	m.mu.Lock()
	m.commit = rev
	m.mu.Unlock()
}

func (m *metrics) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		write := func(name, typ, help string, v int64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
		}
		write("outpost_converges_total", "counter", "Converge passes run.", m.converges.Value())
		write("outpost_changes_total", "counter", "Resources changed by converge passes.", m.changes.Value())
		write("outpost_failed_revisions_total", "counter", "Revisions refused, failed or rolled back.", m.failures.Value())
		write("outpost_drift_repairs_total", "counter", "Drifted resources repaired from watcher events.", m.driftRepairs.Value())
		write("outpost_last_successful_poll_timestamp_seconds", "gauge", "When the source was last polled successfully.", m.lastPoll.v.Load())
		m.mu.Lock()
		rev := m.commit
		m.mu.Unlock()
		if rev != "" {
			fmt.Fprintf(w, "# HELP outpost_applied_commit_info The applied revision, as a label.\n# TYPE outpost_applied_commit_info gauge\noutpost_applied_commit_info{commit=%s} 1\n", strconv.Quote(rev))
		}
	})
}
