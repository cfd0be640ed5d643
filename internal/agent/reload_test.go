package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/internal/pull/registry"
	"github.com/outpost-gitops/outpost/internal/status"
)

// clientLog records the clients that a daemon builds, and its pushers'
// lifecycles, in order.
type clientLog struct {
	mu     sync.Mutex
	events []string
}

func (l *clientLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *clientLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// recordingPusher is a notes pusher that records when it runs and stops,
// named by the token its credentials send.
type recordingPusher struct {
	log   *clientLog
	token string
}

func (p *recordingPusher) Notify() {}

func (p *recordingPusher) Push(context.Context) error { return nil }

func (p *recordingPusher) Run(ctx context.Context) error {
	p.log.add("run pusher " + p.token)
	<-ctx.Done()
	p.log.add("stop pusher " + p.token)
	return nil
}

// sentToken is the token that auth sends (as the basic auth user name).
func sentToken(t *testing.T, auth any) string {
	a, ok := auth.(githttp.AuthMethod)
	if !ok {
		t.Errorf("auth %T is not an HTTP auth method", auth)
		return ""
	}
	req := httptest.NewRequest(http.MethodGet, "https://git.example.com/", nil)
	a.SetAuth(req)
	user, _, _ := req.BasicAuth()
	return user
}

// TestReloadRebuildsCredentialClients sends the daemon a new configuration
// whose token file differs, and checks that each client that holds
// credentials (the source, the registry client and the notes pusher) is
// built again from it, and the old pusher stopped before the new one runs.
// A configuration whose source cannot be built keeps every old client.
func TestReloadRebuildsCredentialClients(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	state := filepath.Join(dir, "state")
	config := func(tokenFile string) *Config {
		c := &Config{StateDir: state, Root: filepath.Join(dir, "root")}
		c.Host.Name = "reload-1"
		c.Source.URL = "test://"
		c.Source.Interval = Duration(time.Hour)
		c.Source.Auth.TokenFile = tokenFile
		c.Status.Push = true
		c.Status.Remote = "https://git.example.com/notes.git"
		return c
	}
	cfgA, cfgB := config(token("tok-a")), config(token("tok-b"))
	broken := config(filepath.Join(dir, "missing"))
	name := map[*Config]string{cfgA: "A", cfgB: "B", broken: "broken"}

	events := &clientLog{}
	src := &historySource{}
	src.push("r1", fileManifest("/etc/reload.conf", "1\n"))
	reload := make(chan *Config)
	runDaemon(t, cfgA, DaemonOptions{
		Reload: reload,
		newSource: func(c *Config, _ *slog.Logger) (revSource, error) {
			events.add("source " + name[c])
			if c == broken {
				return nil, errors.New("no token file")
			}
			return src, nil
		},
		newImages: func(c *Config, log *slog.Logger, store *registry.Store) (*images, error) {
			events.add("images " + name[c])
			return newImages(c, log, store)
		},
		newPusher: func(n *status.Notes, o status.PushOptions) (notesPusher, error) {
			tok := sentToken(t, o.Auth)
			events.add("pusher " + tok)
			return &recordingPusher{log: events, token: tok}, nil
		},
	})
	waitFor(t, "the first pusher running", func() bool { return len(events.get()) == 4 })

	reload <- cfgB
	// The loop takes the next configuration only when it has finished
	// with this one.
	reload <- broken
	reload <- broken
	wantBuilt := []string{
		"source A", "images A", "pusher tok-a",
		"source B", "images B", "pusher tok-b",
		// A configuration that fails to build changes nothing.
		"source broken", "source broken",
	}
	wantRun := []string{"run pusher tok-a", "stop pusher tok-a", "run pusher tok-b"}
	waitFor(t, "the reloads", func() bool { return len(events.get()) >= len(wantBuilt)+len(wantRun) })
	time.Sleep(50 * time.Millisecond) // anything that should not happen has had its chance
	var built, run []string
	at := map[string]int{}
	for i, e := range events.get() {
		at[e] = i
		if strings.HasPrefix(e, "run ") || strings.HasPrefix(e, "stop ") {
			run = append(run, e)
		} else {
			built = append(built, e)
		}
	}
	if diff := cmp.Diff(wantBuilt, built); diff != "" {
		t.Errorf("clients built (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantRun, run); diff != "" {
		t.Errorf("pushers run and stopped (-want +got):\n%s", diff)
	}
	// Everything new is built before anything old stops.
	if at["images B"] > at["stop pusher tok-a"] || at["pusher tok-b"] > at["stop pusher tok-a"] {
		t.Errorf("the old pusher stopped before the new clients were built: %q", events.get())
	}
}

// failingSource fails each poll with the next of its errors, then succeeds
// with its history's head.
type failingSource struct {
	historySource
	mu   sync.Mutex
	errs []error
}

func (s *failingSource) Poll(ctx context.Context) (string, error) {
	s.mu.Lock()
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		s.mu.Unlock()
		return "", err
	}
	s.mu.Unlock()
	return s.historySource.Poll(ctx)
}

func (s *failingSource) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.errs)
}

// TestPollFailureLoggedOnChange checks that refused polls are logged at
// warn once, with a hint, however often they repeat; that another failure
// is news again; and that the recovery is logged.
func TestPollFailureLoggedOnChange(t *testing.T) {
	t.Parallel()
	refused := fmt.Errorf("%w: 401 Unauthorized", pull.ErrAuth)
	down := fmt.Errorf("%w: connection refused", pull.ErrUnreachable)
	src := &failingSource{errs: []error{refused, refused, refused, refused, down, down}}
	src.push("r1", fileManifest("/etc/poll.conf", "1\n"))
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedBuffer{b: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := &Config{Root: t.TempDir()}
	cfg.Source.URL = "test://"
	cfg.Source.Interval = Duration(10 * time.Millisecond)
	runDaemon(t, cfg, DaemonOptions{
		Logger:    logger,
		newSource: func(*Config, *slog.Logger) (revSource, error) { return src, nil },
	})
	waitFor(t, "every failure and a poll that works", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return src.left() == 0 && strings.Contains(logs.String(), "poll succeeded again")
	})
	mu.Lock()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	mu.Unlock()
	var got []string
	for _, l := range lines {
		var e struct{ Level, Msg, Hint string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if strings.Contains(e.Msg, "poll") && e.Level != "DEBUG" {
			got = append(got, fmt.Sprintf("%s %s hint=%t", e.Level, e.Msg, e.Hint != ""))
		}
	}
	want := []string{
		"WARN poll failed: the server refused the credentials; keeping the last good revision hint=true",
		"WARN poll failed; keeping the last good revision hint=false",
		"INFO poll succeeded again hint=false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("poll lines at info and above (-want +got):\n%s", diff)
	}
}

type lockedBuffer struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
