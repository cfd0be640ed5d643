package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/state"
)

// Status is what `outpost status` shows: the daemon's view of this host.
type Status struct {
	Host string `json:"host"`
	// Source is "daemon" when the running agent answered, "state" when it
	// was read from the state directory.
	Source   string `json:"source"`
	Commit   string `json:"commit,omitempty"`
	LastGood string `json:"last_good,omitempty"`
	// Digest and LastGoodDigest are, for an OCI source, the manifest
	// digests of the artifacts that Commit and LastGood were packed from.
	Digest         string `json:"digest,omitempty"`
	LastGoodDigest string `json:"last_good_digest,omitempty"`
	// Result is the outcome of the last pass. After a rollback it is
	// rolled-back: Commit is then the last good revision, which the host
	// runs again, and RolledBack the revision that failed.
	Result           string `json:"result,omitempty"`
	RolledBack       string `json:"rolled_back,omitempty"`
	RolledBackDigest string `json:"rolled_back_digest,omitempty"`
	LastError        string `json:"last_error,omitempty"`
	Suspended        bool   `json:"suspended"`
	Offline          bool   `json:"offline"`

	LastPoll      time.Time `json:"last_poll,omitzero"`
	LastPollError string    `json:"last_poll_error,omitempty"`
	LastConverge  time.Time `json:"last_converge,omitzero"`
	HealthyAt     time.Time `json:"healthy_at,omitzero"`

	// DriftRepaired counts the repairs since the daemon started;
	// DriftDetected the drift it reported and left alone (drift: warn, or
	// suspended).
	DriftRepaired int `json:"drift_repaired"`
	DriftDetected int `json:"drift_detected"`

	Failed map[string]state.Failure `json:"failed,omitempty"`
	// Held is the newer commit that the host holds back, and why: its
	// rollout wave waits, the commit was halted, or a maintenance window
	// is closed.
	Held *state.Held `json:"held,omitempty"`
	// WindowOpen and NextWindow say, for a host with maintenance windows,
	// whether one is open now and when the next opens.
	WindowOpen bool             `json:"window_open,omitempty"`
	NextWindow time.Time        `json:"next_window,omitzero"`
	Resources  []ResourceStatus `json:"resources"`

	// windows are the maintenance windows of the revision in force.
	windows []spec.Window
}

// ResourceStatus is one resource in force.
type ResourceStatus struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	State   string `json:"state"` // pending, converged, failed
	Error   string `json:"error,omitempty"`
	Repairs int    `json:"repairs"`
	Drifted bool   `json:"drifted,omitempty"`
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// request is one control command, carried out by the loop.
type request struct {
	op    string
	reply chan Status
}

// handle carries out a control request in the loop goroutine. A request
// that polls the source is answered when that poll has landed and its
// pass has run.
func (d *daemon) handle(ctx context.Context, req request) {
	switch req.op {
	case "suspend":
		d.st.Suspended = true
		d.save()
		d.log.Info("changes suspended")
	case "resume":
		d.st.Suspended = false
		d.save()
		d.log.Info("changes resumed")
	case "retry":
		d.st.Failed = nil
		d.save()
		// Image tags marked bad on this host are forgotten too: the next
		// registry poll may choose them again.
		if d.desired != nil {
			for _, c := range following(d.desired) {
				if err := d.images.store.ClearBad(c.Name, ""); err != nil {
					d.log.Warn("bad image tags not cleared", "container", c.Name, "err", err)
				}
			}
		}
		d.log.Info("retrying failed revisions and image tags")
	}
	if req.op == "suspend" {
		d.answer(ctx, req)
		return
	}
	d.waiting = append(d.waiting, req)
	d.startPoll(ctx, req.op == "retry")
}

// answer finishes a request after its poll, and replies with the status.
func (d *daemon) answer(ctx context.Context, req request) {
	if req.op == "reconcile" || req.op == "resume" {
		d.full(ctx)
	}
	d.setStatus(func(s *Status) {
		s.Suspended = d.st.Suspended
		s.Failed = cloneFailed(d.st.Failed)
	})
	req.reply <- d.snapshot()
}

func cloneFailed(m map[string]state.Failure) map[string]state.Failure {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]state.Failure, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// controlHandler serves the control socket: GET /v1/status, and POST
// /v1/{reconcile,suspend,resume,retry}, each answering with the status.
func (d *daemon) controlHandler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, d.snapshot())
	})
	for _, op := range []string{"reconcile", "suspend", "resume", "retry"} {
		mux.HandleFunc("POST /v1/"+op, func(w http.ResponseWriter, r *http.Request) {
			req := request{op: op, reply: make(chan Status, 1)}
			select {
			case d.requests <- req:
			case <-r.Context().Done():
				return
			case <-ctx.Done():
				http.Error(w, "stopping", http.StatusServiceUnavailable)
				return
			}
			select {
			case s := <-req.reply:
				writeJSON(w, s)
			case <-r.Context().Done():
			case <-ctx.Done():
				http.Error(w, "stopping", http.StatusServiceUnavailable)
			}
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// listenControl listens on a unix socket that only root can reach: the
// socket is 0600, in a directory created 0700 when missing. A directory that
// exists is left as it is: --socket /tmp/x.sock must not close /tmp to the
// host's users (systemd creates /run/outpost 0700 itself). A stale socket
// from a killed agent is replaced; the state directory's lock already proves
// no other agent runs.
func listenControl(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
		// MkdirAll's mode passes through the umask; the socket's own
		// directory is made 0700 whatever it is.
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// ErrNoDaemon is matched by errors.Is when no agent answers on the socket.
var ErrNoDaemon = errors.New("no agent is running")

// Control sends one command to the daemon over its socket: "status", or
// "reconcile", "suspend", "resume", "retry". It waits for the answer, up to
// ctx's deadline.
func Control(ctx context.Context, socket, op string) (*Status, error) {
	if socket == "" {
		socket = DefaultSocket
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", socket)
		},
	}}
	defer client.CloseIdleConnections()
	method := http.MethodPost
	if op == "status" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://outpost/v1/"+op, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var ne *net.OpError
		switch {
		case errors.Is(err, fs.ErrPermission):
			// An agent may well run: the socket is root's. Saying
			// there is none would send the user the wrong way.
			return nil, fmt.Errorf("control socket %s: %w", socket, fs.ErrPermission)
		case errors.As(err, &ne) && ne.Op == "dial":
			return nil, fmt.Errorf("%w on %s: %w", ErrNoDaemon, socket, err)
		}
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: the agent answered %s: %s", op, resp.Status, bytes.TrimSpace(body))
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &s, nil
}

// StatusFromState reads this host's status from the state directory, for
// `outpost status` when no agent runs.
func StatusFromState(cfg *Config) (*Status, error) {
	st, err := state.New(cfg.StateDir).Load()
	if err != nil {
		return nil, err
	}
	s := &Status{
		Host:      cfg.Host.Name,
		Source:    "state",
		Commit:    st.Commit,
		LastGood:  st.LastGood,
		Suspended: st.Suspended,
		Failed:    st.Failed,
		Held:      st.Held,
		Resources: []ResourceStatus{},
	}
	if st.RolledBack != "" && st.Commit == st.LastGood {
		s.RolledBack, s.Result = st.RolledBack, ResultRolledBack
	}
	if isOCIURL(cfg.Source.URL) {
		s.Commit, s.Digest = ociCommits(cfg.StateDir, st.Commit)
		s.LastGood, s.LastGoodDigest = ociCommits(cfg.StateDir, st.LastGood)
		if s.RolledBack != "" {
			s.RolledBack, s.RolledBackDigest = ociCommits(cfg.StateDir, s.RolledBack)
		}
	}
	for _, id := range st.Inventory.IDs() {
		s.Resources = append(s.Resources, ResourceStatus{Kind: string(id.Kind), Name: id.Name, State: "owned"})
	}
	return s, nil
}
