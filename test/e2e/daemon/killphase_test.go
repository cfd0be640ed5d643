package daemon

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// The phases of the converge of a new commit, in order, as the agent's log
// (at -vv) shows where each ends: fetch (until "applying a new revision"),
// files, units, container (until the last of each kind converged), gate
// (the health gate, until the outcome) and record (the state, the note and
// the full pass of reconcile, until reconcile answers).
var killPhases = []string{"fetch", "files", "units", "container", "gate", "record"}

// phasesOf returns the phases that a version of kind goes through.
func phasesOf(kind string) []string {
	out := []string{"fetch", "files"}
	if strings.Contains(kind, "units") {
		out = append(out, "units")
	}
	if strings.Contains(kind, "container") {
		out = append(out, "container")
	}
	if kind != "files" {
		// Only units and containers have a health to wait for.
		out = append(out, "gate")
	}
	return append(out, "record")
}

// logLine is one line of the agent's log.
type logLine struct {
	at   time.Time
	text string
}

func parseLog(log string) []logLine {
	var out []logLine
	for _, text := range strings.Split(log, "\n") {
		ts, _, ok := strings.Cut(strings.TrimPrefix(text, "time="), " ")
		if !ok || !strings.HasPrefix(text, "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		out = append(out, logLine{at: at, text: text})
	}
	return out
}

// phaseProgress reads the log of one converge of a new commit: when each
// phase ended (absent when it did not), and how many resources of each kind
// converged.
func phaseProgress(log string) (ends map[string]time.Time, converged map[string]int) {
	ends, converged = map[string]time.Time{}, map[string]int{}
	applying := false
	for _, l := range parseLog(log) {
		switch {
		case strings.Contains(l.text, ` msg="applying a new revision"`):
			if !applying {
				ends["fetch"] = l.at
			}
			applying = true
		case !applying:
		case strings.Contains(l.text, " msg=converged "):
			for _, kind := range []string{"file", "unit", "container"} {
				if strings.Contains(l.text, " resource="+kind+":") {
					converged[kind]++
					ends[map[string]string{"file": "files", "unit": "units", "container": "container"}[kind]] = l.at
				}
			}
		case strings.Contains(l.text, " msg=outcome "):
			if _, ok := ends["gate"]; !ok {
				ends["gate"] = l.at
			}
		}
	}
	return ends, converged
}

// phaseWindows are the windows of time in which each phase of a kind of
// version ran, averaged over the converges measured: the fetch from the
// request of reconcile, the other phases from the start of the apply (the
// moment the log says "applying a new revision" and the status lists the
// resources as pending), which the test can see, so that a kill aimed at a
// short phase is not lost in the jitter of the fetch.
//
// The files are written in a few milliseconds, less than the jitter of that
// start: a kill aimed at them waits for the first file that the agent
// creates in their directory, and falls in the time that the writes took.
type phaseWindows struct {
	// ends sums the end of each phase by kind and phase.
	ends map[string]map[string]time.Duration
	// writes sums the time from the first write of a managed file to the
	// last.
	writes map[string]time.Duration
	n      map[string]int
}

func newPhaseWindows() *phaseWindows {
	return &phaseWindows{ends: map[string]map[string]time.Duration{}, writes: map[string]time.Duration{}, n: map[string]int{}}
}

// Where the moment of a kill is counted from.
const (
	fromReconcile = "the reconcile"
	fromApply     = "the apply's start"
	fromWrite     = "the first file written"
)

// add measures one converge of kind, requested at start and answered at
// done, whose log is log and whose managed files were written within
// writes.
func (w *phaseWindows) add(kind, log string, start, done time.Time, writes time.Duration) error {
	ends, _ := phaseProgress(log)
	ends["record"] = done
	applying, ok := ends["fetch"]
	if !ok {
		return fmt.Errorf("the log of a %s version does not say when its apply began", kind)
	}
	if w.ends[kind] == nil {
		w.ends[kind] = map[string]time.Duration{}
	}
	sum := map[string]time.Duration{"fetch": applying.Sub(start)}
	prev := applying
	for _, p := range phasesOf(kind)[1:] {
		end, ok := ends[p]
		if !ok {
			return fmt.Errorf("the log of a %s version does not show the end of its %s phase", kind, p)
		}
		// The log's clock has milliseconds only.
		if end.Before(prev) {
			end = prev
		}
		sum[p] = end.Sub(applying)
		prev = end
	}
	for p, d := range sum {
		w.ends[kind][p] += d
	}
	w.writes[kind] += writes
	w.n[kind]++
	return nil
}

// phaseWeight is how much likelier a kill is aimed at a phase than at the
// fetch: the replace of the container, whose every step leaves a different
// set of containers, and the units get more.
var phaseWeight = map[string]int{"container": 3, "units": 2}

// pick draws a phase of kind and a moment in its window, the phases by
// phaseWeight (not by their length, so that the short ones, the files and
// the units, are hit as often as the long ones). The moment counts from the request of
// reconcile for the fetch, from the first file written for the files, and
// from the start of the apply for the other phases.
func (w *phaseWindows) pick(rng *rand.Rand, kind string) (phase string, at time.Duration, from string) {
	phases := phasesOf(kind)
	var all []string
	for _, p := range phases {
		for range max(phaseWeight[p], 1) {
			all = append(all, p)
		}
	}
	phase = all[rng.IntN(len(all))]
	n := time.Duration(max(w.n[kind], 1))
	within := func(d time.Duration) time.Duration { return time.Duration(rng.Int64N(int64(max(d, 0)) + 1)) }
	switch phase {
	case "fetch":
		return phase, within(w.ends[kind]["fetch"] / n), fromReconcile
	case "files":
		return phase, within(w.writes[kind] / n), fromWrite
	}
	var start time.Duration
	for _, p := range phases[1:] {
		end := w.ends[kind][p] / n
		if p == phase {
			break
		}
		start = end
	}
	return phase, start + within(w.ends[kind][phase]/n-start), fromApply
}

func (w *phaseWindows) String() string {
	var b strings.Builder
	kinds := make([]string, 0, len(w.ends))
	for k := range w.ends {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		n := time.Duration(w.n[k])
		fmt.Fprintf(&b, "\n  %s (%d measured): fetch %v, writes of the files %v; from the apply's start:",
			k, w.n[k], (w.ends[k]["fetch"] / n).Round(time.Millisecond), (w.writes[k] / n).Round(100*time.Microsecond))
		for _, p := range phasesOf(k)[1:] {
			fmt.Fprintf(&b, " %s until %v", p, (w.ends[k][p] / time.Duration(w.n[k])).Round(time.Millisecond))
		}
	}
	return b.String()
}

// killPhase tells which phase of next's converge a kill interrupted, from
// the agent's log since the round began (log) and the containers found
// after the kill (cs). In the container phase it says what the replace had
// done: the old container stopped, kept aside, the new one created or
// running.
func killPhase(log string, next *killState, cs []ownedContainer, name string) string {
	ends, converged := phaseProgress(log)
	kind := killKind(next.v)
	for _, p := range phasesOf(kind) {
		switch p {
		case "fetch", "gate":
			if _, ok := ends[p]; ok {
				continue
			}
		case "files":
			if converged["file"] == killFiles {
				continue
			}
		case "units":
			if converged["unit"] == killUnits {
				continue
			}
		case "container":
			if converged["container"] == 1 {
				continue
			}
			var seen []string
			for _, c := range cs {
				what := c.State
				switch {
				case c.Name != name:
					what = "aside " + what
				case c.Env == next.web:
					what = "new " + what
				default:
					what = "old " + what
				}
				seen = append(seen, what)
			}
			sort.Strings(seen)
			return "container (" + strings.Join(seen, ", ") + ")"
		}
		return p
	}
	return "record"
}
