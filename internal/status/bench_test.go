package status

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// BenchmarkFleet1000 reads a fleet of 1,000 hosts over smart HTTP (git
// http-backend): one ref listing and one shallow fetch of every
// refs/notes/outpost/* tip, then each host's latest note. Each host has
// written three notes. "loose" is the server as pushes leave it, "packed"
// after git gc. fetched-B/op counts request and response bodies.
func BenchmarkFleet1000(b *testing.B) {
	benchFleet(b, 1000, 3)
}

// BenchmarkFleet10000 reads a fleet of 10,000 hosts, one note each, over
// smart HTTP and as a local path (read in place), loose and packed: what
// `outpost fleet` does for a large fleet.
func BenchmarkFleet10000(b *testing.B) {
	benchFleet(b, 10000, 1)
}

func benchFleet(b *testing.B, hosts, notesPerHost int) {
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	var commits []string
	for i := range notesPerHost {
		commits = append(commits, repo.Commit(gitserver.Files{"f": fmt.Sprint(i)}, fmt.Sprint("change ", i)))
	}
	ctx := context.Background()
	at := time.Now().Add(-time.Hour)
	for i := range hosts {
		host := fmt.Sprintf("host-%05d", i)
		notes := openNotes(b, repo.Path, host)
		for j, c := range commits {
			n := New(host, c, Applied, at.Add(time.Duration(j)*time.Minute))
			n.Labels = map[string]string{"site": fmt.Sprint("site-", i%20), "role": "edge"}
			n.AgentVersion = "0.1.0"
			n.Images = map[string]string{"web": fmt.Sprintf("1.%d.0@sha256:%064x", j, i)}
			if _, err := notes.Write(ctx, n, WriteOptions{}); err != nil {
				b.Fatalf("Write() error = %v", err)
			}
		}
	}
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	read := func(b *testing.B, src string) {
		for b.Loop() {
			got, err := Fleet(ctx, src, FleetOptions{})
			if err != nil {
				b.Fatalf("Fleet(%s) error = %v", src, err)
			}
			if len(got) != hosts {
				b.Fatalf("Fleet(%s) = %d hosts, want %d", src, len(got), hosts)
			}
		}
	}
	overHTTP := func(b *testing.B) {
		srv.Reset()
		read(b, srv.URL("env"))
		b.ReportMetric(float64(srv.Bytes())/float64(b.N), "fetched-B/op")
		b.ReportMetric(float64(srv.Requests())/float64(b.N), "requests/op")
	}
	local := func(b *testing.B) { read(b, repo.Path) }
	b.Run("loose", overHTTP)
	b.Run("loose/path", local)
	repo.Git("gc", "-q")
	b.Run("packed", overHTTP)
	b.Run("packed/path", local)
}
