package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/outpost-gitops/outpost/internal/targets/docker"
	testreg "github.com/outpost-gitops/outpost/test/e2e/registry"
)

// hostPlatform is the platform that the test images are built for.
var hostPlatform = Platform{OS: "linux", Architecture: runtime.GOARCH}

// otherPlatforms returns two platforms that are not the host's.
func otherPlatforms() []testreg.Platform {
	if runtime.GOARCH == "riscv64" {
		return []testreg.Platform{{OS: "linux", Architecture: "s390x"}, {OS: "linux", Architecture: "ppc64le"}}
	}
	return []testreg.Platform{{OS: "linux", Architecture: "riscv64"}, {OS: "linux", Architecture: "s390x"}}
}

// fastRetry keeps the backoff of tests short; Retry-After is still honoured
// in whole seconds.
var fastRetry = Retry{Max: 3, WaitMin: 5 * time.Millisecond, WaitMax: 2 * time.Second}

func newTestResolver(t *testing.T, o Options) *Resolver {
	t.Helper()
	if o.Keychain == nil {
		o.Keychain = noKeychain()
	}
	if o.Retry == (Retry{}) {
		o.Retry = fastRetry
	}
	r, err := NewResolver(o)
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	return r
}

// variant returns img with env added to its configuration: a new digest
// that shares img's layer, cheaper than building an image.
func variant(t testing.TB, img v1.Image, env ...string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := *cf.Config.DeepCopy()
	cfg.Env = append(cfg.Env, env...)
	v, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tagAll pushes img once and puts its manifest under many tags over one
// connection: far quicker than a full push per tag.
func tagAll(t *testing.T, reg *testreg.Registry, repo string, img v1.Image, tags []string) {
	t.Helper()
	reg.Push(t, repo, img, tags[0])
	p, err := remote.NewPusher()
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags[1:] {
		ref, err := name.NewTag(reg.Ref(repo, tag))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Put(context.Background(), ref, img); err != nil {
			t.Fatalf("tag %s: %v", ref, err)
		}
	}
}

// paginate makes a front answer tag lists one page of n at a time, with a
// Link header to the next, as Distribution 3 and Docker Hub do (Debian's
// Distribution 2.8 returns every tag at once).
func paginate(reg *testreg.Registry) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if !strings.HasSuffix(r.URL.Path, "/tags/list") || n <= 0 {
			return false
		}
		resp, err := http.Get("http://" + reg.Host() + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return true
		}
		defer resp.Body.Close()
		var list struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return true
		}
		slices.Sort(list.Tags)
		start := 0
		if last := r.URL.Query().Get("last"); last != "" {
			start, _ = slices.BinarySearch(list.Tags, last+"\x00")
		}
		end := min(start+n, len(list.Tags))
		if end < len(list.Tags) {
			w.Header().Set("Link", fmt.Sprintf(`<%s?n=%d&last=%s>; rel="next"`, r.URL.Path, n, url.QueryEscape(list.Tags[end-1])))
		}
		list.Tags = list.Tags[start:end]
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
		return true
	}
}

// noKeychain is anonymous: the host's Docker configuration is not read.
func noKeychain() authn.Keychain { return authn.NewMultiKeychain() }

func following(name, image string, p docker.UpdatePolicy) *docker.Container {
	return &docker.Container{Name: name, Image: image, Update: &p}
}

// TestAgainstRegistry runs against the package's real docker-registry
// (Debian's docker-registry package), each subtest in its own repository.
func TestAgainstRegistry(t *testing.T) {
	reg := sharedRegistry
	img := testreg.Image(t, testreg.Config{Cmd: []string{"true"}})
	imgDigest := reg.Push(t, "app", img, issueTags...)
	ctx := context.Background()

	t.Run("policies choose from the listed tags", func(t *testing.T) {
		r := newTestResolver(t, Options{})
		tests := []struct {
			policy docker.UpdatePolicy
			want   string
		}{
			{docker.UpdatePolicy{Policy: "semver", Range: "^1.0"}, "v1.3.0"},
			{docker.UpdatePolicy{Policy: "semver"}, "2.0.0"},
			{docker.UpdatePolicy{Policy: "semver", Range: "~1.2.0-0"}, "1.2.0-rc.1"},
			{docker.UpdatePolicy{Policy: "numerical", Filter: `^build-(?P<extract>\d+)$`}, "build-20261101"},
			{docker.UpdatePolicy{Policy: "alphabetical"}, "v1.3.0"},
			{docker.UpdatePolicy{Policy: "digest", Tag: "latest"}, "latest"},
		}
		for _, tt := range tests {
			c := following("app", reg.Repo("app"), tt.policy)
			got, err := r.Resolve(ctx, c, hostPlatform)
			if err != nil {
				t.Errorf("Resolve(%s) = %v", Describe(c.Update), err)
				continue
			}
			want := Resolution{Tag: tt.want, Digest: imgDigest}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Resolve(%s) (-want +got):\n%s", Describe(c.Update), diff)
			}
		}
	})

	t.Run("pagination and the tag cap", func(t *testing.T) {
		var tags []string
		for i := range 130 {
			tags = append(tags, fmt.Sprintf("1.0.%d", i))
		}
		tagAll(t, reg, "many", img, tags)
		f := reg.Front(t, testreg.FrontOptions{})
		f.SetFault(paginate(reg))
		repo, err := name.NewRepository(f.Host() + "/many")
		if err != nil {
			t.Fatal(err)
		}
		listPath := "/v2/many/tags/list"

		r := newTestResolver(t, Options{PageSize: 30})
		got, truncated, err := r.list(ctx, repo)
		if err != nil {
			t.Fatalf("list = %v", err)
		}
		slices.Sort(got)
		want := slices.Clone(tags)
		slices.Sort(want)
		if diff := cmp.Diff(want, got); diff != "" || truncated {
			t.Errorf("list (truncated %v, want false) (-want +got):\n%s", truncated, diff)
		}
		if n := f.RequestsTo(listPath); n != 5 {
			t.Errorf("tag list requests = %d, want 5 pages", n)
		}

		f.Reset()
		f.SetFault(paginate(reg))
		r = newTestResolver(t, Options{PageSize: 30, MaxTags: 70})
		got, truncated, err = r.list(ctx, repo)
		if err != nil {
			t.Fatalf("list with MaxTags 70 = %v", err)
		}
		if len(got) != 70 || !truncated {
			t.Errorf("list with MaxTags 70 = %d tags, truncated %v; want 70, true", len(got), truncated)
		}
		if n := f.RequestsTo(listPath); n != 3 {
			t.Errorf("tag list requests with MaxTags 70 = %d, want 3 pages", n)
		}
		res, err := r.Resolve(ctx, following("many", repo.String(), docker.UpdatePolicy{Policy: "semver"}), hostPlatform)
		if err != nil || !res.Truncated {
			t.Errorf("Resolve with MaxTags 70 = %+v, %v; want a truncated resolution", res, err)
		}
	})

	t.Run("a newer tag without the host's platform is passed over", func(t *testing.T) {
		others := otherPlatforms()
		reg.Push(t, "multi", img, "1.0.0")
		idxDigest := reg.PushIndex(t, "multi", testreg.Index(t, testreg.Config{Cmd: []string{"true"}}, others...), "1.1.0")
		hostIdx := reg.PushIndex(t, "multi", mutate.AppendManifests(empty.Index,
			mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
			mutate.IndexAddendum{Add: variant(t, img, "OTHER=1"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: others[0].Architecture}}},
		), "0.9.0")
		r := newTestResolver(t, Options{})
		c := following("multi", reg.Repo("multi"), docker.UpdatePolicy{Policy: "semver"})

		got, err := r.Resolve(ctx, c, hostPlatform)
		if err != nil {
			t.Fatalf("Resolve = %v", err)
		}
		reason := fmt.Sprintf("no image for %s (has %s, %s)", hostPlatform,
			Platform(others[0]), Platform(others[1]))
		want := Resolution{Tag: "1.0.0", Digest: imgDigest, Skipped: []Skip{{Tag: "1.1.0", Digest: idxDigest, Reason: reason}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Resolve on %s (-want +got):\n%s", hostPlatform, diff)
		}

		// The same repository seen from a host of the other platform.
		got, err = r.Resolve(ctx, c, Platform(others[0]))
		if err != nil {
			t.Fatalf("Resolve = %v", err)
		}
		if got.Tag != "1.1.0" || got.Digest != idxDigest {
			t.Errorf("Resolve on %s = %s, want 1.1.0@%s", Platform(others[0]), got.Ref(), idxDigest)
		}

		// A range that leaves only the index with the host's platform.
		c = following("multi", reg.Repo("multi"), docker.UpdatePolicy{Policy: "semver", Range: "<1"})
		got, err = r.Resolve(ctx, c, hostPlatform)
		if err != nil || got.Tag != "0.9.0" || got.Digest != hostIdx {
			t.Errorf("Resolve(<1) = %s, %v; want 0.9.0@%s", got.Ref(), err, hostIdx)
		}

		// A cap on the tags checked for their platform.
		capped := newTestResolver(t, Options{MaxCandidates: 1})
		c = following("multi", reg.Repo("multi"), docker.UpdatePolicy{Policy: "semver"})
		got, err = capped.Resolve(ctx, c, hostPlatform)
		if !errors.Is(err, ErrNoCandidate) || len(got.Skipped) != 1 || got.Tag != "" {
			t.Errorf("Resolve with MaxCandidates 1 = %+v, %v; want %v after 1.1.0 was skipped", got, err, ErrNoCandidate)
		}

		// Nothing runs here at all.
		c = following("multi", reg.Repo("multi"), docker.UpdatePolicy{Policy: "semver", Range: "~1.1"})
		got, err = r.Resolve(ctx, c, hostPlatform)
		if !errors.Is(err, ErrNoCandidate) || len(got.Skipped) != 1 {
			t.Errorf("Resolve(~1.1) = %+v, %v; want %v with 1.1.0 skipped", got, err, ErrNoCandidate)
		}
	})

	t.Run("bad tags are passed over until cleared", func(t *testing.T) {
		v2 := variant(t, img, "V=2")
		reg.Push(t, "bad", img, "1.0.0")
		d2 := reg.Push(t, "bad", v2, "1.1.0")
		store, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r := newTestResolver(t, Options{Bad: store})
		c := following("web", reg.Repo("bad"), docker.UpdatePolicy{Policy: "semver"})

		if err := store.MarkBad("web", "1.1.0", d2, "healthcheck failed"); err != nil {
			t.Fatal(err)
		}
		got, err := r.Resolve(ctx, c, hostPlatform)
		want := Resolution{Tag: "1.0.0", Digest: imgDigest, Skipped: []Skip{{Tag: "1.1.0", Digest: d2, Reason: "marked bad on this host"}}}
		if diff := cmp.Diff(want, got); err != nil || diff != "" {
			t.Errorf("Resolve with 1.1.0 bad = %v (-want +got):\n%s", err, diff)
		}

		// The bad tag re-pushed with a new image is tried again.
		v3 := variant(t, img, "V=3")
		d3 := reg.Push(t, "bad", v3, "1.1.0")
		got, err = r.Resolve(ctx, c, hostPlatform)
		if err != nil || got.Ref() != "1.1.0@"+d3 {
			t.Errorf("Resolve after re-push = %s, %v; want 1.1.0@%s", got.Ref(), err, d3)
		}

		// A mark without a digest holds whatever the tag points to.
		if err := store.MarkBad("web", "1.1.0", "", "operator"); err != nil {
			t.Fatal(err)
		}
		got, _ = r.Resolve(ctx, c, hostPlatform)
		if got.Tag != "1.0.0" {
			t.Errorf("Resolve with 1.1.0 bad at any digest = %s, want 1.0.0", got.Ref())
		}

		// A newer tag is chosen over the bad one.
		reg.Push(t, "bad", v2, "1.2.0")
		got, _ = r.Resolve(ctx, c, hostPlatform)
		if got.Tag != "1.2.0" {
			t.Errorf("Resolve after 1.2.0 appeared = %s, want 1.2.0", got.Ref())
		}

		if err := store.ClearBad("web", ""); err != nil {
			t.Fatal(err)
		}
		c.Update.Range = "<1.2"
		got, _ = r.Resolve(ctx, c, hostPlatform)
		if got.Ref() != "1.1.0@"+d3 {
			t.Errorf("Resolve after ClearBad = %s, want 1.1.0@%s", got.Ref(), d3)
		}
	})

	t.Run("digest policy follows a mutable tag", func(t *testing.T) {
		d1 := reg.Push(t, "mutable", img, "stable")
		f := reg.Front(t, testreg.FrontOptions{})
		r := newTestResolver(t, Options{})
		c := following("m", f.Host()+"/mutable", docker.UpdatePolicy{Policy: "digest", Tag: "stable"})
		got, err := r.Resolve(ctx, c, hostPlatform)
		if err != nil || got.Ref() != "stable@"+d1 {
			t.Fatalf("Resolve = %s, %v; want stable@%s", got.Ref(), err, d1)
		}
		if n := f.RequestsTo("/v2/mutable/tags/list"); n != 0 {
			t.Errorf("digest policy listed tags %d times, want 0", n)
		}
		d2 := reg.Push(t, "mutable", variant(t, img, "NEW=1"), "stable")
		got, err = r.Resolve(ctx, c, hostPlatform)
		if err != nil || got.Ref() != "stable@"+d2 {
			t.Errorf("Resolve after re-push = %s, %v; want stable@%s", got.Ref(), err, d2)
		}
		c.Update.Tag = "gone"
		if _, err := r.Resolve(ctx, c, hostPlatform); !isStatus(err, http.StatusNotFound) {
			t.Errorf("Resolve of a missing tag = %v, want a 404", err)
		}
	})

	t.Run("credentials from the Docker config file", func(t *testing.T) {
		f := reg.Front(t, testreg.FrontOptions{Username: "fleet", Password: "s3cret"})
		dir := t.TempDir()
		cfg := fmt.Sprintf(`{"auths":{%q:{"auth":"ZmxlZXQ6czNjcmV0"}}}`, f.Host()) // fleet:s3cret
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c := following("app", f.Host()+"/app", docker.UpdatePolicy{Policy: "semver", Range: "^1"})

		anon := newTestResolver(t, Options{})
		if _, err := anon.Resolve(ctx, c, hostPlatform); !isStatus(err, http.StatusUnauthorized) {
			t.Errorf("Resolve without credentials = %v, want a 401", err)
		}
		t.Setenv("DOCKER_CONFIG", dir)
		r := newTestResolver(t, Options{Keychain: authn.DefaultKeychain})
		got, err := r.Resolve(ctx, c, hostPlatform)
		if err != nil || got.Tag != "v1.3.0" {
			t.Errorf("Resolve with the Docker config's credentials = %s, %v; want v1.3.0", got.Ref(), err)
		}

		// A credential helper named by credHelpers, found on PATH.
		helperDir, cfgDir := t.TempDir(), t.TempDir()
		helper := "#!/bin/sh\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"fleet\",\"Secret\":\"s3cret\"}'\n"
		if err := os.WriteFile(filepath.Join(helperDir, "docker-credential-outposttest"), []byte(helper), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg = fmt.Sprintf(`{"credHelpers":{%q:"outposttest"}}`, f.Host())
		if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DOCKER_CONFIG", cfgDir)
		t.Setenv("PATH", helperDir+string(os.PathListSeparator)+os.Getenv("PATH"))
		r = newTestResolver(t, Options{Keychain: authn.DefaultKeychain})
		got, err = r.Resolve(ctx, c, hostPlatform)
		if err != nil || got.Tag != "v1.3.0" {
			t.Errorf("Resolve with a credential helper = %s, %v; want v1.3.0", got.Ref(), err)
		}
	})

	t.Run("faults", func(t *testing.T) {
		testFaults(t, reg, img)
	})
}

// testFaults checks that a failing registry leaves the current image alone,
// that retries are bounded and paced, and that the next poll after recovery
// works. Requests are counted at the front.
func testFaults(t *testing.T, reg *testreg.Registry, img v1.Image) {
	ctx := context.Background()
	d := reg.Push(t, "faulty", img, "1.0.0")
	f := reg.Front(t, testreg.FrontOptions{})
	c := following("svc", f.Host()+"/faulty", docker.UpdatePolicy{Policy: "semver"})
	listPath := "/v2/faulty/tags/list"

	newPoller := func(t *testing.T) (*Poller, *Store) {
		store, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r := newTestResolver(t, Options{Bad: store})
		p := NewPoller(r, store, PollerOptions{HostName: "edge-042", Platform: hostPlatform, MinInterval: -1})
		if ups, err := p.Poll(ctx, []*docker.Container{c}); err != nil || len(ups) != 1 {
			t.Fatalf("first Poll = %v, %v; want one update", ups, err)
		}
		return p, store
	}
	pushNewer := func(t *testing.T) string {
		d := reg.Push(t, "faulty", variant(t, img, "N="+t.Name()), "1.0.1")
		t.Cleanup(func() { reg.Delete(t, "faulty", "1.0.1") })
		return d
	}
	wantCurrent := func(t *testing.T, store *Store, want string) {
		t.Helper()
		e, _ := store.Entry("svc")
		if got := e.Current.String(); got != want {
			t.Errorf("current = %s, want %s", got, want)
		}
	}

	tests := []struct {
		name string
		// fault makes the registry fail; it returns the least and the
		// most requests that the failing poll should make to the tag
		// list, or -1 when the poll should succeed after one retry.
		fault     func(t *testing.T) (int, int)
		recover   func(t *testing.T, p *Poller)
		wantCheck func(t *testing.T, err error)
	}{
		{
			name: "500 on every request",
			fault: func(t *testing.T) (int, int) {
				f.FailNext(1000, http.StatusInternalServerError, 0)
				return fastRetry.Max + 1, fastRetry.Max + 1
			},
			wantCheck: func(t *testing.T, err error) {
				var te *transport.Error
				if !errors.As(err, &te) || te.StatusCode != http.StatusInternalServerError {
					t.Errorf("Poll error = %v, want a transport.Error with status 500", err)
				}
			},
		},
		{
			name: "connections cut",
			fault: func(t *testing.T) (int, int) {
				f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
					return true
				})
				// net/http itself retries a GET once when a reused
				// connection breaks.
				return fastRetry.Max + 1, 2 * (fastRetry.Max + 1)
			},
			wantCheck: func(t *testing.T, err error) {
				if err == nil {
					t.Error("Poll error = nil, want one")
				}
			},
		},
		{
			name: "429 with a short Retry-After is waited for",
			fault: func(t *testing.T) (int, int) {
				f.FailNext(1, http.StatusTooManyRequests, time.Second)
				return -1, -1
			},
		},
		{
			name: "429 with a long Retry-After pauses the registry",
			fault: func(t *testing.T) (int, int) {
				f.FailNext(1000, http.StatusTooManyRequests, 10*time.Minute)
				return 1, 1
			},
			recover: func(t *testing.T, p *Poller) {
				r := p.res
				if at := r.RetryAt(c.Image); time.Until(at) < 9*time.Minute {
					t.Errorf("RetryAt = %v, want about 10 minutes from now", at)
				}
				// The next poll leaves the registry alone.
				n := f.Requests()
				if ups, err := p.Poll(ctx, []*docker.Container{c}); err != nil || len(ups) != 0 {
					t.Errorf("Poll while paused = %v, %v; want nothing", ups, err)
				}
				if got := f.Requests() - n; got != 0 {
					t.Errorf("Poll while paused made %d requests, want 0", got)
				}
				r.throttle.now = func() time.Time { return time.Now().Add(11 * time.Minute) }
			},
			wantCheck: func(t *testing.T, err error) {
				var te *transport.Error
				if !errors.As(err, &te) || te.StatusCode != http.StatusTooManyRequests {
					t.Errorf("Poll error = %v, want a transport.Error with status 429", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.Reset()
			p, store := newPoller(t)
			newer := pushNewer(t)
			f.Reset()
			least, most := tt.fault(t)
			ups, err := p.Poll(ctx, []*docker.Container{c})
			if least < 0 {
				// The fault passes within the poll.
				if err != nil || len(ups) != 1 || ups[0].To != "1.0.1@"+newer {
					t.Fatalf("Poll = %v, %v; want 1.0.1@%s", ups, err, newer)
				}
				if got := f.RequestsTo(listPath); got != 2 {
					t.Errorf("tag list requests = %d, want 2 (the 429, then the retry)", got)
				}
				return
			}
			tt.wantCheck(t, err)
			if len(ups) != 0 {
				t.Errorf("Poll during the fault = %v, want no update", ups)
			}
			if got := f.RequestsTo(listPath); got < least || got > most {
				t.Errorf("tag list requests during the fault = %d, want %d to %d", got, least, most)
			}
			wantCurrent(t, store, "1.0.0@"+d)
			e, _ := store.Entry("svc")
			if e.Check == nil || e.Check.Error == "" {
				t.Errorf("last check = %+v, want its error recorded", e.Check)
			}

			f.Reset()
			if tt.recover != nil {
				tt.recover(t, p)
			}
			ups, err = p.Poll(ctx, []*docker.Container{c})
			if err != nil || len(ups) != 1 || ups[0].To != "1.0.1@"+newer {
				t.Errorf("Poll after recovery = %v, %v; want 1.0.1@%s", ups, err, newer)
			}
			wantCurrent(t, store, "1.0.1@"+newer)
		})
	}

	t.Run("registry stopped", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		store, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		down := following("svc", addr+"/faulty", docker.UpdatePolicy{Policy: "semver"})
		if _, err := store.Record(down, Resolution{Tag: "1.0.0", Digest: d}, nil); err != nil {
			t.Fatal(err)
		}
		p := NewPoller(newTestResolver(t, Options{Bad: store}), store, PollerOptions{MinInterval: -1, Platform: hostPlatform})
		ups, err := p.Poll(ctx, []*docker.Container{down})
		if err == nil || len(ups) != 0 {
			t.Fatalf("Poll of a stopped registry = %v, %v; want an error and no update", ups, err)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("Poll error %q does not name the registry %s", err, addr)
		}
		wantCurrent(t, store, "1.0.0@"+d)
	})

	t.Run("registry stalls", func(t *testing.T) {
		f := reg.Front(t, testreg.FrontOptions{})
		c := following("svc", f.Host()+"/faulty", docker.UpdatePolicy{Policy: "semver"})
		store, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r := newTestResolver(t, Options{Bad: store, Retry: Retry{Max: 1, WaitMin: 5 * time.Millisecond, Timeout: time.Second}})
		p := NewPoller(r, store, PollerOptions{MinInterval: -1, Platform: hostPlatform})
		if ups, err := p.Poll(ctx, []*docker.Container{c}); err != nil || len(ups) != 1 {
			t.Fatalf("first Poll = %v, %v; want one update", ups, err)
		}
		// The front accepts each request and never answers it.
		f.Reset()
		f.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
			<-r.Context().Done()
			return true
		})
		ups, err := p.Poll(ctx, []*docker.Container{c})
		if err == nil || len(ups) != 0 {
			t.Errorf("Poll of a stalled registry = %v, %v; want an error and no update", ups, err)
		}
		if got := f.RequestsTo(listPath); got != 2 {
			t.Errorf("tag list requests to a stalled registry = %d, want 2 (one retry)", got)
		}
		wantCurrent(t, store, "1.0.0@"+d)
	})

	t.Run("registry process stopped behind a proxy", func(t *testing.T) {
		own, stopReg, err := testreg.Launch(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		stopped := false
		t.Cleanup(func() {
			if !stopped {
				stopReg()
			}
		})
		d := own.Push(t, "svc", img, "1.0.0")
		f := own.Front(t, testreg.FrontOptions{})
		c := following("svc", f.Host()+"/svc", docker.UpdatePolicy{Policy: "semver"})
		store, err := OpenStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		p := NewPoller(newTestResolver(t, Options{Bad: store}), store, PollerOptions{MinInterval: -1, Platform: hostPlatform})
		if ups, err := p.Poll(ctx, []*docker.Container{c}); err != nil || len(ups) != 1 {
			t.Fatalf("first Poll = %v, %v; want one update", ups, err)
		}
		own.Push(t, "svc", variant(t, img, "N=stopped"), "1.0.1")
		stopReg()
		stopped = true
		f.Reset()

		ups, err := p.Poll(ctx, []*docker.Container{c})
		var te *transport.Error
		if !errors.As(err, &te) || te.StatusCode != http.StatusBadGateway || len(ups) != 0 {
			t.Errorf("Poll with the registry stopped = %v, %v; want a 502 from the proxy and no update", ups, err)
		}
		if got, want := f.RequestsTo("/v2/svc/tags/list"), fastRetry.Max+1; got != want {
			t.Errorf("tag list requests with the registry stopped = %d, want %d", got, want)
		}
		wantCurrent(t, store, "1.0.0@"+d)
	})
}

func TestPollUnchangedRequests(t *testing.T) {
	reg := sharedRegistry
	img := testreg.Image(t, testreg.Config{Cmd: []string{"true"}})
	reg.Push(t, "unchanged", img, "1.0.0", "1.1.0")
	f := reg.Front(t, testreg.FrontOptions{})
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := NewPoller(newTestResolver(t, Options{Bad: store}), store, PollerOptions{MinInterval: -1, Platform: hostPlatform})
	cs := []*docker.Container{following("web", f.Host()+"/unchanged", docker.UpdatePolicy{Policy: "semver", Range: "^1"})}
	ctx := context.Background()
	if _, err := p.Poll(ctx, cs); err != nil {
		t.Fatal(err)
	}
	f.Reset()
	ups, err := p.Poll(ctx, cs)
	if err != nil || len(ups) != 0 {
		t.Fatalf("Poll = %v, %v; want no update", ups, err)
	}
	// One page of tags and one HEAD of the best tag; the platform of a
	// known digest is not fetched again.
	if got := f.Requests(); got != 2 {
		t.Errorf("requests of an unchanged poll = %d, want 2", got)
	}

	// MinInterval keeps a second poll within it away from the registry.
	p = NewPoller(p.res, store, PollerOptions{MinInterval: time.Hour, Platform: hostPlatform})
	if _, err := p.Poll(ctx, cs); err != nil {
		t.Fatal(err)
	}
	f.Reset()
	if _, err := p.Poll(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if got := f.Requests(); got != 0 {
		t.Errorf("requests of a poll within MinInterval = %d, want 0", got)
	}
}

func BenchmarkPollUnchanged(b *testing.B) {
	reg := sharedRegistry
	img := testreg.Image(b, testreg.Config{Cmd: []string{"true"}})
	reg.Push(b, "bench-web", img, issueTags...)
	reg.Push(b, "bench-db", img, "15.1", "15.2", "16.0")
	f := reg.Front(b, testreg.FrontOptions{})
	store, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewResolver(Options{Keychain: noKeychain(), Bad: store})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPoller(r, store, PollerOptions{MinInterval: -1, Platform: hostPlatform})
	cs := []*docker.Container{
		following("web", f.Host()+"/bench-web", docker.UpdatePolicy{Policy: "semver", Range: "^1"}),
		following("db", f.Host()+"/bench-db", docker.UpdatePolicy{Policy: "numerical", Filter: `^(?P<extract>\d+\.\d+)$`}),
		following("edge", f.Host()+"/bench-web", docker.UpdatePolicy{Policy: "digest", Tag: "latest"}),
	}
	ctx := context.Background()
	if _, err := p.Poll(ctx, cs); err != nil {
		b.Fatal(err)
	}
	f.Reset()
	for b.Loop() {
		if _, err := p.Poll(ctx, cs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.Requests())/float64(b.N), "requests/poll")
	b.ReportMetric(float64(f.Requests())/float64(b.N)/float64(len(cs)), "requests/container")
}
