package pull_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// notesRefs returns n notes refs' names, as n hosts push them.
func notesRefs(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("refs/notes/outpost/host-%05d", i)
	}
	return names
}

// TestProtocolV2Nginx polls through nginx and fcgiwrap configured as
// docs/scale.md says: v2 where the Git-Protocol header reaches
// http-backend, v0 where the front end drops it.
func TestProtocolV2Nginx(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	c1 := repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	n := root.ServeNginx()
	for _, tt := range []struct {
		name string
		url  string
		want pull.Protocol
	}{
		{"header passed", n.URL("env"), pull.ProtocolV2},
		{"header dropped", n.URLv0("env"), pull.ProtocolV0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := open(t, pull.Config{URL: tt.url, Timeout: 20 * time.Second})
			for _, want := range []pull.Result{{Commit: c1, Changed: true}, {Commit: c1}} {
				if got := poll(t, r); got != want {
					t.Fatalf("Poll = %+v, want %+v", got, want)
				}
			}
			if got := r.Protocol(); got != tt.want {
				t.Errorf("Protocol() = %v, want %v", got, tt.want)
			}
		})
	}
}

// BenchmarkPollNginx makes unchanged polls of a repository with 10,000
// packed notes refs through nginx, fcgiwrap and git http-backend, in v2
// and in v0, and reports the bytes on the wire and the server's CPU (nginx,
// fcgiwrap, http-backend and upload-pack) per poll.
func BenchmarkPollNginx(b *testing.B) {
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	c1 := repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	repo.CreateRefs(notesRefs(10000), c1)
	n := root.ServeNginx()
	p := gitserver.NewProxy(b, n.Addr)
	for _, bb := range []struct {
		name, url string
		want      pull.Protocol
	}{
		{"v2", "http://" + p.Addr + "/env.git", pull.ProtocolV2},
		{"v0", "http://" + p.Addr + "/v0/env.git", pull.ProtocolV0},
	} {
		b.Run(bb.name, func(b *testing.B) {
			r, err := pull.Open(b.TempDir(), pull.Config{URL: bb.url, Timeout: time.Minute}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			for range 2 { // the fetch, then one unchanged poll to warm up
				if _, err := r.Poll(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			if got := r.Protocol(); got != bb.want {
				b.Fatalf("Protocol() = %v, want %v", got, bb.want)
			}
			p.ResetBytes()
			cpu0, err := n.CPU()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				res, err := r.Poll(b.Context())
				if err != nil || res.Changed {
					b.Fatalf("Poll = %+v, %v; want an unchanged tip", res, err)
				}
			}
			b.StopTimer()
			cpu1, err := n.CPU()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(p.Bytes())/float64(b.N), "wire-bytes/op")
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "server-cpu-µs/op")
		})
	}
}
