package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// The nginx mode serves the repository as production does: Debian's nginx
// and fcgiwrap in front of git http-backend (gitserver.ServeNginx), with
// -refs hosts' notes refs packed beside the branch, and each agent polls at
// its splay offset, as `outpost run` does. Bytes are counted on the wire by
// a TCP proxy between the agents and nginx; the server's CPU is read from
// /proc for nginx's and fcgiwrap's process groups, whose reaped children
// (every http-backend and upload-pack) show in cutime and cstime.

// nginxPhase is what one phase of the nginx mode measured.
type nginxPhase struct {
	phase
	wire      int64
	serverCPU time.Duration
	loadStart string
	loadEnd   string
}

func runNginx(ctx context.Context, o options) (err error) {
	tb := &benchTB{dir: o.work}
	defer tb.cleanup()
	// gitserver reports a broken setup through Fatalf; benchTB turns it
	// into a panic that ends here as an error.
	defer func() {
		r := recover()
		if f, ok := r.(fatal); ok {
			err = f
		} else if r != nil {
			panic(r)
		}
	}()
	root := gitserver.NewRoot(tb)
	repo := root.Create("env")
	files := gitserver.Files{}
	for i := range o.files {
		files[fmt.Sprintf("d%02d/f%05d.conf", i/100, i)] = fmt.Sprintf("index = %d\n", i)
	}
	head := repo.Commit(files, "initial")
	if o.refs > 0 {
		names := make([]string, o.refs)
		for i := range names {
			names[i] = fmt.Sprintf("refs/notes/outpost/%s", hostName(i))
		}
		repo.CreateRefs(names, head)
	}
	// An agent keeps its connection alive after a poll, and this process
	// holds two descriptors for it (the agent's and the proxy's): a short
	// keep-alive keeps 10,000 agents under the 20,000 open files that the
	// test machine allows a process. Each request holds a second
	// connection of nginx, to fcgiwrap.
	srv := root.ServeNginxWith(gitserver.NginxOptions{Connections: 2*o.agents + 256, Children: o.children, KeepAlive: o.keepAlive})
	proxy := gitserver.NewProxy(tb, srv.Addr)
	url := "http://" + proxy.Addr + "/env.git"
	if o.protocol == "v0" {
		url = "http://" + proxy.Addr + "/v0/env.git"
	}

	agents, err := openClones(ctx, o, url)
	if err != nil {
		return err
	}
	p, err := measureNginx(ctx, srv, proxy, "nothing changed", func(p *phase) {
		pollSplayed(ctx, o, agents, p)
	})
	if err != nil {
		return err
	}
	reportNginx(o, agents[0].Protocol(), p)
	return nil
}

// openClones clones once and gives every agent its own clone cache, a copy
// of that first one made of hard links: a fleet that has already cloned,
// without 10,000 first clones before the phase. Git's objects are never
// written in place, and an unchanged poll writes nothing.
func openClones(ctx context.Context, o options, url string) ([]*pull.Repo, error) {
	log := slog.New(slog.DiscardHandler)
	cfg := pull.Config{URL: url, Timeout: 2 * time.Minute}
	dirs := filepath.Join(o.work, "agents")
	first := filepath.Join(dirs, hostName(0))
	r, err := pull.Open(first, cfg, log)
	if err != nil {
		return nil, err
	}
	if _, err := r.Poll(ctx); err != nil {
		return nil, fmt.Errorf("first clone: %w", err)
	}
	agents := []*pull.Repo{r}
	for i := 1; i < o.agents; i++ {
		dir := filepath.Join(dirs, hostName(i))
		if err := linkTree(first, dir); err != nil {
			return nil, err
		}
		r, err := pull.Open(dir, cfg, log)
		if err != nil {
			return nil, err
		}
		agents = append(agents, r)
	}
	return agents, nil
}

// linkTree makes dst a copy of src whose files are hard links.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		return os.Link(path, to)
	})
}

func hostName(i int) string { return fmt.Sprintf("host-%05d", i) }

// splay is internal/agent's: a host's fixed place in the interval, the
// FNV-1a hash of its name modulo the interval, counted from the epoch.
func splay(host string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(host))
	return time.Duration(h.Sum64() % uint64(interval))
}

// pollSplayed lets every agent poll at its splay slots for the phase's
// duration: the first slot after the phase starts, then every interval.
func pollSplayed(ctx context.Context, o options, agents []*pull.Repo, p *phase) {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, r := range agents {
		off := splay(hostName(i), o.interval)
		since := (start.UnixNano() - int64(off)) % int64(o.interval)
		next := start.Add((o.interval - time.Duration(since)) % o.interval)
		wg.Go(func() { pollAt(ctx, r, next, o.interval, &mu, p) })
	}
	wg.Wait()
}

func measureNginx(ctx context.Context, srv *gitserver.NginxServer, proxy *gitserver.Proxy, name string, f func(p *phase)) (nginxPhase, error) {
	np := nginxPhase{phase: phase{name: name}, loadStart: loadavg()}
	cpu0, err := srv.CPU()
	if err != nil {
		return np, err
	}
	proxy.WaitIdle()
	proxy.ResetBytes()
	self0 := selfCPU()
	start := time.Now()
	f(&np.phase)
	np.elapsed = time.Since(start)
	proxy.WaitIdle()
	np.wire = proxy.Bytes()
	np.selfCPU = selfCPU() - self0
	cpu1, err := srv.CPU()
	if err != nil {
		return np, err
	}
	np.serverCPU = cpu1 - cpu0
	np.loadEnd = loadavg()
	if err := ctx.Err(); err != nil {
		return np, err
	}
	if np.polls == 0 || np.failed == np.polls {
		return np, fmt.Errorf("%s: %d of %d polls failed: %v", name, np.failed, np.polls, np.firstErr)
	}
	return np, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func reportNginx(o options, proto pull.Protocol, p nginxPhase) {
	fmt.Printf("%d agents, a poll every %s at each host's splay, %d notes refs, %d files, polls speak %s, phase %s\n\n",
		o.agents, o.interval, o.refs, o.files, proto, o.duration)
	fmt.Println("| phase | wall s | polls | failed | polls/s | wire bytes/poll | server CPU s | server CPU % of a core | poll p50 ms | p90 ms | p99 ms | max ms | agents' CPU s | load at start | load at end |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
	secs := p.elapsed.Seconds()
	fmt.Printf("| %s | %.1f | %d | %d | %.1f | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s |\n",
		p.name, secs, p.polls, p.failed, float64(p.polls)/secs, float64(p.wire)/float64(max(p.polls, 1)),
		p.serverCPU.Seconds(), 100*p.serverCPU.Seconds()/secs,
		ms(percentile(p.latency, 0.5)), ms(percentile(p.latency, 0.9)), ms(percentile(p.latency, 0.99)),
		ms(percentile(p.latency, 1)), p.selfCPU, p.loadStart, p.loadEnd)
	if p.firstErr != nil {
		fmt.Printf("\nthe first of %d failed polls: %v\n", p.failed, p.firstErr)
	}
}

// fatal is a setup failure that gitserver reported through Fatalf.
type fatal struct{ error }

// benchTB lets the tool use the test servers of test/e2e/gitserver
// outside a test: their temporary directories live under the tool's work
// directory, their cleanups run when the tool ends, and a Fatalf panics
// with a fatal that runNginx returns. The embedded interface is nil: the
// servers call only the methods below.
type benchTB struct {
	testing.TB
	dir      string
	mu       sync.Mutex
	n        int
	cleanups []func()
}

func (t *benchTB) Helper()                           {}
func (t *benchTB) Name() string                      { return "fleet" }
func (t *benchTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *benchTB) Errorf(format string, args ...any) { t.Fatalf(format, args...) }
func (t *benchTB) Fatalf(format string, args ...any) {
	panic(fatal{fmt.Errorf(format, args...)})
}
func (t *benchTB) Fatal(args ...any) { panic(fatal{errors.New(fmt.Sprint(args...))}) }

func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *benchTB) TempDir() string {
	t.mu.Lock()
	t.n++
	d := filepath.Join(t.dir, fmt.Sprintf("tmp%03d", t.n))
	t.mu.Unlock()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	return d
}

func (t *benchTB) cleanup() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
