// Command fleet measures the load that a fleet of Outpost agents puts on one
// Git server: many agents, each with its own clone cache, poll one
// repository served by `git http-backend` on loopback through internal/pull,
// first with nothing changing and then with one commit per interval. It
// prints requests per second, bytes and the server's CPU time for each
// phase. bench/fleet-git.sh runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-gitops/outpost/bench/gitfront"
	"github.com/outpost-gitops/outpost/internal/pull"
)

type options struct {
	agents      int
	interval    time.Duration
	duration    time.Duration
	commitEvery time.Duration
	files       int
	work        string
	server      string
	refs        int
	protocol    string
	children    int
	keepAlive   time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.agents, "agents", 500, "how many agents poll the server")
	flag.DurationVar(&o.interval, "interval", 30*time.Second, "each agent's poll interval")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long each phase lasts")
	flag.DurationVar(&o.commitEvery, "commit-every", time.Minute, "the commit interval of the second phase")
	flag.IntVar(&o.files, "files", 100, "files in the repository")
	flag.StringVar(&o.server, "server", "gitfront", "the server: gitfront (http-backend in process) or nginx (nginx + fcgiwrap + http-backend, polls at each host's splay, one phase)")
	flag.IntVar(&o.refs, "refs", 0, "hosts' notes refs in the repository (nginx)")
	flag.StringVar(&o.protocol, "protocol", "v2", "v2, or v0: the server drops the Git-Protocol header (nginx)")
	flag.IntVar(&o.children, "fcgi-children", 2, "fcgiwrap processes, each serving one request at a time (nginx)")
	flag.DurationVar(&o.keepAlive, "keepalive", 10*time.Second, "nginx's keepalive_timeout (nginx)")
	flag.StringVar(&o.work, "work", "", "a scratch `directory` (required; left for the caller to remove)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// phase is what one phase measured.
type phase struct {
	name     string
	elapsed  time.Duration
	polls    int64
	failed   int64
	changed  int64
	commits  int
	server   gitfront.Stats
	selfCPU  float64
	latency  []time.Duration
	firstErr error
}

func run(ctx context.Context, o options) error {
	if o.work == "" {
		return errors.New("-work is required")
	}
	if o.agents < 1 || o.interval <= 0 || o.duration <= 0 {
		return errors.New("-agents, -interval and -duration must be positive")
	}
	switch o.server {
	case "nginx":
		if o.protocol != "v2" && o.protocol != "v0" {
			return fmt.Errorf("-protocol %q: want v2 or v0", o.protocol)
		}
		return runNginx(ctx, o)
	case "gitfront":
	default:
		return fmt.Errorf("-server %q: want gitfront or nginx", o.server)
	}
	repos := filepath.Join(o.work, "repos")
	src := filepath.Join(o.work, "src")
	if err := makeRepo(src, repos, o.files); err != nil {
		return err
	}
	srv, err := gitfront.Start(repos, "127.0.0.1:0", nil)
	if err != nil {
		return err
	}
	defer srv.Close()
	url := "http://" + srv.Addr + "/env.git"

	agents := make([]*pull.Repo, o.agents)
	log := slog.New(slog.DiscardHandler)
	for i := range agents {
		dir := filepath.Join(o.work, "agents", fmt.Sprint(i))
		r, err := pull.Open(dir, pull.Config{URL: url, Timeout: 2 * time.Minute}, log)
		if err != nil {
			return err
		}
		agents[i] = r
	}

	var phases []phase
	// Every agent clones once, a few at a time, as a fleet that starts
	// together would.
	p, err := measure(ctx, srv, "first clone of every agent", func(p *phase) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		var mu sync.Mutex
		for _, r := range agents {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				d, res, err := pollOnce(ctx, r)
				mu.Lock()
				defer mu.Unlock()
				p.record(d, res, err)
			}()
		}
		wg.Wait()
	})
	if err != nil {
		return err
	}
	phases = append(phases, p)
	for _, commits := range []bool{false, true} {
		name := "nothing changed"
		if commits {
			name = fmt.Sprintf("one commit every %s", o.commitEvery)
		}
		p, err := measure(ctx, srv, name, func(p *phase) {
			poll(ctx, o, agents, src, commits, p)
		})
		if err != nil {
			return err
		}
		phases = append(phases, p)
	}
	report(o, phases)
	return nil
}

// measure runs f as one phase and takes the server's counters around it.
func measure(ctx context.Context, srv *gitfront.Server, name string, f func(p *phase)) (phase, error) {
	p := phase{name: name}
	srv.Reset()
	cpu0 := selfCPU()
	start := time.Now()
	f(&p)
	p.elapsed = time.Since(start)
	p.server = srv.Stats()
	p.selfCPU = selfCPU() - cpu0
	if err := ctx.Err(); err != nil {
		return p, err
	}
	// A loaded server refuses some polls, and a real agent polls again
	// later: failures are counted and reported, unless nothing got through.
	if p.polls == 0 || p.failed == p.polls {
		return p, fmt.Errorf("%s: %d of %d polls failed: %v", name, p.failed, p.polls, p.firstErr)
	}
	return p, nil
}

func (p *phase) record(d time.Duration, res pull.Result, err error) {
	p.polls++
	p.latency = append(p.latency, d)
	if err != nil {
		p.failed++
		if p.firstErr == nil {
			p.firstErr = err
		}
		return
	}
	if res.Changed {
		p.changed++
	}
}

func pollOnce(ctx context.Context, r *pull.Repo) (time.Duration, pull.Result, error) {
	start := time.Now()
	res, err := r.Poll(ctx)
	return time.Since(start), res, err
}

// poll lets every agent poll every interval for the phase's duration, the
// agents' first polls spread evenly over the first interval as jitter
// spreads a real fleet; with commits, one commit lands every commitEvery.
func poll(ctx context.Context, o options, agents []*pull.Repo, src string, commits bool, p *phase) {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i, r := range agents {
		offset := time.Duration(int64(o.interval) * int64(i) / int64(len(agents)))
		wg.Go(func() { pollAt(ctx, r, start.Add(offset), o.interval, &mu, p) })
	}
	if commits && o.commitEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(o.commitEvery)
			defer tick.Stop()
			for n := 1; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := commit(ctx, src, n); err != nil {
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					p.failed++
					if p.firstErr == nil {
						p.firstErr = err
					}
					mu.Unlock()
					return
				}
				mu.Lock()
				p.commits++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// pollAt polls r at first and then every interval until ctx ends, and
// records each poll in p under mu.
func pollAt(ctx context.Context, r *pull.Repo, first time.Time, interval time.Duration, mu *sync.Mutex, p *phase) {
	next := first
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d, res, err := pollOnce(ctx, r)
		if ctx.Err() != nil {
			return
		}
		mu.Lock()
		p.record(d, res, err)
		mu.Unlock()
		next = next.Add(interval)
		t.Reset(time.Until(next))
	}
}

// makeRepo writes n files and their manifests into a work tree src and
// pushes them to the bare repository repos/env.git.
func makeRepo(src, repos string, n int) error {
	for i := range n {
		d := filepath.Join(src, fmt.Sprintf("d%02d", i/100))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		name := fmt.Sprintf("f%05d.conf", i)
		if err := os.WriteFile(filepath.Join(d, name), fmt.Appendf(nil, "name = %s\nindex = %d\n", name, i), 0o644); err != nil {
			return err
		}
		m, err := os.OpenFile(filepath.Join(d, "files.yaml"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintf(m, "kind: file\npath: /srv/bench/%s/%s\nsource: %s\nmode: \"0644\"\n---\n", filepath.Base(d), name, name)
		if err := m.Close(); err != nil {
			return err
		}
	}
	bare := filepath.Join(repos, "env.git")
	for _, args := range [][]string{
		{"-C", src, "init", "-q", "-b", "main"},
		{"-C", src, "add", "-A"},
		{"-C", src, "commit", "-q", "-m", "initial"},
		{"clone", "-q", "--bare", src, bare},
		{"-C", src, "remote", "add", "origin", bare},
	} {
		if err := git(context.Background(), args...); err != nil {
			return err
		}
	}
	return nil
}

// commit changes one file and pushes straight into the bare repository,
// so that commits never count as requests of the server.
func commit(ctx context.Context, src string, n int) error {
	f := filepath.Join(src, "d00", "f00000.conf")
	if err := os.WriteFile(f, fmt.Appendf(nil, "name = f00000.conf\nrevision = %d\n", n), 0o644); err != nil {
		return err
	}
	if err := git(ctx, "-C", src, "commit", "-q", "-am", fmt.Sprintf("change %d", n)); err != nil {
		return err
	}
	return git(ctx, "-C", src, "push", "-q", "origin", "main")
}

func git(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@localhost",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@localhost")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("git %v: %w: %s", args, err, out)
	}
	return nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func report(o options, phases []phase) {
	fmt.Printf("%d agents, a poll every %s, %d files, each phase %s\n\n", o.agents, o.interval, o.files, o.duration)
	fmt.Println("| phase | wall s | polls | failed | saw a new commit | commits | requests | requests/s | bytes out | bytes in | bytes/poll | http-backend CPU s | server CPU % of a core | poll p50 ms | poll p95 ms |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, p := range phases {
		secs := p.elapsed.Seconds()
		fmt.Printf("| %s | %.1f | %d | %d | %d | %d | %d | %.1f | %d | %d | %.0f | %.2f | %.1f | %.0f | %.0f |\n",
			p.name, secs, p.polls, p.failed, p.changed, p.commits, p.server.Requests,
			float64(p.server.Requests)/secs, p.server.BytesOut, p.server.BytesIn,
			float64(p.server.BytesOut+p.server.BytesIn)/float64(max(p.polls, 1)),
			p.server.BackendCPU, 100*p.server.BackendCPU/secs,
			ms(percentile(p.latency, 0.5)), ms(percentile(p.latency, 0.95)))
	}
	for _, p := range phases {
		if p.firstErr != nil {
			fmt.Printf("\n%s: the first of %d failed polls: %v\n", p.name, p.failed, p.firstErr)
		}
	}
	fmt.Println()
	fmt.Println("| phase | agents' CPU s (this process: go-git clients and the HTTP front) | per poll ms |")
	fmt.Println("| --- | ---: | ---: |")
	for _, p := range phases {
		fmt.Printf("| %s | %.2f | %.2f |\n", p.name, p.selfCPU, 1000*p.selfCPU/float64(max(p.polls, 1)))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
