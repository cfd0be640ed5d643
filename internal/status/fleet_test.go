package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", name, diff)
	}
}

// TestFleetLocal reads the notes of a local repository, where three hosts
// and a host of a newer agent wrote.
func TestFleetLocal(t *testing.T) {
	dir, commits := newRepo(t, 2)
	old, tip := commits[0], commits[1]

	gw := New("gw-1", tip, Applied, t0.Add(-90*time.Second))
	gw.Labels = map[string]string{"site": "berlin", "role": "gateway"}
	gw.HealthyAt = gw.AppliedAt.Add(4 * time.Second)
	gw.Images = map[string]string{"web": "1.4.2@sha256:" + strings.Repeat("9f", 32), "db": "16.1@sha256:" + strings.Repeat("0a", 32)}
	web := New("web-1", tip, RolledBack, t0.Add(-3*time.Hour))
	web.Failed = []Failure{{Resource: "container:web", Error: "not healthy within 2m0s"}}
	lag := New("edge-9", old, Applied, t0.Add(-72*time.Hour))
	for _, n := range []Note{gw, web, lag} {
		if !mustWrite(t, openNotes(t, dir, n.Host), n, WriteOptions{}) {
			t.Fatalf("Write(%s) = false", n.Host)
		}
	}
	// A note of a newer agent, added by the git command line.
	newer := `{"schema":2,"host":"next-1","commit":"` + tip + `","result":"applied","applied_at":"2026-11-26T11:59:00Z","wave":3}`
	gitCLI(t, dir, "notes", "--ref=outpost/next-1", "add", "-m", newer, tip)

	hosts, err := Fleet(context.Background(), dir, FleetOptions{})
	if err != nil {
		t.Fatalf("Fleet() error = %v", err)
	}
	var table, js bytes.Buffer
	if err := WriteTable(&table, hosts, t0); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, hosts); err != nil {
		t.Fatal(err)
	}
	golden(t, "fleet.txt", table.Bytes())
	golden(t, "fleet.json", js.Bytes())
	if got := ExitCode(hosts); got != 1 {
		t.Errorf("ExitCode() = %d, want 1 (web-1 rolled back)", got)
	}

	t.Run("commit", func(t *testing.T) {
		hosts, err := Fleet(context.Background(), dir, FleetOptions{Commit: old[:8]})
		if err != nil {
			t.Fatalf("Fleet(--commit %s) error = %v", old[:8], err)
		}
		got := map[string]string{}
		for _, h := range hosts {
			got[h.Host] = "-"
			if h.Note != nil {
				got[h.Host] = string(h.Note.Result)
			}
		}
		want := map[string]string{"edge-9": "applied", "gw-1": "-", "next-1": "-", "web-1": "-"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Fleet(--commit) results differ (-want +got):\n%s", diff)
		}
		if code := ExitCode(hosts); code != 0 {
			t.Errorf("ExitCode(--commit old) = %d, want 0", code)
		}
	})
	t.Run("bad commit", func(t *testing.T) {
		if _, err := Fleet(context.Background(), dir, FleetOptions{Commit: "xyz"}); err == nil {
			t.Errorf("Fleet(--commit xyz) error = nil, want an error")
		}
	})
}

func TestResolveCommit(t *testing.T) {
	dir, _ := newRepo(t, 1)
	a := "abcd" + strings.Repeat("1", 36)
	b := "abcd" + strings.Repeat("2", 36)
	notes := openNotes(t, dir, "h")
	mustWrite(t, notes, New("h", a, Applied, t0), WriteOptions{})
	mustWrite(t, notes, New("h", b, Applied, t0), WriteOptions{})
	tests := []struct {
		prefix string
		want   string
		err    error
	}{
		{prefix: "abcd1", want: a},
		{prefix: "ABCD2", want: b},
		{prefix: a, want: a},
		{prefix: "ffff", want: "ffff"},
		{prefix: "abcd", err: ErrAmbiguousCommit},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			hosts, err := Fleet(context.Background(), dir, FleetOptions{Commit: tt.prefix})
			if !errors.Is(err, tt.err) {
				t.Fatalf("Fleet(--commit %s) error = %v, want %v", tt.prefix, err, tt.err)
			}
			if tt.err != nil {
				return
			}
			var got string
			if len(hosts) == 1 && hosts[0].Note != nil {
				got = hosts[0].Note.Commit
			}
			if tt.want == "ffff" {
				if got != "" {
					t.Errorf("Fleet(--commit ffff) found %s, want no note", got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("Fleet(--commit %s) note commit = %q, want %s", tt.prefix, got, tt.want)
			}
		})
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {42 * time.Second, "42s"}, {61 * time.Second, "1m"},
		{3 * time.Hour, "3h"}, {47 * time.Hour, "47h"}, {72 * time.Hour, "3d"},
	}
	for _, tt := range tests {
		if got := age(tt.d); got != tt.want {
			t.Errorf("age(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestFleet50Hosts: fifty hosts push their notes to one server at the same
// time, each from its own clone; every note arrives, and the fleet view
// reads them all.
func TestFleet50Hosts(t *testing.T) {
	const hostCount = 50
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	url := srv.URL("env")
	old := repo.Commit(gitserver.Files{"f": "1"}, "one")
	tip := repo.Commit(gitserver.Files{"f": "2"}, "two")
	now := time.Now().UTC().Truncate(time.Second)

	// Host i runs tip unless i >= 40; every tenth host from 3 on failed.
	want := make([]HostStatus, hostCount)
	for i := range hostCount {
		host := fmt.Sprintf("host-%02d", i)
		commit, atTip := tip, true
		if i >= 40 {
			commit, atTip = old, false
		}
		n := New(host, commit, Applied, now.Add(-time.Duration(i)*time.Minute))
		n.Labels = map[string]string{"site": []string{"berlin", "paris"}[i%2]}
		n.Images = map[string]string{"web": fmt.Sprintf("1.%d.0@sha256:%s", i, strings.Repeat(fmt.Sprintf("%02x", i), 32))}
		if i%10 == 3 {
			n.Result = Failed
			n.Failed = []Failure{{Resource: "container:web", Error: "pull: manifest unknown"}}
		}
		n = n.normalized()
		want[i] = HostStatus{Host: host, Note: &n, AtTip: atTip}
	}

	var wg sync.WaitGroup
	errs := make([]error, hostCount)
	retries := make([]int, hostCount)
	for i := range hostCount {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			notes, err := Open(hostRepo(t), want[i].Host)
			if err != nil {
				errs[i] = err
				return
			}
			first := New(want[i].Host, old, Applied, now.Add(-2*time.Hour))
			for _, n := range []Note{first, *want[i].Note} {
				if _, err := notes.Write(ctx, n, WriteOptions{}); err != nil {
					errs[i] = err
					return
				}
			}
			p, err := NewPusher(notes, PushOptions{URL: url})
			if err != nil {
				errs[i] = err
				return
			}
			// A push that fails is retried, as Run would; none may fail
			// for good.
			for attempt := range 5 {
				if err = p.Push(ctx); err == nil {
					break
				}
				retries[i] = attempt + 1
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("host %s: %v", want[i].Host, err)
		}
	}
	t.Logf("pushes retried: %v", retries)

	if got := strings.Count(mustServerGit(t, repo, "for-each-ref", "refs/notes/outpost/"), "\n") + 1; got != hostCount {
		t.Fatalf("notes refs on the server = %d, want %d", got, hostCount)
	}
	for _, h := range want {
		got, ok := serverNote(t, repo, h.Host, h.Note.Commit)
		if !ok {
			t.Errorf("server lacks %s's note on %s", h.Host, h.Note.Commit)
			continue
		}
		if diff := cmp.Diff(*h.Note, got); diff != "" {
			t.Errorf("%s's note on the server differs (-want +got):\n%s", h.Host, diff)
		}
	}

	hosts, err := Fleet(context.Background(), url, FleetOptions{})
	if err != nil {
		t.Fatalf("Fleet(%s) error = %v", url, err)
	}

	if diff := cmp.Diff(want, hosts); diff != "" {
		t.Errorf("Fleet() differs (-want +got):\n%s", diff)
	}

	var table bytes.Buffer
	if err := WriteTable(&table, hosts, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n")
	if len(lines) != hostCount+1 || !strings.HasPrefix(lines[0], "HOST ") {
		t.Fatalf("WriteTable() = %d lines starting %q, want a header and %d hosts", len(lines), lines[0], hostCount)
	}
	for i, h := range want {
		f := strings.Fields(lines[i+1])
		commit := short(h.Note.Commit)
		if h.AtTip {
			commit += " (tip)"
		}
		for _, s := range []string{h.Host, "site=" + h.Note.Labels["site"], commit, string(h.Note.Result), fmt.Sprintf("web=1.%d.0@sha256:%s", i, strings.Repeat(fmt.Sprintf("%02x", i), 6))} {
			if !strings.Contains(lines[i+1], s) {
				t.Errorf("table line %q lacks %q", lines[i+1], s)
			}
		}
		if f[0] != h.Host {
			t.Errorf("table line %d starts with %q, want %s", i+1, f[0], h.Host)
		}
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, hosts); err != nil {
		t.Fatal(err)
	}
	var decoded []HostStatus
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatalf("WriteJSON() is not JSON: %v", err)
	}
	if diff := cmp.Diff(hosts, decoded); diff != "" {
		t.Errorf("JSON round trip differs (-want +got):\n%s", diff)
	}

	if got := ExitCode(hosts); got != 1 {
		t.Errorf("ExitCode(fleet with failed hosts) = %d, want 1", got)
	}
	var healthy []HostStatus
	for _, h := range hosts {
		if !h.Note.Result.Failure() {
			healthy = append(healthy, h)
		}
	}
	if got := ExitCode(healthy); got != 0 {
		t.Errorf("ExitCode(healthy hosts) = %d, want 0", got)
	}

	t.Run("commit", func(t *testing.T) {
		hosts, err := Fleet(context.Background(), url, FleetOptions{Commit: old[:10]})
		if err != nil {
			t.Fatalf("Fleet(--commit) error = %v", err)
		}
		for i, h := range hosts {
			wantResult := Applied
			if i >= 40 {
				wantResult = want[i].Note.Result
			}
			if h.Note == nil || h.Note.Commit != old || h.Note.Result != wantResult || h.AtTip {
				t.Errorf("Fleet(--commit old)[%s] = %+v, want %s on %s, not at tip", h.Host, h.Note, wantResult, old)
			}
		}
	})

	t.Run("ssh", func(t *testing.T) {
		s := root.ServeSSH()
		tr, err := pull.Config{URL: s.URL("env"), Auth: pull.Auth{SSHKeyFile: s.KeyFile, KnownHostsFile: s.KnownHostsFile}}.Transport()
		if err != nil {
			t.Fatalf("Transport() error = %v", err)
		}
		hosts, err := Fleet(context.Background(), tr.URL, FleetOptions{Auth: tr.Auth})
		if err != nil {
			t.Fatalf("Fleet(ssh) error = %v", err)
		}
		if diff := cmp.Diff(want, hosts); diff != "" {
			t.Errorf("Fleet(ssh) differs (-want +got):\n%s", diff)
		}
	})
}

// A new status repository (status.remote) holds nothing yet: an empty
// fleet, not an error.
func TestFleetEmptyRemote(t *testing.T) {
	root := gitserver.NewRoot(t)
	root.Create("status")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	hosts, err := Fleet(context.Background(), srv.URL("status"), FleetOptions{})
	if err != nil || len(hosts) != 0 {
		t.Fatalf("Fleet(empty repository) = %v, %v, want no hosts and no error", hosts, err)
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, hosts); err != nil || strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("WriteJSON(no hosts) = %q, %v, want []", b.String(), err)
	}
	if code := ExitCode(hosts); code != 0 {
		t.Errorf("ExitCode(no hosts) = %d, want 0", code)
	}

	// A status repository with notes but no branch: nothing is at a tip.
	notes := mustOpen(t, hostRepo(t), "h")
	mustWrite(t, notes, New("h", commitA, Applied, time.Now()), WriteOptions{})
	if err := mustPusher(t, notes, PushOptions{URL: srv.URL("status")}).Push(context.Background()); err != nil {
		t.Fatalf("Push() error = %v", err)
	}
	hosts, err = Fleet(context.Background(), srv.URL("status"), FleetOptions{})
	if err != nil || len(hosts) != 1 || hosts[0].Note == nil || hosts[0].AtTip {
		t.Fatalf("Fleet(status repository) = %+v, %v, want host h's note, not at a tip", hosts, err)
	}
}

// TestWriteTableQuotes checks that a forged note (another host writes it)
// cannot add a row or drive the terminal: its strings print quoted.
func TestWriteTableQuotes(t *testing.T) {
	n := New("evil\nforged-1  -  abc  applied", "abc", Applied, t0)
	n.Labels = map[string]string{"site": "x\x1b[2J"}
	n.Images = map[string]string{"web\t": "1\u009b"}
	hosts := []HostStatus{{Host: n.Host, Note: &n, Warning: "bad\rnote"}}
	var b bytes.Buffer
	if err := WriteTable(&b, hosts, t0); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, r := range got {
		if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f)) {
			t.Errorf("WriteTable() printed the control character %U: %q", r, got)
		}
	}
	if lines := strings.Count(got, "\n"); lines != 3 {
		t.Errorf("WriteTable() printed %d lines, want 3 (header, one row, one warning): %q", lines, got)
	}
	for _, want := range []string{`"evil\nforged-1  -  abc  applied"`, `"site=x\x1b[2J"`, `"web\t=1\u009b"`, `"bad\rnote"`} {
		if !strings.Contains(got, want) {
			t.Errorf("WriteTable() = %q, want it to contain %s", got, want)
		}
	}
}

func TestWriteTableShowsDigest(t *testing.T) {
	git := New("web-1", commitA, Applied, t0)
	art := New("web-2", commitA, Applied, t0)
	art.Digest = "sha256:0a0a0a0a0a0a" + commitA + "0a0a0a0a0a0a"
	hosts := []HostStatus{{Host: git.Host, Note: &git, AtTip: true}, {Host: art.Host, Note: &art, AtTip: true}}
	var b bytes.Buffer
	if err := WriteTable(&b, hosts, t0); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"web-1  -       1111111 (tip)  ", "web-2  -       1111111 sha256:0a0a0a0a0a0a (tip)  "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteTable() =\n%s\nwant a row with %q", b.String(), want)
		}
	}
}
