package oci

import (
	"context"
	"net/http"
	"net/http/httputil"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// countingTransport records the method and path of each request and the
// bytes of each response's headers and body.
type countingTransport struct {
	mu       sync.Mutex
	requests []string
	bytes    int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	dump, _ := httputil.DumpResponse(resp, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, r.Method+" "+r.URL.Path)
	c.bytes += len(dump)
	return resp, nil
}

func TestUnchangedPollIsOneHead(t *testing.T) {
	ctx := context.Background()
	srv := registry.Start(t)
	ref, err := ParseRef("oci://" + srv.Ref("fleet/env", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, ref, Artifact{Layer: packed(t, map[string]string{"a": "b"}), Revision: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	ct := &countingTransport{}
	if _, err := Head(ctx, ref, remote.WithTransport(ct)); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /v2/", "HEAD /v2/fleet/env/manifests/prod"}
	if diff := cmp.Diff(want, ct.requests); diff != "" {
		t.Errorf("requests of a poll (-want +got):\n%s", diff)
	}
	t.Logf("an unchanged poll: %d requests, %d response bytes", len(ct.requests), ct.bytes)
}
