package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/registry"
)

// Planted plaintexts of the encrypted files in TestSecretsInContainers.
const (
	dbSecret     = "dbpass-6c1e94f0"  // an env_secrets variable and a file
	apiSecret    = "apikey-d07b3a25"  // a secret_files file
	apiSecretNew = "apikey-8e52f1c9"  // its next value
	tplSecret    = "tplvalue-3f8a0d6" // a template's secret
)

// ageEncrypt encrypts plain with the real age CLI to recipient, armored.
func ageEncrypt(t *testing.T, recipient, plain string) string {
	t.Helper()
	cmd := exec.Command("age", "--armor", "--recipient", recipient)
	cmd.Stdin = strings.NewReader(plain)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("age --encrypt: %v", err)
	}
	return string(out)
}

// dockerInspect returns the fields of a container that format selects.
func dockerInspect(t *testing.T, name, format string) string {
	t.Helper()
	return docker(t, "inspect", "--format", format, name)
}

// TestSecretsInContainers runs the command line as an operator does, with
// the real age CLI, a Git server over smart HTTP, a registry and the
// Docker engine: a container takes one secret as a variable (env_secrets)
// and one as a file bound from the secrets directory (secret_files); a file
// and a template take others. The same plaintexts encrypted again change
// nothing and restart nothing; a new value replaces the container. Then
// the daemon converges and pushes its note. No plaintext appears in any
// output, log, state file, note or label, and the container sees each.
func TestSecretsInContainers(t *testing.T) {
	t.Parallel()
	root := gitserver.NewRoot(t)
	env := root.Create("env")
	srv := root.ServeHTTP(gitserver.HTTPOptions{})
	reg := registry.Start(t)
	reg.Push(t, "sec", registry.Image(t, registry.Config{Entrypoint: []string{"/bin/sleep", "3600"}, StopSignal: "SIGKILL"}), "1")
	cname := fmt.Sprintf("outpost-secrets-%d", os.Getpid())
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", "-v", cname).Run() })

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	sandbox := filepath.Join(dir, "root")
	// The secrets directory on a tmpfs, as /run is.
	runDir, err := os.MkdirTemp("/dev/shm", "outpost-secrets-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("source:\n  url: http://%s/env.git\n  interval: 1s\nhost: {name: sec-1}\nstate_dir: %s\nsecrets: {run_dir: %s}\n",
		srv.Addr, state, runDir), 0o600)
	common := []string{"--config", cfgPath, "--root", sandbox}
	out := emitted{}
	recipient := strings.TrimSpace(out.outpost(t, "secrets key", 0, "secrets", "key", "--config", cfgPath))

	container := fmt.Sprintf("kind: container\nname: %s\nimage: %s\ntag: \"1\"\nenv: {LOG_LEVEL: debug}\n"+
		"env_secrets: {DB_PASSWORD: secrets/db.age}\nsecret_files: {/run/secrets/api: secrets/api.age}\n", cname, reg.Repo("sec"))
	files := func(api string) gitserver.Files {
		return gitserver.Files{
			"secrets/db.age":      ageEncrypt(t, recipient, dbSecret),
			"secrets/api.age":     ageEncrypt(t, recipient, api),
			"secrets/tpl.env.age": ageEncrypt(t, recipient, "token="+tplSecret+"\n"),
		}
	}
	first := files(apiSecret)
	first["web.yaml"] = container
	first["db.yaml"] = "kind: file\npath: /etc/app/db.pass\nsource: secrets/db.age\n"
	first["tpl.yaml"] = "kind: file\npath: /etc/app/url\ntemplate: true\ncontent: 'https://api/?{{ secret \"secrets/tpl.env.age\" \"token\" }}'\n"
	env.Commit(first, "first")

	out.outpost(t, "apply", 0, append([]string{"apply", "-vv"}, common...)...)
	if got := dockerInspect(t, cname, "{{range .Config.Env}}{{println .}}{{end}}"); !strings.Contains(got, "DB_PASSWORD="+dbSecret) {
		t.Errorf("the container's environment =\n%s\nwant DB_PASSWORD from secrets/db.age", got)
	}
	exec1 := func(args ...string) string {
		t.Helper()
		b, err := exec.Command("docker", append([]string{"exec", cname}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker exec %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	if got := exec1("cat", "/run/secrets/api"); got != apiSecret {
		t.Errorf("/run/secrets/api in the container = %q, want the plaintext of secrets/api.age", got)
	}
	if got := dockerInspect(t, cname, `{{range .Mounts}}{{if eq .Destination "/run/secrets/api"}}{{.Source}} {{.RW}}{{end}}{{end}}`); !strings.HasPrefix(got, filepath.Join(runDir, cname)+"/") || !strings.HasSuffix(got, " false") {
		t.Errorf("the bind of /run/secrets/api = %q, want a read-only file under %s", got, filepath.Join(runDir, cname))
	}
	if st, err := os.Stat(filepath.Join(runDir, cname)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the container's secrets directory: %v, %v; want mode 0700", st.Mode(), err)
	}
	for p, want := range map[string]string{"etc/app/db.pass": dbSecret, "etc/app/url": "https://api/?" + tplSecret} {
		b, err := os.ReadFile(filepath.Join(sandbox, p))
		if err != nil || string(b) != want {
			t.Errorf("/%s = %q, %v; want %q", p, b, err, want)
		}
	}
	id := dockerInspect(t, cname, "{{.Id}} {{.State.StartedAt}}")

	// Every secret encrypted again (new ciphertexts, same plaintexts):
	// nothing to do, and the container is not restarted.
	env.Commit(files(apiSecret), "re-encrypt")
	out.outpost(t, "diff after re-encryption", 0, append([]string{"diff", "-vv"}, common...)...)
	if got := out.outpost(t, "apply after re-encryption", 0, append([]string{"apply", "--json", "-vv", "--log-format", "json"}, common...)...); !strings.Contains(got, `"changes": []`) || !strings.Contains(got, `"result": "applied"`) {
		t.Errorf("apply after the same plaintexts were encrypted again =\n%s\nwant nothing changed", got)
	}
	if got := dockerInspect(t, cname, "{{.Id}} {{.State.StartedAt}}"); got != id {
		t.Errorf("the container after re-encryption = %s, want %s: nothing restarted", got, id)
	}

	// A new value of the secret file: diff names the field, apply
	// replaces the container, and the new one reads the new value.
	env.Commit(files(apiSecretNew), "rotate the API key")
	d := out.outpost(t, "diff after rotation", 1, append([]string{"diff", "-vv"}, common...)...)
	if !strings.Contains(d, "~ container "+cname) {
		t.Errorf("diff after the secret file changed =\n%s\nwant container %s replaced", d, cname)
	}
	out.outpost(t, "apply after rotation", 0, append([]string{"apply", "-vv"}, common...)...)
	if got := dockerInspect(t, cname, "{{.Id}} {{.State.StartedAt}}"); got == id {
		t.Errorf("the container after its secret file changed is the same (%s), want it replaced", got)
	}
	if got := exec1("cat", "/run/secrets/api"); got != apiSecretNew {
		t.Errorf("/run/secrets/api after rotation = %q, want the new plaintext", got)
	}

	// The daemon on the next commit: it converges and pushes its note.
	head := env.Commit(gitserver.Files{"motd.yaml": "kind: file\npath: /etc/motd\ncontent: hello\n"}, "motd")
	sock := filepath.Join(dir, "outpost.sock")
	ctx, cancel := context.WithCancel(context.Background())
	var dout, derr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"run", "-vv", "--log-format", "json", "--socket", sock}, common...), &dout, &derr)
	}()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	out.add("status --json (daemon)", waitDaemonNote(t, sock, cfgPath, head, env.Path, &derr))
	out.outpost(t, "status (daemon)", 0, "status", "--socket", sock, "--config", cfgPath)
	base := strings.TrimSpace(gitOut(t, env.Path, "rev-list", "--max-parents=0", "main"))
	for _, o := range []string{"--markdown", "--json", "-vv"} {
		out.outpost(t, "plan "+o, -1, "plan", "--source", env.Path, "--base", base, "--head", "main", o, "--log-format", "json")
	}
	stop()
	out.add("daemon stdout", dout.String())
	out.add("daemon logs", derr.String())

	notes := out.addNotes(t, env.Path)
	if notes == 0 {
		t.Errorf("no status note on the server")
	}
	if !strings.Contains(out[env.Path+" refs/notes/outpost/sec-1"], recipient) {
		t.Errorf("the host's note does not carry its recipient %s", recipient)
	}
	out.addTree(t, state)
	out.add("container labels", dockerInspect(t, cname, "{{json .Config.Labels}}"))
	for where, text := range out {
		for _, s := range []string{dbSecret, apiSecret, apiSecretNew, tplSecret} {
			if i := strings.Index(text, s); i >= 0 {
				lo, hi := max(0, i-120), min(len(text), i+len(s)+60)
				t.Errorf("secret %q leaked in %s: ...%s...", s, where, text[lo:hi])
			}
		}
	}
}
