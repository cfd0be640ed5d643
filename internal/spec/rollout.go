package spec

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// Rollout is fleet.yaml's rollout: the waves a new commit goes through, in
// order. A host applies a commit only once every earlier wave has passed
// on it (internal/rollout decides); hosts that no wave picks form a last,
// implicit wave.
type Rollout struct {
	Waves []Wave
	// Alive is how recent a host's latest note must be for the host to
	// count; 0 means three of the deciding host's poll intervals.
	Alive time.Duration
	Pos   Pos
}

// Wave is one wave of a rollout.
type Wave struct {
	// Name is the wave's name, "wave N" (from 1) when the file gives none.
	Name string
	sel  *selector
	// Share, when not 0, picks that share (0 to 1] of the hosts that no
	// earlier wave picked, by a stable hash of the host's name.
	Share float64
	// MinHealthy is how many of the wave's hosts must be healthy on the
	// commit, for Soak, before the next wave may take it.
	MinHealthy Quota
	Soak       time.Duration
	// MaxFailed is how many of the wave's hosts may fail the commit
	// before it is halted for every later wave.
	MaxFailed int
	Pos       Pos
}

// Quota is a count of hosts, or a share of them.
type Quota struct {
	Count int
	// Percent, when not 0, is a share of the wave's hosts, in percent.
	Percent float64
}

// Of returns how many of n hosts the quota asks for: a share rounds up,
// and a count is at most n (a wave whose hosts are offline does not hold
// the rollout forever).
func (q Quota) Of(n int) int {
	if q.Percent > 0 {
		return int(math.Ceil(q.Percent * float64(n) / 100))
	}
	return min(q.Count, n)
}

// String writes the quota as fleet.yaml does.
func (q Quota) String() string {
	if q.Percent > 0 {
		return strconv.FormatFloat(q.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(q.Count)
}

// WaveOf returns the index of the wave that picks h: the first wave whose
// selector matches it or whose share its hash falls in, else len(Waves),
// the implicit last wave. It depends on h and the waves alone, so every
// host computes the same waves without knowing the fleet.
func (r *Rollout) WaveOf(h Host) int {
	u := hostHash(h.Name)
	lo := 0.0
	for i, w := range r.Waves {
		if w.sel != nil {
			if w.sel.matches(h) {
				return i
			}
			continue
		}
		hi := lo + (1-lo)*w.Share
		if u >= lo && u < hi {
			return i
		}
		lo = hi
	}
	return len(r.Waves)
}

// WaveName names wave i, the implicit last wave included.
func (r *Rollout) WaveName(i int) string {
	if i < len(r.Waves) {
		return r.Waves[i].Name
	}
	return "the rest"
}

// Selector describes how the wave picks its hosts, for people.
func (w Wave) Selector() string {
	if w.sel == nil {
		return strconv.FormatFloat(w.Share*100, 'f', -1, 64) + "% of the remaining hosts"
	}
	var parts []string
	for _, k := range sortedKeys(w.sel.labels) {
		parts = append(parts, k+"="+w.sel.labels[k])
	}
	if len(w.sel.names) > 0 {
		parts = append(parts, "names "+strings.Join(w.sel.names, ","))
	}
	return strings.Join(parts, ", ")
}

// hostHash maps a host's name to [0, 1), the same on every host.
func hostHash(name string) float64 {
	sum := sha256.Sum256([]byte("outpost-rollout\x00" + name))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// Window is a maintenance window: new commits are applied only while one
// of a host's windows is open.
type Window struct {
	// Cron is the schedule of the window's starts, five fields.
	Cron     string
	Duration time.Duration
	// Location is the time zone the schedule is read in (UTC when the
	// file names none).
	Location *time.Location
	// RepairOutside says whether drift is repaired outside the window
	// (drift_outside: repair, the default) or only reported (warn).
	RepairOutside bool
	Pos           Pos
	schedule      cron.Schedule
	sel           *selector
}

// A schedule is read on the wall clock of the window's time zone, as cron
// reads it: a start that falls in the hour skipped when clocks go forward
// comes when the clocks have moved (02:30 is 03:30 that night), and a start
// in the hour repeated when they go back comes once. The schedule itself
// runs on a clock without daylight saving (wall times written as UTC), and
// each start is placed in the zone by time.Date.

// dstSlack is more than any zone's daylight saving shift: how far apart
// a wall time and the instant it names may be, compared with UTC.
const dstSlack = 3 * time.Hour

// wall returns t's wall clock in loc, written as UTC.
func wall(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// instant returns the instant of wall time w (written as UTC) in loc.
func instant(w time.Time, loc *time.Location) time.Time {
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
}

// maxStarts bounds the starts a window check walks (a start every minute
// for a window of a week is 10,080).
const maxStarts = 20000

// OpenAt reports whether the window is open at t: it started at most
// Duration before t.
func (w Window) OpenAt(t time.Time) bool {
	s := w.schedule.Next(wall(t.Add(-w.Duration), w.Location).Add(-dstSlack))
	end := wall(t, w.Location).Add(dstSlack)
	for i := 0; i < maxStarts && !s.IsZero() && !s.After(end); i++ {
		if at := instant(s, w.Location); !at.After(t) && t.Before(at.Add(w.Duration)) {
			return true
		}
		s = w.schedule.Next(s)
	}
	return false
}

// NextOpen returns the first start of the window after t (zero if none).
func (w Window) NextOpen(t time.Time) time.Time {
	s := w.schedule.Next(wall(t, w.Location).Add(-dstSlack))
	for i := 0; i < maxStarts && !s.IsZero(); i++ {
		if at := instant(s, w.Location); at.After(t) {
			return at
		}
		s = w.schedule.Next(s)
	}
	return time.Time{}
}

// Windows returns the maintenance windows that apply to h: those of
// fleet.yaml's windows whose selector matches it, and those of the targets
// that select it. None means that changes are always allowed.
func (rp *Repo) Windows(h Host) []Window {
	if rp.fleet == nil {
		return nil
	}
	var out []Window
	for _, w := range rp.fleet.windows {
		if w.sel == nil || w.sel.matches(h) {
			out = append(out, w)
		}
	}
	for _, t := range rp.fleet.targets {
		if len(t.windows) > 0 && t.selects(h) {
			out = append(out, t.windows...)
		}
	}
	return out
}

// Rollout returns fleet.yaml's rollout, or nil when it has none.
func (rp *Repo) Rollout() *Rollout {
	if rp.fleet == nil {
		return nil
	}
	return rp.fleet.rollout
}

// rollout reads fleet.yaml's rollout: a mapping with waves (and alive,
// max_failed), or the list of waves alone.
func (d *Decoder) rollout(g Field) *Rollout {
	r := &Rollout{Pos: posOf(d.file, g.At)}
	waves := g
	maxFailed := 0
	if g.Val == nil || g.Val.Kind != yaml.SequenceNode {
		f, ok := d.Fields(g.At, "rollout", FieldSet([]string{"waves", "alive", "max_failed"}))
		if !ok {
			return nil
		}
		if h, ok := f["alive"]; ok {
			r.Alive = d.duration(h, "rollout.alive")
			if r.Alive == 0 {
				d.Errorf(h.At, "rollout.alive: must be more than 0; leave it out for three poll intervals")
			}
		}
		if h, ok := f["max_failed"]; ok {
			maxFailed = d.count(h, "rollout.max_failed")
		}
		if waves, ok = f["waves"]; !ok {
			d.Errorf(g.At, "rollout: missing field \"waves\"")
			return nil
		}
	}
	if waves.Val == nil || waves.Val.Kind != yaml.SequenceNode || len(waves.Val.Content) == 0 {
		d.Errorf(waves.At, "rollout.waves: must be a list of waves, got %s", Describe(waves.Val))
		return nil
	}
	names := map[string]bool{}
	for i, n := range waves.Val.Content {
		w := d.wave(n, i, maxFailed)
		if names[w.Name] {
			d.Errorf(n, "rollout: wave %q named twice", w.Name)
		}
		names[w.Name] = true
		r.Waves = append(r.Waves, w)
	}
	return r
}

// wave reads one wave.
func (d *Decoder) wave(n *yaml.Node, i, maxFailed int) Wave {
	w := Wave{Name: fmt.Sprintf("wave %d", i+1), MinHealthy: Quota{Percent: 100}, MaxFailed: maxFailed, Pos: posOf(d.file, n)}
	f, ok := d.Fields(n, "wave", FieldSet([]string{"name", "selector", "share", "min_healthy", "soak", "max_failed"}))
	if !ok {
		return w
	}
	if h, ok := f["name"]; ok {
		if s, ok := d.Str(h, "name"); ok {
			if err := CheckPrintable(s); s == "" || err != nil {
				d.Errorf(h.At, "name: a wave's name must be printable and not empty")
			}
			w.Name = s
		}
	}
	sel, hasSel := f["selector"]
	share, hasShare := f["share"]
	switch {
	case hasSel && hasShare:
		d.Errorf(share.Key, "wave: selector and share exclude each other: a wave picks hosts by labels or by a share")
	case hasSel:
		if s, ok := d.selector(sel); ok {
			w.sel = &s
		}
	case hasShare && share.Val != nil && share.Val.ShortTag() == "!!int":
		d.Errorf(share.At, "share: must be a share such as \"10%%\", not a count: a wave of named hosts has a selector")
	case hasShare:
		w.Share = d.quota(share, "share").Percent / 100
	default:
		d.Errorf(n, "wave: missing field \"selector\" or \"share\"")
	}
	if h, ok := f["min_healthy"]; ok {
		w.MinHealthy = d.quota(h, "min_healthy")
	}
	if h, ok := f["soak"]; ok {
		w.Soak = d.duration(h, "soak")
	}
	if h, ok := f["max_failed"]; ok {
		w.MaxFailed = d.count(h, "max_failed")
	}
	return w
}

// quota reads a count (3) or a share ("10%").
func (d *Decoder) quota(f Field, what string) Quota {
	if f.Val != nil && f.Val.Kind == yaml.ScalarNode && f.Val.ShortTag() == "!!int" {
		return Quota{Count: d.count(f, what)}
	}
	s, ok := d.Str(f, what)
	if !ok {
		return Quota{}
	}
	num, isShare := strings.CutSuffix(strings.TrimSpace(s), "%")
	p, err := strconv.ParseFloat(num, 64)
	if !isShare || err != nil || math.IsNaN(p) || p <= 0 || p > 100 {
		d.Errorf(f.At, "%s: %q: want a count such as 3 or a share such as \"10%%\" (more than 0%%, at most 100%%)", what, s)
		return Quota{}
	}
	return Quota{Percent: p}
}

// count reads an integer that is not negative.
func (d *Decoder) count(f Field, what string) int {
	v, ok := d.Int(f, what)
	if ok && (v < 0 || v > 1_000_000) {
		d.Errorf(f.At, "%s: %d must be between 0 and 1000000", what, v)
		return 0
	}
	return int(v)
}

// duration reads a duration such as "10m".
func (d *Decoder) duration(f Field, what string) time.Duration {
	s, ok := d.Str(f, what)
	if !ok {
		return 0
	}
	v, err := ParseDuration(s)
	if err != nil {
		d.Errorf(f.At, "%s: %v", what, err)
		return 0
	}
	return v
}

// windows reads a list of maintenance windows; top says whether they are
// fleet.yaml's own, which may have a selector, or a target's.
func (d *Decoder) windows(g Field, top bool) []Window {
	if g.Val == nil || g.Val.Kind != yaml.SequenceNode || len(g.Val.Content) == 0 {
		d.Errorf(g.At, "windows: must be a list of windows, got %s", Describe(g.Val))
		return nil
	}
	var out []Window
	for _, n := range g.Val.Content {
		if w, ok := d.window(n, top); ok {
			out = append(out, w)
		}
	}
	return out
}

// cronParser reads the five fields of a cron schedule, or a descriptor
// such as @daily.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// window reads one maintenance window.
func (d *Decoder) window(n *yaml.Node, top bool) (Window, bool) {
	w := Window{Location: time.UTC, RepairOutside: true, Pos: posOf(d.file, n)}
	known := []string{"cron", "duration", "timezone", "drift_outside"}
	if top {
		known = append(known, "selector")
	}
	f, ok := d.Fields(n, "window", FieldSet(known))
	if !ok {
		return w, false
	}
	ok = true
	for _, req := range []string{"cron", "duration"} {
		if _, has := f[req]; !has {
			d.Errorf(n, "window: missing field %q", req)
			ok = false
		}
	}
	if !ok {
		return w, false
	}
	if h, has := f["timezone"]; has {
		if s, good := d.Str(h, "timezone"); good {
			loc, err := time.LoadLocation(s)
			if err != nil || s == "" || s == "Local" {
				d.Errorf(h.At, "timezone: %q is not a time zone of this host's database, such as \"Europe/Berlin\" or \"UTC\"", s)
				ok = false
			} else {
				w.Location = loc
			}
		}
	}
	if s, good := d.Str(f["cron"], "cron"); good {
		w.Cron = s
		sched, err := cronParser.Parse(s)
		switch {
		case strings.Contains(s, "TZ=") || strings.HasPrefix(s, "@every"):
			d.Errorf(f["cron"].At, "cron: %q: name the time zone in timezone, and give a schedule of starts, not @every", s)
			ok = false
		case err != nil:
			d.Errorf(f["cron"].At, "cron: %q: %v (five fields: minute hour day-of-month month day-of-week)", s, err)
			ok = false
		default:
			w.schedule = sched
		}
	}
	w.Duration = d.duration(f["duration"], "duration")
	if w.Duration <= 0 {
		d.Errorf(f["duration"].At, "duration: a window must last more than 0")
		ok = false
	}
	if h, has := f["drift_outside"]; has {
		switch s, _ := d.Str(h, "drift_outside"); s {
		case "repair":
		case "warn":
			w.RepairOutside = false
		default:
			d.Errorf(h.At, "drift_outside: %q: want repair or warn", s)
		}
	}
	if h, has := f["selector"]; has {
		if s, good := d.selector(h); good {
			w.sel = &s
		}
	}
	return w, ok
}
