// Package systemd owns Outpost's unit target: it writes systemd unit files and
// their drop-ins, and enables, starts, stops and restarts the units over
// systemd's D-Bus API (coreos/go-systemd).
//
// Every file it writes starts with the Marker line, and it never changes or
// removes a unit file or drop-in without it. The marker also records a hash
// of the unit's spec, which tells a change made by hand (drift: the spec is
// the one applied) from a desired change (a new spec). systemd reloads its
// configuration only when a file changed: once per pass when the engine calls
// Prepare, else once per unit whose files changed.
//
// systemd imports spec, atomicfile and its client libraries. It must not
// import converge or another target: it satisfies converge's interfaces by
// shape.
package systemd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// MarkerPrefix starts the first line of every file the driver writes; a file
// without it is not Outpost's.
const MarkerPrefix = "# Managed by Outpost"

// DefaultUnitDir is where unit files are written.
const DefaultUnitDir = "/etc/systemd/system"

// DefaultSettle is how long a service must stay active to be healthy.
const DefaultSettle = time.Second

// Errors that callers test with errors.Is.
var (
	// ErrNotOwned: a unit file or drop-in that Outpost did not write is in
	// the way. It is left as it is.
	ErrNotOwned = errors.New("not managed by outpost")
	// ErrInvalidName: the unit name is not a plain systemd unit name.
	ErrInvalidName = errors.New("invalid unit name")
	// ErrShadowsVendor: a package installed a unit of this name, which
	// the unit would replace, and the resource does not say override.
	ErrShadowsVendor = errors.New("would replace a packaged unit")
)

// DefaultVendorDirs are where packages install unit files. Debian's merged
// /usr makes them one directory; both are read for hosts without it.
var DefaultVendorDirs = []string{"/usr/lib/systemd/system", "/lib/systemd/system"}

// JobError is a systemd job that did not end in "done": the job's result and
// the unit's own account of why.
type JobError struct {
	Unit string
	Op   string // start, stop, restart, reload
	// JobResult is systemd's job result: failed, timeout, canceled,
	// dependency, skipped.
	JobResult string
	// UnitResult is the unit's Result property (exit-code, signal,
	// timeout, core-dump, start-limit-hit...), empty when unknown.
	UnitResult string
	// ExitStatus is a service's main process exit status, when it exited.
	ExitStatus int
	// Log holds the unit's last journal lines, when they could be read.
	Log string
}

func (e *JobError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: job %s", e.Op, e.Unit, e.JobResult)
	if e.UnitResult != "" && e.UnitResult != "success" {
		fmt.Fprintf(&b, ", unit result %s", e.UnitResult)
	}
	if e.ExitStatus != 0 {
		fmt.Fprintf(&b, ", exit status %d", e.ExitStatus)
	}
	if e.Log != "" {
		fmt.Fprintf(&b, "; last log lines:\n%s", e.Log)
	}
	return b.String()
}

// Options configure a Driver.
type Options struct {
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
	// UnitDir is where unit files are written; it must be a directory that
	// systemd loads units from. DefaultUnitDir when empty.
	UnitDir string
	// Settle is how long a service must stay active before it is healthy;
	// DefaultSettle when zero.
	Settle time.Duration
	// VendorDirs are where packages install unit files: a unit of a name
	// found there is refused unless it says override. DefaultVendorDirs
	// when nil.
	VendorDirs []string
	// BackupDir keeps the originals of the unit files and drop-ins that
	// adopt: true took over, to put back when the unit is pruned. It
	// should be in the agent's state directory; without it, adopting is
	// refused.
	BackupDir string
}

// Driver converges unit resources. Its methods are safe for concurrent use:
// file writes, reloads and enabling are serialised (waiting for that ends
// with ctx), while jobs of different units run side by side.
type Driver struct {
	conn   *sdbus.Conn
	log    *slog.Logger
	dir    string
	settle time.Duration
	vendor []string
	backup string

	// lock serialises file changes, reloads and enabling; a channel so
	// that waiting for it ends with ctx.
	lock chan struct{}
	// prepared holds, between Prepare and the unit's CheckApply, what
	// Prepare changed in a unit's files.
	prepared map[string]fileChange
	// snap holds the unit states that Prepare read, each used once, by
	// the pass's CheckApply. Watch drops a unit's entry before it reports
	// the unit, so a repair never decides on a state read before the event.
	snapMu sync.Mutex
	snap   map[string]snapEntry
	// reloads counts daemon-reloads, for tests and benchmarks.
	reloads atomic.Int64
}

type snapEntry struct {
	st unitState
	at time.Time
}

// snapTTL bounds how old a snapshot entry may be when it is used.
const snapTTL = 10 * time.Second

// takeSnap returns and drops the snapshot entry of name, if it is fresh.
func (d *Driver) takeSnap(name string) (unitState, bool) {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	e, ok := d.snap[name]
	delete(d.snap, name)
	return e.st, ok && time.Since(e.at) < snapTTL
}

func (d *Driver) dropSnap(name string) {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	delete(d.snap, name)
}

// New connects to the system bus's systemd. The connection lives until
// Close, whatever becomes of ctx.
func New(ctx context.Context, opts Options) (*Driver, error) {
	// The library closes the connection when the context it was opened
	// with is done.
	conn, err := sdbus.NewSystemConnectionContext(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	// Job results (JobRemoved) are only signalled to subscribed clients.
	if err := conn.Subscribe(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to systemd: %w", err)
	}
	d := &Driver{
		conn:     conn,
		log:      opts.Logger,
		dir:      opts.UnitDir,
		settle:   opts.Settle,
		vendor:   opts.VendorDirs,
		backup:   opts.BackupDir,
		prepared: map[string]fileChange{},
		lock:     make(chan struct{}, 1),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.dir == "" {
		d.dir = DefaultUnitDir
	}
	if d.settle == 0 {
		d.settle = DefaultSettle
	}
	if d.vendor == nil {
		d.vendor = DefaultVendorDirs
	}
	return d, nil
}

// Close closes the connection to systemd.
func (d *Driver) Close() error {
	d.conn.Close()
	return nil
}

// Reloads returns how many daemon-reloads the driver asked for.
func (d *Driver) Reloads() int { return int(d.reloads.Load()) }

func (d *Driver) acquire(ctx context.Context) error {
	select {
	case d.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the unit driver: %w", ctx.Err())
	}
}

func (d *Driver) release() { <-d.lock }

// checkName accepts a plain unit name with a unit type suffix.
func checkName(name string) error {
	dot := strings.LastIndexByte(name, '.')
	if name == "" || len(name) > 255 || dot <= 0 || dot == len(name)-1 {
		return fmt.Errorf("unit %q: %w", name, ErrInvalidName)
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune(":_.\\@-", c):
		default:
			return fmt.Errorf("unit %q: %w", name, ErrInvalidName)
		}
	}
	return nil
}

func checkDropin(name string) error {
	if !strings.HasSuffix(name, ".conf") || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("drop-in %q: %w", name, ErrInvalidName)
	}
	return nil
}

// specHash hashes everything the spec says about a unit, so that the hash
// in the marker changes exactly when the desired unit does.
func specHash(u *Unit) string {
	h := sha256.New()
	fmt.Fprintf(h, "name %q\ncontent %q\n", u.Name, u.Content)
	names := make([]string, 0, len(u.Dropins))
	for n := range u.Dropins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "dropin %q %q\n", n, u.Dropins[n])
	}
	enabled := "unset"
	if u.Enabled != nil {
		enabled = fmt.Sprint(*u.Enabled)
	}
	fmt.Fprintf(h, "enabled %s\nstate %q\nreload %v\n", enabled, u.State, u.Reload)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// markerLine is the first line of a unit file; hash may be empty (drop-ins).
func markerLine(hash string) string {
	if hash == "" {
		return MarkerPrefix + "; do not edit."
	}
	return MarkerPrefix + " (spec " + hash + "); do not edit."
}

// parseMarker splits a file into its marker's hash and its body; owned is
// false when the first line is not a marker.
func parseMarker(data []byte) (owned bool, hash string, body []byte) {
	line, rest, _ := strings.Cut(string(data), "\n")
	if !strings.HasPrefix(line, MarkerPrefix) {
		return false, "", data
	}
	if _, after, ok := strings.Cut(line, "(spec "); ok {
		hash, _, _ = strings.Cut(after, ")")
	}
	return true, hash, []byte(rest)
}

func render(hash string, body []byte) []byte {
	return append([]byte(markerLine(hash)+"\n"), body...)
}

func (d *Driver) unitPath(name string) string      { return filepath.Join(d.dir, name) }
func (d *Driver) dropinDir(name string) string     { return filepath.Join(d.dir, name+".d") }
func (d *Driver) dropinPath(name, f string) string { return filepath.Join(d.dropinDir(name), f) }
