package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
)

func TestReport(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	d1 := "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 := "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	web := following("web", "registry.example.com/acme/web", docker.UpdatePolicy{Policy: "semver", Range: "^1"})
	api := following("api", "registry.example.com/acme/api", docker.UpdatePolicy{Policy: "digest", Tag: "stable", Exclude: DefaultExclude})
	fresh := following("new", "registry.example.com/acme/new", docker.UpdatePolicy{Policy: "alphabetical", Order: "desc", Filter: "^main-"})
	pinned := &docker.Container{Name: "db", Image: "postgres", Tag: "16"}

	if _, err := s.Record(web, Resolution{Tag: "1.1.0", Digest: d1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkBad("web", "1.2.0", d2, "healthcheck failed"); err != nil {
		t.Fatal(err)
	}
	skipped := []Skip{
		{Tag: "1.3.0", Digest: d2, Reason: "no image for linux/arm/v7 (has linux/amd64)"},
		{Tag: "1.2.0", Digest: d2, Reason: "marked bad on this host"},
	}
	if _, err := s.Record(web, Resolution{Tag: "1.1.0", Digest: d1, Skipped: skipped}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(api, Resolution{Tag: "stable", Digest: d2}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(api, Resolution{}, errors.New("list registry.example.com/acme/api: connection refused")); err != nil {
		t.Fatal(err)
	}

	rows := Report([]*docker.Container{web, api, fresh, pinned}, s, map[string]string{"api": "stable@" + d1})
	at := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	want := []Row{
		{Container: "web", Image: web.Image, Policy: "semver ^1", Running: "1.1.0@" + d1, Best: "1.1.0@" + d1, Skipped: skipped,
			Bad: []BadTag{{Tag: "1.2.0", Digest: d2, Reason: "healthcheck failed", At: at}}, CheckedAt: at},
		{Container: "api", Image: api.Image, Policy: "digest stable", Running: "stable@" + d1, CheckedAt: at,
			Error: "list registry.example.com/acme/api: connection refused"},
		{Container: "new", Image: fresh.Image, Policy: "alphabetical desc filter=^main-"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Fatalf("Report (-want +got):\n%s", diff)
	}

	var text bytes.Buffer
	if err := WriteText(&text, rows); err != nil {
		t.Fatal(err)
	}
	wantText := `CONTAINER  POLICY                           RUNNING                     BEST                       CHECKED
web        semver ^1                        1.1.0@sha256:111111111111   1.1.0@sha256:111111111111  2026-11-26T15:00:00Z
api        digest stable                    stable@sha256:111111111111  -                          2026-11-26T15:00:00Z
new        alphabetical desc filter=^main-  -                           -                          never

web (registry.example.com/acme/web):
  passed over 1.3.0: no image for linux/arm/v7 (has linux/amd64)
  passed over 1.2.0: marked bad on this host
  bad 1.2.0@sha256:222222222222 since 2026-11-26T15:00:00Z: healthcheck failed

api (registry.example.com/acme/api):
  last check failed: list registry.example.com/acme/api: connection refused
`
	if diff := cmp.Diff(wantText, text.String()); diff != "" {
		t.Errorf("WriteText (-want +got):\n%s", diff)
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, rows); err != nil {
		t.Fatal(err)
	}
	var back []Row
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("WriteJSON output does not parse: %v\n%s", err, js.String())
	}
	if diff := cmp.Diff(rows, back); diff != "" {
		t.Errorf("WriteJSON round trip (-want +got):\n%s", diff)
	}

	js.Reset()
	if err := WriteJSON(&js, nil); err != nil || js.String() != "[]\n" {
		t.Errorf("WriteJSON(nil) = %q, %v; want []", js.String(), err)
	}
}
