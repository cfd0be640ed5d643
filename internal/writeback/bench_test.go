package writeback_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/status"
	"github.com/outpost-gitops/outpost/internal/writeback"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	testreg "github.com/outpost-gitops/outpost/test/e2e/registry"
)

// BenchmarkUpdate200Containers20Repos runs `images update` (dry run: the
// resolution and the rewrite, not the push) over 200 containers in update
// mode git that follow 20 image repositories of 12 tags each, for 10 noted
// hosts, against the real registry and git server. It reports the registry
// requests per run.
func BenchmarkUpdate200Containers20Repos(b *testing.B) {
	reg := testreg.Start(b)
	var requests atomic.Int64
	target, _ := url.Parse("http://" + reg.Host())
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	via := strings.TrimPrefix(srv.URL, "http://")

	for i := range 20 {
		img := testreg.Image(b, testreg.Config{Entrypoint: []string{"/bin/busybox", "true"}, Labels: map[string]string{"repo": fmt.Sprint(i)}})
		var tags []string
		for minor := range 12 {
			tags = append(tags, fmt.Sprintf("1.%d.0", minor))
		}
		reg.Push(b, fmt.Sprintf("app%02d", i), img, tags...)
	}
	files := gitserver.Files{}
	for i := range 200 {
		files[fmt.Sprintf("apps/c%03d.yaml", i)] = fmt.Sprintf(
			"kind: container\nname: c%03d\nimage: %s/app%02d\ntag: \"1.0.0\" # pinned\nupdate: {policy: semver, range: \"^1\", mode: git}\n",
			i, via, i%20)
	}
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	base := repo.Commit(files, "200 containers")
	for h := range 10 {
		notes, err := status.OpenPath(repo.Path, fmt.Sprintf("host-%d", h))
		if err != nil {
			b.Fatal(err)
		}
		n := status.New(fmt.Sprintf("host-%d", h), base, status.Result("applied"), time.Now())
		n.Platform = registry.HostPlatform().String()
		if _, err := notes.Write(context.Background(), n, status.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	gitURL := root.ServeHTTP(gitserver.HTTPOptions{}).URL("env")

	b.ResetTimer()
	requests.Store(0)
	for b.Loop() {
		res, err := writeback.Run(context.Background(), writeback.Options{Source: gitURL, Branch: "outpost/images",
			DryRun: true, Platform: registry.HostPlatform()})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Changes) != 200 || len(res.Errors) != 0 {
			b.Fatalf("%d changes, errors %+v; want 200 and none", len(res.Changes), res.Errors)
		}
	}
	b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
}
