package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// TestSecretsInContainerAndTemplate applies, on the real engine, a
// container whose environment takes a value of an encrypted YAML file and
// a template that takes another: the container runs with the value (as
// docker inspect shows), the file holds it, and neither the state, the
// notes' redaction list nor a diff holds it.
func TestSecretsInContainerAndTemplate(t *testing.T) {
	t.Parallel()
	f := newEngineFixture(t)
	repo := t.TempDir()
	cfg := sandbox(t, repo)
	recipient, err := EnsureSecretKey(cfg)
	if err != nil {
		t.Fatal(err)
	}
	to, err := parseRecipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	aw := armor.NewWriter(&ct)
	w, err := age.Encrypt(aw, to)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "db:\n  password: pw-pl4nted-env\napi:\n  token: tok-pl4nted-tmpl\n")
	w.Close()
	aw.Close()
	name := f.prefix + "app"
	writeTree(t, repo, map[string]string{
		"secrets/app.yaml.age": ct.String(),
		"app.yaml":             fmt.Sprintf("kind: container\nname: %s\nimage: %s\ntag: \"1\"\nenv: {MODE: prod}\nenv_secrets:\n  DB_PASSWORD: secrets/app.yaml.age#db.password\n", name, f.repo),
		"conf.yaml":            "kind: file\npath: /etc/app/conf\ntemplate: true\ncontent: |\n  token={{ secret \"secrets/app.yaml.age\" \"api.token\" }}\n",
	})
	ctx := context.Background()
	rep, err := Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Result != ResultApplied {
		t.Fatalf("Apply = %+v, %v", rep, err)
	}
	in, err := f.cli.ContainerInspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(in.Config.Env, "\n"), "DB_PASSWORD=pw-pl4nted-env") {
		t.Errorf("the container's env = %v, want DB_PASSWORD from the secret", in.Config.Env)
	}
	conf := filepath.Join(cfg.Root, "etc/app/conf")
	b, err := os.ReadFile(conf)
	if err != nil || string(b) != "token=tok-pl4nted-tmpl\n" {
		t.Errorf("conf = %q, %v", b, err)
	}
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("conf mode = %v, %v; want 0600 for a file made with a secret", fi.Mode(), err)
	}
	st, err := os.ReadFile(filepath.Join(cfg.StateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, planted := range []string{"pw-pl4nted", "tok-pl4nted"} {
		if bytes.Contains(st, []byte(planted)) {
			t.Errorf("state.json holds %s", planted)
		}
	}
	// A new token: the diff says that the secret changed, not what to.
	var ct2 bytes.Buffer
	aw = armor.NewWriter(&ct2)
	w, _ = age.Encrypt(aw, to)
	fmt.Fprint(w, "db:\n  password: pw-pl4nted-env\napi:\n  token: tok-pl4nted-new\n")
	w.Close()
	aw.Close()
	writeTree(t, repo, map[string]string{"secrets/app.yaml.age": ct2.String()})
	d, err := Diff(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	d.AddDiffs()
	d.WriteText(&text, &text)
	for _, c := range d.Changes {
		text.WriteString(c.Diff)
	}
	if strings.Contains(text.String(), "pl4nted") || !strings.Contains(text.String(), "<secret") {
		t.Errorf("diff printed\n%s\nwant the change masked", text.String())
	}
}
