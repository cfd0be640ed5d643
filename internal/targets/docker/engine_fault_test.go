package docker

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/outpost-gitops/outpost/internal/spec"
)

// engineProxy is a unix socket in front of the Docker engine's, which a
// test can cut (every open connection closed, the event stream with them)
// and make answer errors.
type engineProxy struct {
	path string
	ln   net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]bool
	failed bool // answer every request with 500
	wg     sync.WaitGroup
}

func newEngineProxy(t *testing.T) *engineProxy {
	t.Helper()
	p := &engineProxy{path: filepath.Join(t.TempDir(), "docker.sock"), conns: map[net.Conn]bool{}}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *engineProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *engineProxy) serve(c net.Conn) {
	p.track(c, true)
	defer p.track(c, false)
	defer c.Close()
	p.mu.Lock()
	failed := p.failed
	p.mu.Unlock()
	if failed {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			body := `{"message":"engine failing on purpose"}`
			resp := "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\n\r\n" + body
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	}
	up, err := net.Dial("unix", "/var/run/docker.sock")
	if err != nil {
		return
	}
	p.track(up, true)
	defer p.track(up, false)
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// cut closes every open connection, as an engine restart does.
func (p *engineProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// fail makes new connections answer 500 to every request (and cuts the open
// ones), or goes back to passing them through.
func (p *engineProxy) fail(on bool) {
	p.mu.Lock()
	p.failed = on
	p.mu.Unlock()
	p.cut()
}

// TestEngineFaults puts the driver behind a proxy of the real engine's
// socket: with the event stream cut, the watcher reconnects and sees the
// next drift; with the engine answering errors, a converge fails with the
// reason and changes nothing, and the next one after the engine recovers
// repairs the host.
func TestEngineFaults(t *testing.T) {
	proxy := newEngineProxy(t)
	d := newDriverT(t, Options{Host: "unix://" + proxy.path, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	cli := rawClient(t)
	name := uniqueName(t, "fault")
	r := web(name)
	ctx := testCtx(t)
	if _, err := d.CheckApply(ctx, r, true); err != nil {
		t.Fatalf("CheckApply = %v", err)
	}
	ch := watch(t, d, r)

	// The event stream is cut three times in a row: each time the watcher
	// reconnects and notifies the resource again, since events may have
	// been missed.
	for i := range 3 {
		drain(ch)
		proxy.cut()
		waitNotify(t, ch, r.ID)
		if t.Failed() {
			t.Fatalf("no notification after cut %d", i+1)
		}
	}
	// After the reconnects, a real event still arrives.
	time.Sleep(200 * time.Millisecond)
	drain(ch)
	if err := cli.ContainerStop(ctx, name, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNotify(t, ch, r.ID)

	// The engine answers errors: the converge fails and says why.
	proxy.fail(true)
	if _, err := d.CheckApply(ctx, r, true); err == nil {
		t.Fatal("CheckApply with the engine failing = nil error, want the engine's error")
	}
	if in := inspect(t, cli, name); in.State.Running {
		t.Fatal("the stopped container runs although the engine failed every call")
	}

	// It recovers: the next converge repairs the drift.
	proxy.fail(false)
	got, err := d.CheckApply(ctx, r, true)
	if err != nil {
		t.Fatalf("CheckApply after the engine recovered = %v", err)
	}
	if got.Action != spec.ActionUpdate {
		t.Errorf("CheckApply after the engine recovered = %+v, want the stopped container repaired", got)
	}
	if in := inspect(t, cli, name); !in.State.Running {
		t.Error("the container does not run after the repair")
	}
	// And the watcher is still following events.
	drain(ch)
	if err := cli.ContainerStop(ctx, name, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNotify(t, ch, r.ID)
}
