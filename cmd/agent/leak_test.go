package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// Planted secrets: each is unique, so any occurrence in what the agent emits
// is a leak.
const (
	envSecret      = "envsecret-7f3a9c51"  // a container's env value
	envSecretNext  = "envsecret-b2d8e1c4"  // the same variable's next value
	urlPassword    = "urlpass-5e1d0a77"    // a password in the source URL
	wrongPassword  = "urlwrong-0c9b2e13"   // a wrong one, so that a fetch fails
	tokenSecret    = "tokensecret-93c4f7a" // the content of token_file
	passwordSecret = "pwfile-41d6e08b"     // the content of password_file
)

var planted = []string{envSecret, envSecretNext, urlPassword, wrongPassword, tokenSecret, passwordSecret}

// syncBuffer is a bytes.Buffer that the daemon's goroutines may write to
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// emitted collects everything the agent printed, logged or wrote, by where
// it came from, to be searched for the planted secrets.
type emitted map[string]string

func (e emitted) add(where, text string) {
	e[where] += text
}

// outpost runs the command line in this process and records its output.
func (e emitted) outpost(t *testing.T, name string, wantStatus int, args ...string) string {
	t.Helper()
	var stdout, stderr syncBuffer
	got := run(context.Background(), args, &stdout, &stderr)
	e.add(name+" stdout", stdout.String())
	e.add(name+" stderr", stderr.String())
	if wantStatus >= 0 && got != wantStatus {
		t.Fatalf("outpost %s exited %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, wantStatus, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// addTree adds every file of dir, except the objects of Git repositories
// (which are compressed; see addNotes), and each Git repository's notes.
func (e emitted) addTree(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "objects" {
			return fs.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		e.add(p, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// addNotes adds the content of every note of every outpost notes ref of the
// repository gitDir.
func (e emitted) addNotes(t *testing.T, gitDir string) int {
	t.Helper()
	refs, err := exec.Command("git", "--git-dir", gitDir, "for-each-ref", "--format=%(refname)", "refs/notes/").Output()
	if err != nil {
		t.Fatalf("git for-each-ref in %s: %v", gitDir, err)
	}
	n := 0
	for _, ref := range strings.Fields(string(refs)) {
		list, err := exec.Command("git", "--git-dir", gitDir, "notes", "--ref", ref, "list").Output()
		if err != nil {
			t.Fatalf("git notes list %s: %v", ref, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
			blob, _, _ := strings.Cut(line, " ")
			if blob == "" {
				continue
			}
			b, err := exec.Command("git", "--git-dir", gitDir, "cat-file", "-p", blob).Output()
			if err != nil {
				t.Fatalf("git cat-file %s: %v", blob, err)
			}
			e.add(gitDir+" "+ref, string(b))
			n++
		}
	}
	return n
}

func (e emitted) check(t *testing.T) {
	t.Helper()
	for where, text := range e {
		for _, s := range planted {
			if i := strings.Index(text, s); i >= 0 {
				lo, hi := max(0, i-120), min(len(text), i+len(s)+60)
				t.Errorf("secret %q leaked in %s: ...%s...", s, where, text[lo:hi])
			}
		}
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// TestNoSecretLeaks plants secrets (a container's env values, a password in
// the source URL, a wrong one, a token file's and a password file's content)
// and runs the agent as an operator does, against a real Git server over
// smart HTTP with basic auth, a real registry and the Docker engine:
// apply, diff and status in text and JSON, logs in text and JSON at debug
// level, a failing fetch, and the daemon with its status notes pushed to the
// server. No planted secret may appear in any output, log, state file or
// note.
// gitOut runs git in the repository dir and returns its output.
func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", dir}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// waitDaemonNote waits until the daemon behind sock reports commit head
// applied (or otherwise decided) and a notes ref is on the server gitDir,
// and returns its status in JSON; it fails t with the daemon's logs after
// 90 s.
func waitDaemonNote(t *testing.T, sock, cfgPath, head, gitDir string, logs *syncBuffer) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var so, se syncBuffer
		run(context.Background(), []string{"status", "--json", "--socket", sock, "--config", cfgPath}, &so, &se)
		var s struct{ Source, Commit, Result string }
		if json.Unmarshal([]byte(so.String()), &s) == nil && s.Source == "daemon" && s.Commit == head && s.Result != "" {
			if notes, _ := exec.Command("git", "--git-dir", gitDir, "for-each-ref", "refs/notes/").Output(); len(notes) > 0 {
				return so.String()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not apply %s and push its note in time; status: %s %s\nlogs:\n%s", head, so.String(), se.String(), logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	env := root.Create("env")
	files := root.Create("files")
	withURLPass := root.ServeHTTP(gitserver.HTTPOptions{Username: "outpost", Password: urlPassword})
	withToken := root.ServeHTTP(gitserver.HTTPOptions{Username: "outpost", Password: tokenSecret})
	withPassFile := root.ServeHTTP(gitserver.HTTPOptions{Username: "outpost", Password: passwordSecret})

	reg := registry.Start(t)
	reg.Push(t, "leak", registry.Image(t, registry.Config{Entrypoint: []string{"/bin/sleep", "3600"}, StopSignal: "SIGKILL"}), "1")
	cname := fmt.Sprintf("outpost-leak-%d", os.Getpid())
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", "-v", cname).Run() })

	container := func(value string) string {
		return fmt.Sprintf("kind: container\nname: %s\nimage: %s\ntag: \"1\"\nenv: {API_KEY: %s, LOG_LEVEL: debug}\n", cname, reg.Repo("leak"), value)
	}
	// A file that holds the env value too: its diff must be masked.
	keyFile := func(value string) string {
		return fmt.Sprintf("kind: file\npath: /etc/app.env\ncontent: \"LOG_LEVEL=debug\\nAPI_KEY=%s\\n\"\n", value)
	}
	env.Commit(gitserver.Files{
		"app.yaml":   "kind: file\npath: /etc/app.conf\ncontent: \"plain\\n\"\n",
		"key.yaml":   keyFile(envSecret),
		"web.yaml":   container(envSecret),
		"fleet.yaml": "targets:\n  - path: .\n",
	}, "first")
	files.Commit(gitserver.Files{"f.yaml": "kind: file\npath: /etc/f.conf\ncontent: f\n"}, "files")

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	sandbox := filepath.Join(dir, "root")
	sock := filepath.Join(dir, "run", "outpost.sock")
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("source:\n  url: http://outpost:%s@%s/env.git\n  interval: 1s\nhost: {name: leak-1}\nstate_dir: %s\n",
		urlPassword, withURLPass.Addr, state), 0o600)
	common := []string{"--config", cfgPath, "--root", sandbox}

	out := emitted{}
	out.outpost(t, "apply", 0, append([]string{"apply", "-vv"}, common...)...)
	out.outpost(t, "diff in sync --json", 0, append([]string{"diff", "--json", "-vv", "--log-format", "json"}, common...)...)

	// The env value changes: diff and apply name the field, not the values.
	env.Commit(gitserver.Files{"web.yaml": container(envSecretNext), "key.yaml": keyFile(envSecretNext)}, "rotate")
	d := out.outpost(t, "diff", 1, append([]string{"diff", "-vv"}, common...)...)
	if !strings.Contains(d, cname) {
		t.Errorf("diff after the env changed =\n%s\nwant a line for container %s", d, cname)
	}
	if !strings.Contains(d, "~ file /etc/app.env (content)\n    <secret: 2 lines changed>\n") {
		t.Errorf("diff after the env changed =\n%s\nwant the file that holds it masked", d)
	}
	out.outpost(t, "diff --json", 1, append([]string{"diff", "--json", "-vv", "--log-format", "json"}, common...)...)
	out.outpost(t, "apply --json", 0, append([]string{"apply", "--json", "-vv", "--log-format", "json"}, common...)...)
	env.Commit(gitserver.Files{"key.yaml": keyFile(envSecret)}, "file only")
	out.outpost(t, "apply -v", 0, append([]string{"apply", "-vv"}, common...)...)
	out.outpost(t, "status --json (state)", 0, append([]string{"status", "--json", "--socket", sock}, common...)...)
	out.outpost(t, "status (state)", 0, append([]string{"status", "--socket", sock}, common...)...)

	// A fetch that fails, with a wrong password in the URL: the error is
	// printed and logged, the password is not.
	badCfg := filepath.Join(dir, "bad.yaml")
	writeFile(t, badCfg, fmt.Sprintf("source:\n  url: http://outpost:%s@%s/env.git\nhost: {name: leak-1}\nstate_dir: %s\n",
		wrongPassword, withURLPass.Addr, filepath.Join(dir, "bad-state")), 0o600)
	out.outpost(t, "apply with a wrong password", -1, "apply", "-vv", "--config", badCfg, "--root", sandbox)
	out.outpost(t, "apply with a wrong password --json", -1, "apply", "--json", "-vv", "--log-format", "json", "--config", badCfg, "--root", sandbox)

	// A token file and a password file, each the password of a server.
	for _, c := range []struct{ name, field, secret, addr string }{
		{"token", "token_file", tokenSecret, withToken.Addr},
		{"password", "password_file", passwordSecret, withPassFile.Addr},
	} {
		secret := filepath.Join(dir, c.name)
		writeFile(t, secret, c.secret+"\n", 0o600)
		p := filepath.Join(dir, c.name+".yaml")
		st := filepath.Join(dir, c.name+"-state")
		writeFile(t, p, fmt.Sprintf("source:\n  url: http://%s/files.git\n  auth: {username: outpost, %s: %s}\nhost: {name: leak-2}\nstate_dir: %s\n",
			c.addr, c.field, secret, st), 0o644)
		args := []string{"--config", p, "--root", filepath.Join(dir, c.name+"-root")}
		out.outpost(t, c.name+" apply", 0, append([]string{"apply", "-vv"}, args...)...)
		out.outpost(t, c.name+" diff --json", 0, append([]string{"diff", "--json", "-vv", "--log-format", "json"}, args...)...)
		out.addTree(t, st)
	}

	// The daemon: it converges the next commit, writes a note and pushes
	// it to the server; status answers from the socket.
	env.Commit(gitserver.Files{"web.yaml": container(envSecret)}, "rotate back")
	head := env.Head("main")
	ctx, cancel := context.WithCancel(context.Background())
	var dout, derr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"run", "-vv", "--log-format", "json", "--socket", sock}, common...), &dout, &derr)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	waitDaemonNote(t, sock, cfgPath, head, env.Path, &derr)
	// plan, over the notes the daemon pushed: every revision against the
	// first, in the three outputs.
	first := strings.TrimSpace(gitOut(t, env.Path, "rev-list", "--max-parents=0", "main"))
	for _, o := range []string{"--markdown", "--json", "-vv"} {
		out.outpost(t, "plan "+o, 1, "plan", "--source", env.Path, "--base", first, "--head", "main~2", o, "--log-format", "json")
	}
	out.outpost(t, "status --json (daemon)", 0, "status", "--json", "--socket", sock, "--config", cfgPath)
	out.outpost(t, "status (daemon)", 0, "status", "--socket", sock, "--config", cfgPath)
	stop()
	out.add("daemon stdout", dout.String())
	out.add("daemon logs", derr.String())

	if n := out.addNotes(t, env.Path) + out.addNotes(t, filepath.Join(state, "notes")); n == 0 {
		t.Errorf("no status note found on the server or in the state directory")
	}
	out.addTree(t, state)
	out.addTree(t, filepath.Join(dir, "bad-state"))
	if _, ok := out[filepath.Join(state, "state.json")]; !ok {
		t.Errorf("state.json not found in %s", state)
	}
	// The container on the host carries the value, as it must; the
	// agent's own label on it must not.
	if b, err := exec.Command("docker", "inspect", "--format", "{{json .Config.Labels}}", cname).Output(); err == nil {
		out.add("container labels", string(b))
	} else {
		t.Errorf("docker inspect %s: %v", cname, err)
	}
	out.check(t)
}
