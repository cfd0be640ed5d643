package status

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// TestFleetBytes reads the fleet of a repository that holds 0, 1,000 and
// 10,000 branches besides three hosts' notes, from http-backend, git
// daemon and sshd: the same hosts each time, for the same bytes, since
// the fleet view asks for the notes refs and the branch alone (ls-refs by
// prefix, and a fetch of the notes by hash in protocol v2). From a server
// that answers in v0 only, the same fleet comes from the whole listing.
func TestFleetBytes(t *testing.T) {
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	tip := repo.Commit(gitserver.Files{"f": "1"}, "one")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	h0 := root.ServeHTTP(gitserver.HTTPOptions{})
	h0.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		r.Header.Del("Git-Protocol") // a front that does not pass it on: v0 only
		return false
	})
	d := root.ServeGit()
	dp := gitserver.NewProxy(t, d.Addr)
	s := root.ServeSSH()
	sp := s.Proxied(t)
	known := sp.KnownHosts
	sshTr, err := pull.Config{URL: sp.URL("env"), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: known}}.Transport()
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now().UTC().Truncate(time.Second)
	var want []HostStatus
	for i := range 3 {
		host := fmt.Sprintf("host-%d", i)
		n := New(host, tip, Applied, now.Add(-time.Duration(i)*time.Minute))
		notes := mustOpen(t, hostRepo(t), host)
		mustWrite(t, notes, n, WriteOptions{})
		if err := mustPusher(t, notes, PushOptions{URL: h.URL("env")}).Push(context.Background()); err != nil {
			t.Fatalf("Push(%s) = %v", host, err)
		}
		n = n.normalized()
		want = append(want, HostStatus{Host: host, Note: &n, AtTip: true})
	}

	srcs := []struct {
		name  string
		url   string
		o     FleetOptions
		bytes func() int64
		reset func()
		idle  func() bool
	}{
		{"http bodies", h.URL("env"), FleetOptions{}, h.Bytes, h.Reset, nil},
		{"git wire", "git://" + dp.Addr + "/env.git", FleetOptions{}, dp.Bytes, dp.ResetBytes, dp.WaitIdle},
		{"ssh wire", sshTr.URL, FleetOptions{Auth: sshTr.Auth}, sp.Bytes, sp.ResetBytes, sp.WaitIdle},
		{"v0 http bodies", h0.URL("env"), FleetOptions{}, h0.Bytes, h0.Reset, nil},
	}
	counts := []int{0, 1000, 10000}
	got := map[string][]int64{}
	made := 0
	for _, n := range counts {
		var names []string
		for ; made < n; made++ {
			names = append(names, fmt.Sprintf("refs/heads/feature-%05d", made))
		}
		if len(names) > 0 {
			repo.CreateRefs(names, tip)
		}
		for _, src := range srcs {
			src.reset()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			hosts, err := Fleet(ctx, src.url, src.o)
			cancel()
			if err != nil {
				t.Fatalf("%s: Fleet with %d branches = %v", src.name, n, err)
			}
			if diff := cmp.Diff(want, hosts); diff != "" {
				t.Fatalf("%s: Fleet with %d branches differs (-want +got):\n%s", src.name, n, diff)
			}
			if src.idle != nil && !src.idle() {
				t.Fatalf("%s: the proxy still has connections open after Fleet", src.name)
			}
			got[src.name] = append(got[src.name], src.bytes())
		}
	}
	for _, src := range srcs {
		t.Logf("bytes of a fleet view of 3 hosts, %s, with %v other branches: %v", src.name, counts, got[src.name])
	}
	spread := func(b []int64) int64 { return max(b[0], b[1], b[2]) - min(b[0], b[1], b[2]) }
	// The ssh key exchange's size varies by a few hundred bytes from one
	// connection to the next; a thousand branches add some 70,000 bytes
	// to a v0 listing.
	for _, tt := range []struct {
		name   string
		spread int64
	}{{"http bodies", 8}, {"git wire", 8}, {"ssh wire", 2048}} {
		if b := got[tt.name]; spread(b) > tt.spread {
			t.Errorf("%s: bytes of a fleet view = %v for %v branches, want within %d bytes", tt.name, b, counts, tt.spread)
		}
	}
	if b := got["v0 http bodies"]; b[2] < 100*got["http bodies"][2] {
		t.Errorf("v0 bytes of a fleet view = %v, want 10,000 branches to cost far more than v2's %v", b, got["http bodies"])
	}
}
