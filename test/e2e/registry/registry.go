// Package registry runs a real container registry for Outpost's tests and
// pushes small test images to it. Everything it starts belongs to one test and
// stops in t.Cleanup; a binary that is missing (docker-registry from Debian's
// docker-registry package, /bin/busybox from busybox-static) fails the test
// with a message that names it.
//
//	reg := registry.Start(t)                    // docker-registry serve, 127.0.0.1:PORT
//	reg, stop, err := registry.Launch(dir)      // the same, shared by a TestMain
//	reg.Host()                                   // "127.0.0.1:PORT"
//	img := registry.Image(t, registry.Config{    // one busybox layer
//		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-p", "8080"},
//		Env:        []string{"A=1"},
//		Health:     &registry.Health{Test: []string{"CMD", "true"}},
//	})
//	dgst := reg.Push(t, "web", img, "1.0.0", "1.1.0")   // "sha256:..."
//	idx := registry.Index(t, registry.Config{}, registry.Platform{OS: "linux", Architecture: "riscv64"})
//	reg.PushIndex(t, "multi", idx, "1.0.0")
//	reg.Ref("web", "1.0.0")                      // "127.0.0.1:PORT/web:1.0.0"
//	reg := registry.StartAuth(t, "ci", "secret") // basic auth from an htpasswd file
//
//	f := reg.Front(t, registry.FrontOptions{})   // a fault-injecting reverse proxy
//	f.Host(); f.FailNext(2, 429, 3*time.Second); f.Requests(); f.SetFault(fn)
//
// The Docker engine pulls from 127.0.0.1:PORT without TLS: loopback
// registries are insecure by default.
//
// registry is for tests only and imports no Outpost package.
package registry

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// Registry is a running docker-registry.
type Registry struct {
	host string
	// Dir is the registry's storage root.
	Dir string
}

// Start runs `docker-registry serve CONFIG` on a free loopback port with
// filesystem storage in a temporary directory and deletes enabled, waits until
// /v2/ answers, and stops it in t.Cleanup.
func Start(t testing.TB) *Registry {
	t.Helper()
	r, stop, err := Launch(t.TempDir())
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	t.Cleanup(stop)
	return r
}

// Launch is Start for a TestMain that shares one registry among the tests
// of a package: it keeps its storage in dir and returns the function that
// stops it.
func Launch(dir string) (*Registry, func(), error) { return launch(dir, "") }

// StartProxy is Start for a pull-through cache in front of upstream: a
// docker-registry with proxy.remoteurl set to upstream's plain-HTTP URL.
func StartProxy(t testing.TB, upstream *Registry) *Registry {
	t.Helper()
	r, stop, err := launch(t.TempDir(), "proxy:\n  remoteurl: http://"+upstream.host+"\n")
	if err != nil {
		t.Fatalf("registry proxy: %v", err)
	}
	t.Cleanup(stop)
	return r
}

// StartAuth is Start for a registry that demands HTTP basic auth of
// username and password, checked against an htpasswd file (bcrypt, the
// one format docker-registry reads).
func StartAuth(t testing.TB, username, password string) *Registry {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(username+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, stop, err := launch(dir, "auth:\n  htpasswd:\n    realm: outpost-test\n    path: "+htpasswd+"\n")
	if err != nil {
		t.Fatalf("registry with htpasswd: %v", err)
	}
	t.Cleanup(stop)
	return r
}

// launch runs docker-registry with extra appended to its configuration.
func launch(dir, extra string) (*Registry, func(), error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, nil, fmt.Errorf("docker-registry is required but not installed (Debian package docker-registry; test/run installs it): %w", err)
	}
	storage := filepath.Join(dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		host := "127.0.0.1:" + strconv.Itoa(port)
		conf := filepath.Join(dir, "config.yml")
		body := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
%s`, storage, host, extra)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			return nil, nil, err
		}
		logName := filepath.Join(dir, "registry.log")
		logf, err := os.Create(logName)
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(bin, "serve", conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, nil, fmt.Errorf("start %s: %w", bin, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(exited) }()
		if err := waitReady(host, exited); err != nil {
			stop(cmd, exited)
			out, _ := os.ReadFile(logName)
			lastErr = fmt.Errorf("%w\n%s", err, out)
			continue
		}
		return &Registry{host: host, Dir: storage}, func() { stop(cmd, exited) }, nil
	}
	return nil, nil, fmt.Errorf("docker-registry did not start: %w", lastErr)
}

// Host returns "127.0.0.1:PORT".
func (r *Registry) Host() string { return r.host }

// Ref returns HOST/repo:tag.
func (r *Registry) Ref(repo, tag string) string { return r.host + "/" + repo + ":" + tag }

// Repo returns HOST/repo.
func (r *Registry) Repo(repo string) string { return r.host + "/" + repo }

// Push writes img to repo under every tag and returns its digest
// ("sha256:...").
func (r *Registry) Push(t testing.TB, repo string, img v1.Image, tags ...string) string {
	t.Helper()
	if len(tags) == 0 {
		tags = []string{"latest"}
	}
	for _, tag := range tags {
		ref, err := name.NewTag(r.Ref(repo, tag), name.Insecure)
		if err != nil {
			t.Fatalf("registry: %v", err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("registry: push %s: %v", ref, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("registry: digest: %v", err)
	}
	return d.String()
}

// PushIndex writes a multi-platform index to repo under every tag and
// returns its digest.
func (r *Registry) PushIndex(t testing.TB, repo string, idx v1.ImageIndex, tags ...string) string {
	t.Helper()
	if len(tags) == 0 {
		tags = []string{"latest"}
	}
	for _, tag := range tags {
		ref, err := name.NewTag(r.Ref(repo, tag), name.Insecure)
		if err != nil {
			t.Fatalf("registry: %v", err)
		}
		if err := remote.WriteIndex(ref, idx); err != nil {
			t.Fatalf("registry: push index %s: %v", ref, err)
		}
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("registry: digest: %v", err)
	}
	return d.String()
}

// Delete removes the manifest that repo:tag names (and so every tag of it).
func (r *Registry) Delete(t testing.TB, repo, tag string) {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repo, tag), name.Insecure)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatalf("registry: head %s: %v", ref, err)
	}
	dref, err := name.NewDigest(r.Repo(repo)+"@"+desc.Digest.String(), name.Insecure)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	if err := remote.Delete(dref); err != nil {
		t.Fatalf("registry: delete %s: %v", dref, err)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls GET /v2/ until it answers, the process exits, or ten
// seconds pass.
func waitReady(host string, exited <-chan struct{}) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			// 401: it serves, and asks for credentials.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready on %s: %w", host, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("docker-registry exited before it was ready on %s", host)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func stop(cmd *exec.Cmd, exited <-chan struct{}) {
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// trimScheme is used by Front to turn a URL into a host.
func trimScheme(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
}
