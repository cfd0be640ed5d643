package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
	"golang.org/x/sys/unix"
)

// The bad network of TestLossyNetwork. The kernel has no netem qdisc, so
// loss is iptables' statistic match in the host's namespace (real packet
// loss: TCP retransmits) and latency is a userspace relay that holds every
// chunk in each direction (gitserver.Relay).
const (
	lossRate     = 0.3
	linkDelay    = 2 * time.Second
	gitInterval  = 10 * time.Second
	imagesPoll   = 35 * time.Second // images.interval: above the 30 s least spacing even when jittered
	regSpacing   = 30 * time.Second // the least time between two polls of a registry
	netHostName  = "edge-lossy"
	quickNetwork = 90 * time.Second
)

// TestLossyNetwork runs a host for OUTPOST_NETWORK_DURATION (90s by
// default, 10m for the full run) behind a link that loses 30% of its packets
// each way and delays everything by 2 s each way, with the link down for a
// while in the middle, while commits arrive every 20 s (30 s in a long run),
// a new image tag is pushed and drift is made by hand. The host must apply
// the commits as it fetches them and the last one once the link is good,
// repair the drift whatever the link, move its container to the new tag and
// never leave it for a tag it cannot fetch, and never poll the Git server or
// the registry more often than its interval and backoff allow.
func TestLossyNetwork(t *testing.T) {
	t.Parallel()
	dur := networkDuration(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatalf("iptables is required (Debian package iptables): %v", err)
	}
	commitEvery := 20 * time.Second
	if dur >= 5*time.Minute {
		commitEvery = 30 * time.Second
	}
	driftEvery := 30 * time.Second
	// The link goes down at half the run, but only once the first registry
	// poll (an images interval in) has had time to go through the bad
	// link, so that a short run sees the new tag arrive before it.
	dropAt, dropFor := max(dur/2, imagesPoll+20*time.Second), min(dur/6, 2*time.Minute)

	n := newTestNet(t)
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	unit := uniqueName("e2e-net-") + ".service"
	name := uniqueName("e2e-net-")
	imgRepo := name
	image := reg.Repo(imgRepo)
	v100 := pushVersion(t, imgRepo, "1.0.0")
	cleanContainers(t, name)

	commits := []*netCommit{{n: 0, at: time.Now()}}
	commits[0].hash = repo.Commit(netFiles(0, unit, name, image), "commit 0")

	// Git: agent -> veth (loss) -> relay on this side (delay) -> counter ->
	// git http-backend.
	gitURL := serveGitOn(t, root, "127.0.0.1:0")
	gitCount := newCountingProxy(t, listenTCP(t, "127.0.0.1:0"), gitURL, gitClass)
	gitRelay := gitserver.NewRelay(t, listenTCP(t, n.Local+":0"), dialTCP(gitCount.Addr), 0)
	// Registry: agent -> relay on the namespace's loopback, at the
	// registry's own address so that the agent speaks plain HTTP to it
	// and the Docker engine (outside the namespace) pulls the same names
	// directly (delay) -> veth (loss) -> counter on this side -> registry.
	regCount := newCountingProxy(t, listenTCP(t, n.Local+":0"), "http://"+reg.Host(), registryClass)
	regRelay := gitserver.NewRelay(t, n.listen(t, reg.Host()), n.dialer(regCount.Addr), 0)

	h := host.Start(t, host.Options{BinDir: binDir, NetworkNamespacePath: n.Path()})
	cfg := agentConfig("http://"+gitRelay.Addr+"/env.git", netHostName, gitInterval, 2*time.Minute) +
		fmt.Sprintf("images:\n  interval: %s\n", imagesPoll)
	a := newAgent(t, h, cfg)
	a.start()
	a.waitStatus(3*time.Minute, "the first commit applied", func(s *status) bool {
		return s.Commit == commits[0].hash && s.Result == "applied"
	})
	eventually(t, 2*time.Minute, "the container runs 1.0.0", func() error {
		return wantImage(name, image, v100)
	})

	// The faults, for dur.
	setLoss(t, n, lossRate)
	gitRelay.SetDelay(linkDelay)
	regRelay.SetDelay(linkDelay)
	faulty := true
	linkUp := true
	healNetwork := func() {
		if !linkUp {
			n.SetLink(t, true)
			linkUp = true
		}
		setLoss(t, n, 0)
		gitRelay.SetDelay(0)
		regRelay.SetDelay(0)
		faulty = false
	}
	defer func() {
		if faulty {
			healNetwork()
		}
	}()
	start := time.Now()
	t.Logf("faults on for %v: %.0f%% loss each way, %v each way, link down from %v for %v", dur, lossRate*100, linkDelay, dropAt, dropFor)

	v110 := pushVersion(t, imgRepo, "1.1.0")
	var v120 string
	var (
		running    = newImageWatch(v100, v110)
		drifts     []*netDrift
		applied    []string // commits in the order the host reported them applied
		lastCommit = ""
		nextCommit = start.Add(commitEvery)
		nextDrift  = start.Add(driftEvery / 2)
	)
	byHash := map[string]*netCommit{commits[0].hash: commits[0]}
	sample := func(now time.Time) {
		if s, err := a.control("status"); err == nil && s.Source == "daemon" {
			if s.Result == "applied" && s.Commit != lastCommit {
				lastCommit = s.Commit
				applied = append(applied, s.Commit)
				if c := byHash[s.Commit]; c != nil && c.appliedAt.IsZero() {
					c.appliedAt = now
				}
			}
		}
		running.sample(name, image)
		for _, d := range drifts {
			if d.repairedAt.IsZero() && d.repaired(h) {
				d.repairedAt = now
			}
		}
	}
	// The faults last dur, and longer (two images intervals at most) until
	// 1.2.0 is pushed: on a loaded machine the registry polls through the
	// bad link can take most of a short run to reach the move to 1.1.0,
	// and the host must then meet 1.2.0 with the faults still on.
	faultsOn := func(el time.Duration) bool {
		return el < dur || (v120 == "" && el < dur+2*imagesPoll)
	}
	for now := time.Now(); faultsOn(now.Sub(start)); now = time.Now() {
		el := now.Sub(start)
		if linkUp && el >= dropAt && el < dropAt+dropFor {
			n.SetLink(t, false)
			linkUp = false
			t.Logf("%5.1fs link down", el.Seconds())
			nextDrift = now.Add(5 * time.Second) // drift while the link is down
		}
		if !linkUp && el >= dropAt+dropFor {
			n.SetLink(t, true)
			linkUp = true
			t.Logf("%5.1fs link up", el.Seconds())
		}
		if !now.Before(nextCommit) {
			c := &netCommit{n: len(commits), at: now}
			c.hash = repo.Commit(netFiles(c.n, unit, name, image), fmt.Sprintf("commit %d", c.n))
			commits = append(commits, c)
			byHash[c.hash] = c
			nextCommit = nextCommit.Add(commitEvery)
		}
		if !now.Before(nextDrift) {
			d := makeDrift(t, h, len(drifts), unit, now)
			d.linkDown = !linkUp
			drifts = append(drifts, d)
			nextDrift = nextDrift.Add(driftEvery)
		}
		// Once the container runs 1.1.0, push a newer tag that the
		// registry never serves: polls fail, and the container stays.
		if v120 == "" && running.switchedAt() > 0 {
			regCount.failPath("/manifests/1.2.0")
			v120 = pushVersion(t, imgRepo, "1.2.0")
			t.Logf("%5.1fs pushed 1.2.0, which the registry never serves to the host", el.Seconds())
		}
		sample(now)
		time.Sleep(time.Second - time.Since(now)%time.Second)
	}
	end := time.Now()
	healNetwork()
	t.Logf("faults off after %v", end.Sub(start).Round(time.Second))

	// After the faults, the last commit converges within a bound: a fetch
	// still waiting on a connection that the faults stalled gives up at
	// its timeout, then a backoff and a poll interval at most, and the
	// apply.
	last := commits[len(commits)-1]
	convergeBound := pull.DefaultTimeout + 2*gitInterval + 30*time.Second
	deadline := time.Now().Add(convergeBound)
	for last.appliedAt.IsZero() && time.Now().Before(deadline) {
		sample(time.Now())
		time.Sleep(time.Second)
	}
	// The host must have tried 1.2.0 (its polls cut) while it was sampled.
	tried := func() int { return regCount.count("/manifests/1.2.0") }
	deadline = time.Now().Add(2 * imagesPoll)
	for v120 != "" && tried() == 0 && time.Now().Before(deadline) {
		sample(time.Now())
		time.Sleep(time.Second)
	}
	for i := 0; i < 5; i++ { // a few more samples of the container
		sample(time.Now())
		time.Sleep(time.Second)
	}

	// 1. Commits.
	if last.appliedAt.IsZero() {
		t.Errorf("the last commit %d (%s) was not applied within %v of the faults' end; applied: %v", last.n, short(last.hash), convergeBound, shortAll(applied))
	}
	var delays, covered []time.Duration
	appliedDuring := 0
	for i, c := range commits[1:] {
		// The time until the host ran this commit or a newer one.
		for _, later := range commits[1+i:] {
			if !later.appliedAt.IsZero() {
				covered = append(covered, later.appliedAt.Sub(c.at))
				break
			}
		}
		if c.appliedAt.IsZero() {
			continue
		}
		delays = append(delays, c.appliedAt.Sub(c.at))
		if c.appliedAt.Before(end) {
			appliedDuring++
		}
	}
	if appliedDuring == 0 {
		t.Errorf("no commit was applied while the link was lossy and slow (%d made)", len(commits)-1)
	}
	// The host never goes back to an older commit.
	for i := 1; i < len(applied); i++ {
		prev, cur := byHash[applied[i-1]], byHash[applied[i]]
		if prev != nil && cur != nil && cur.n < prev.n {
			t.Errorf("the host applied commit %d after commit %d", cur.n, prev.n)
		}
	}

	// 2. Drift.
	for _, d := range drifts {
		if d.repairedAt.IsZero() {
			t.Errorf("drift %d (%s, link down: %v) was never repaired", d.n, d.what, d.linkDown)
		} else if got := d.repairedAt.Sub(d.at); got > driftBound {
			t.Errorf("drift %d (%s, link down: %v) took %v to repair, more than %v", d.n, d.what, d.linkDown, got.Round(time.Second), driftBound)
		}
	}

	// 3. The container.
	if err := running.check(); err != nil {
		t.Error(err)
	}
	if running.switched.IsZero() || running.switched.After(end) {
		t.Errorf("the container did not move to 1.1.0 while the link was bad (%v after the push)", running.switchedAt().Round(time.Second))
	}
	if v120 == "" {
		t.Errorf("1.2.0 was never pushed: the container did not run 1.1.0")
	} else if tried() == 0 {
		t.Errorf("the host never asked for 1.2.0's manifest")
	}

	// 4. No spinning.
	gitPolls := maxPolls(gitInterval, time.Minute)
	gitMinutes := gitCount.perMinute(start, end)
	regMinutes := regCount.perMinute(start, end)
	// A poll is an ls-refs in protocol v2 (GET info/refs and POST
	// git-upload-pack) and, for a new commit, a fetch (GET info/refs and
	// POST git-upload-pack).
	checkPerMinute(t, "git GET info/refs", gitMinutes["info/refs"], 2*gitPolls)
	checkPerMinute(t, "git requests", sumClasses(gitMinutes), 4*gitPolls)
	// A registry is never polled twice within 30 s, and one poll runs at
	// a time: at most 2 polls start in a minute, and one more may still
	// be running from the minute before. Each request is tried at most 5
	// times; a poll lists the tags, heads the best tag and reads its
	// manifest and configuration, each after a /v2/ check.
	regPolls := int(time.Minute/regSpacing) + 1
	checkPerMinute(t, "registry tag lists", regMinutes["tags"], regPolls*5)
	checkPerMinute(t, "registry requests", sumClasses(regMinutes), regPolls*8*5)

	// The figures.
	s := a.mustControl("status")
	repairs := 0
	for _, d := range drifts {
		if !d.repairedAt.IsZero() {
			repairs++
		}
	}
	t.Logf("load average: %s", loadAverage())
	t.Logf("commits: %d made during the faults, %d applied (%d before the faults ended); commit to applied: median %v, max %v",
		len(commits)-1, len(delays), appliedDuring, median(delays).Round(100*time.Millisecond), slices.Max(append(delays, 0)).Round(100*time.Millisecond))
	t.Logf("each commit: %s", commitTimes(commits[1:], start))
	t.Logf("commit to it or a newer one applied: median %v, max %v",
		median(covered).Round(100*time.Millisecond), slices.Max(append(covered, 0)).Round(100*time.Millisecond))
	t.Logf("drift: %d made, %d repaired (status: %d repaired); repair times %v", len(drifts), repairs, s.DriftRepaired, driftTimes(drifts))
	t.Logf("container: 1.1.0 running %v after the push; samples without a running container: %d; requests for 1.2.0's manifest, all cut: %d",
		running.switchedAt().Round(time.Second), running.down, tried())
	t.Logf("git per minute (bound %d polls): info/refs %v, upload-pack %v, all %v; max %d, median %g",
		gitPolls, gitMinutes["info/refs"], gitMinutes["upload-pack"], sumClasses(gitMinutes), slices.Max(sumClasses(gitMinutes)), medianInt(sumClasses(gitMinutes)))
	t.Logf("registry per minute: tag lists %v, all %v; max %d, median %g",
		regMinutes["tags"], sumClasses(regMinutes), slices.Max(sumClasses(regMinutes)), medianInt(sumClasses(regMinutes)))
	t.Logf("relay connections: git %d, registry %d", gitRelay.Conns(), regRelay.Conns())
}

// driftBound is how long drift may stay unrepaired: it needs no network,
// only the loop's attention, which a slow network must not hold.
const driftBound = 30 * time.Second

// networkDuration reads OUTPOST_NETWORK_DURATION.
func networkDuration(t testing.TB) time.Duration {
	v := os.Getenv("OUTPOST_NETWORK_DURATION")
	if v == "" {
		return quickNetwork
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute {
		t.Fatalf("OUTPOST_NETWORK_DURATION=%q: want a duration of at least 1m", v)
	}
	return d
}

// netFiles is commit n of the lossy network's repository: a file that says
// n, a unit whose environment changes every other commit, and the container
// that follows the registry.
func netFiles(n int, unit, name, image string) gitserver.Files {
	return gitserver.Files{
		"app.yaml": fileManifest(managedFile, fmt.Sprintf("commit %d\n", n)),
		"unit.yaml": fmt.Sprintf(`kind: unit
name: %s
content: |
  [Unit]
  Description=Outpost end-to-end test service
  [Service]
  Environment=REVISION=%d
  ExecStart=/bin/sleep infinity
  [Install]
  WantedBy=multi-user.target
enabled: true
state: running
`, unit, n/2),
		"web.yaml": fmt.Sprintf(`kind: container
name: %s
image: %s
update: {policy: semver}
health: {cmd: ["true"], interval: 1s, retries: 1}
stop_timeout: 1s
`, name, image),
	}
}

// pushVersion pushes the busybox web image, made distinct by its version,
// as repo:version and returns its digest.
func pushVersion(t testing.TB, repo, version string) string {
	t.Helper()
	img := registry.Image(t, registry.Config{
		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-p", "8080"},
		Env:        []string{"VERSION=" + version},
		Health:     &registry.Health{Test: []string{"CMD", "true"}, Interval: time.Second, Retries: 1},
	})
	return reg.Push(t, repo, img, version)
}

// netCommit is one commit of the run.
type netCommit struct {
	n         int
	hash      string
	at        time.Time
	appliedAt time.Time
}

// netDrift is one change made by hand.
type netDrift struct {
	n          int
	what       string
	at         time.Time
	repairedAt time.Time
	linkDown   bool
	repaired   func(*host.Host) bool
}

// makeDrift edits the managed file (even n) or stops the unit (odd n).
func makeDrift(t testing.TB, h *host.Host, n int, unit string, now time.Time) *netDrift {
	t.Helper()
	d := &netDrift{n: n, at: now}
	if n%2 == 0 {
		d.what = "file edited"
		h.WriteFile(t, managedFile, []byte("edited by hand\n"), 0o644)
		d.repaired = func(h *host.Host) bool {
			got, err := readHostFile(h, managedFile)
			return err == nil && strings.HasPrefix(got, "commit ")
		}
	} else {
		d.what = "unit stopped"
		h.Run(t, "systemctl", "stop", unit)
		d.repaired = func(h *host.Host) bool { return unitActive(h, unit) == "active" }
	}
	return d
}

func commitTimes(cs []*netCommit, start time.Time) string {
	var out []string
	for _, c := range cs {
		s := "not applied (superseded)"
		if !c.appliedAt.IsZero() {
			s = "applied after " + c.appliedAt.Sub(c.at).Round(100*time.Millisecond).String()
		}
		out = append(out, fmt.Sprintf("%d at %v %s", c.n, c.at.Sub(start).Round(time.Second), s))
	}
	return strings.Join(out, "; ")
}

func driftTimes(ds []*netDrift) []string {
	var out []string
	for _, d := range ds {
		s := "never"
		if !d.repairedAt.IsZero() {
			s = d.repairedAt.Sub(d.at).Round(100 * time.Millisecond).String()
		}
		if d.linkDown {
			s += " (link down)"
		}
		out = append(out, s)
	}
	return out
}

// imageWatch follows which image the container runs, sample by sample.
type imageWatch struct {
	from, to string // digests: the first tag and the one pushed later
	start    time.Time
	switched time.Time // first sample on to
	down     int       // samples without a running container
	after    int       // samples on to, then on anything else or nothing
	others   []string  // digests other than from and to
}

func newImageWatch(from, to string) *imageWatch {
	return &imageWatch{from: from, to: to, start: time.Now()}
}

func (w *imageWatch) sample(name, image string) {
	ids, _ := docker("ps", "-q", "--no-trunc", "--filter", "label=io.outpost.managed=true", "--filter", "label=io.outpost.resource="+name)
	running := ""
	for _, id := range strings.Fields(ids) {
		ref, err := docker("inspect", "-f", "{{.Config.Image}}", id)
		if err == nil {
			running = ref
		}
	}
	switch {
	case running == "":
		w.down++
		if !w.switched.IsZero() {
			w.after++
		}
	case running == image+"@"+w.to:
		if w.switched.IsZero() {
			w.switched = time.Now()
		}
	case running == image+"@"+w.from:
		if !w.switched.IsZero() {
			w.after++
		}
	default:
		w.others = append(w.others, running)
		if !w.switched.IsZero() {
			w.after++
		}
	}
}

// switchedAt is the time from the watch's start to the first sample on the
// new tag, or 0.
func (w *imageWatch) switchedAt() time.Duration {
	if w.switched.IsZero() {
		return 0
	}
	return w.switched.Sub(w.start)
}

// check reports a container that ran anything but the two tags, or left
// the new one once it ran it. A sample without a container is allowed only
// around the switch (at most 5).
func (w *imageWatch) check() error {
	switch {
	case len(w.others) > 0:
		return fmt.Errorf("the container ran images other than 1.0.0 and 1.1.0: %v", w.others)
	case w.after > 0:
		return fmt.Errorf("after it ran 1.1.0, the container was down or on another image in %d samples", w.after)
	case w.down > 5:
		return fmt.Errorf("no container ran in %d samples", w.down)
	}
	return nil
}

// wantImage fails unless the container name runs image@digest.
func wantImage(name, image, digest string) error {
	ids, err := docker("ps", "-q", "--no-trunc", "--filter", "label=io.outpost.managed=true", "--filter", "label=io.outpost.resource="+name)
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(ids) {
		if ref, _ := docker("inspect", "-f", "{{.Config.Image}}", id); ref == image+"@"+digest {
			return nil
		}
	}
	return fmt.Errorf("no running container %s on %s@%s", name, image, digest)
}

// setLoss drops the share p of the packets that enter or leave the host's
// namespace through its link (0 removes the rules), with iptables' statistic
// match in that namespace.
func setLoss(t testing.TB, n *testNet, p float64) {
	t.Helper()
	ipt := func(args ...string) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, "iptables", "-w"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ipt("-F", "INPUT")
	ipt("-F", "OUTPUT")
	if p <= 0 {
		return
	}
	prob := fmt.Sprintf("%.2f", p)
	peer := n.Name + "b"
	ipt("-A", "INPUT", "-i", peer, "-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP")
	ipt("-A", "OUTPUT", "-o", peer, "-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP")
}

// inNamespace runs f on an OS thread that has joined the network namespace
// at path, so that the sockets f makes live there. The thread is never
// handed back to the runtime: it ends with f's goroutine.
func inNamespace(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// listen listens on addr inside the namespace.
func (n *testNet) listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := inNamespace(n.Path(), func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, n.Name, err)
	}
	return l
}

// dialer dials addr from inside the namespace.
func (n *testNet) dialer(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var c net.Conn
		err := inNamespace(n.Path(), func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
}

func listenTCP(t testing.TB, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func dialTCP(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// countingProxy is a reverse proxy that records when each request came, by
// class, and can cut the connection of requests to some paths.
type countingProxy struct {
	Addr     string
	classify func(*http.Request) string
	fail     atomic.Pointer[string] // a path suffix whose requests are cut

	mu    sync.Mutex
	times map[string][]time.Time
	paths map[string]int
}

func newCountingProxy(t testing.TB, l net.Listener, target string, classify func(*http.Request) string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	verbose := os.Getenv("OUTPOST_E2E_LOG") != ""
	p := &countingProxy{Addr: l.Addr().String(), classify: classify, times: map[string][]time.Time{}, paths: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = nil
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			c := p.classify(r)
			p.times[c] = append(p.times[c], time.Now())
			p.paths[r.URL.Path]++
			p.mu.Unlock()
			if f := p.fail.Load(); f != nil && strings.HasSuffix(r.URL.Path, *f) {
				if hj, ok := w.(http.Hijacker); ok {
					if conn, _, err := hj.Hijack(); err == nil {
						conn.Close()
						return
					}
				}
			}
			began := time.Now()
			rp.ServeHTTP(w, r)
			if verbose {
				t.Logf("%s %s %s %s: %v", began.Format("15:04:05.000"), p.Addr, r.Method, r.URL.Path, time.Since(began).Round(time.Millisecond))
			}
		}),
		ReadHeaderTimeout: time.Minute,
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

// count returns how many requests had a path ending in suffix.
func (p *countingProxy) count(suffix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for path, c := range p.paths {
		if strings.HasSuffix(path, suffix) {
			n += c
		}
	}
	return n
}

// failPath makes every request whose path ends in suffix fail as a cut
// connection.
func (p *countingProxy) failPath(suffix string) { p.fail.Store(&suffix) }

// perMinute counts each class's requests in every minute from start to
// end, the last one partial if it is at least half a minute.
func (p *countingProxy) perMinute(start, end time.Time) map[string][]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	minutes := int((end.Sub(start) + time.Minute/2) / time.Minute)
	end = start.Add(min(end.Sub(start), time.Duration(minutes)*time.Minute))
	out := map[string][]int{}
	for c, ts := range p.times {
		counts := make([]int, minutes)
		for _, at := range ts {
			if at.Before(start) || !at.Before(end) {
				continue
			}
			counts[int(at.Sub(start)/time.Minute)]++
		}
		out[c] = counts
	}
	return out
}

func gitClass(r *http.Request) string {
	switch {
	case strings.HasSuffix(r.URL.Path, "/info/refs"):
		return "info/refs"
	case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
		return "upload-pack"
	}
	return "other"
}

func registryClass(r *http.Request) string {
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/tags/list"):
		return "tags"
	case strings.Contains(p, "/manifests/"):
		return "manifests"
	case strings.Contains(p, "/blobs/"):
		return "blobs"
	}
	return "other"
}

func sumClasses(m map[string][]int) []int {
	var out []int
	for _, counts := range m {
		if out == nil {
			out = make([]int, len(counts))
		}
		for i, c := range counts {
			out[i] += c
		}
	}
	if out == nil {
		out = []int{0}
	}
	return out
}

func checkPerMinute(t testing.TB, what string, counts []int, bound int) {
	t.Helper()
	for i, c := range counts {
		if c > bound {
			t.Errorf("%s: %d in minute %d, more than the %d that the interval and backoff allow; per minute: %v", what, c, i+1, bound, counts)
		}
	}
}

// maxPolls is the most polls that can start within window: after a
// successful poll the agent waits until its slot, at least half an interval
// later (an interval later once it polls on its slot), after the k-th failure
// in a row the backoff's Delay(k) (capped at the interval, seeded by the
// host's name). It tries every pattern of successes and failures.
func maxPolls(interval, window time.Duration) int {
	b := pull.Backoff{Base: time.Second, Cap: interval, Seed: netHostName}
	const never = time.Duration(1<<63 - 1)
	// at[k] is the earliest time of the latest poll with k failures right
	// before it.
	at := []time.Duration{0}
	polls := 1
	for {
		next := make([]time.Duration, len(at)+1)
		for i := range next {
			next[i] = never
		}
		for k, t := range at {
			if t == never {
				continue
			}
			next[0] = min(next[0], t+interval/2)
			next[k+1] = min(next[k+1], t+b.Delay(k))
		}
		if slices.Min(next) >= window {
			return polls
		}
		at = next
		polls++
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianInt(xs []int) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return float64(s[len(s)/2-1]+s[len(s)/2]) / 2
	}
	return float64(s[len(s)/2])
}

func short(h string) string {
	if len(h) > 8 {
		return h[:8]
	}
	return h
}

func shortAll(hs []string) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = short(h)
	}
	return out
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
