package agent

import (
	"bytes"
	"context"
	"errors"
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
	cfg.Secrets.RunDir = filepath.Join(t.TempDir(), "run")
	recipient, err := EnsureSecretKey(cfg)
	if err != nil {
		t.Fatal(err)
	}
	to, err := parseRecipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	ct := sealed(t, to, "db:\n  password: pw-pl4nted-env\napi:\n  token: tok-pl4nted-tmpl\n")
	name := f.prefix + "app"
	writeTree(t, repo, map[string]string{
		"secrets/app.yaml.age": ct,
		"app.yaml":             fmt.Sprintf("kind: container\nname: %s\nimage: %s\ntag: \"1\"\nenv: {MODE: prod}\nenv_secrets:\n  DB_PASSWORD: secrets/app.yaml.age#db.password\nsecret_files:\n  /run/secrets/token: secrets/app.yaml.age#api.token\n", name, f.repo),
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
	var bound string
	for _, m := range in.Mounts {
		if m.Destination == "/run/secrets/token" {
			bound = m.Source
			if m.RW {
				t.Errorf("the secret file is bound read-write")
			}
		}
	}
	if b, err := os.ReadFile(bound); err != nil || string(b) != "tok-pl4nted-tmpl" {
		t.Errorf("the bound secret file %q = %q, %v", bound, b, err)
	}
	if fi, err := os.Stat(filepath.Dir(bound)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the secret file's directory has mode %v, %v; want 0700", fi.Mode(), err)
	}
	for k, v := range in.Config.Labels {
		if strings.Contains(v, "pl4nted") {
			t.Errorf("label %s holds the secret", k)
		}
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
	writeTree(t, repo, map[string]string{"secrets/app.yaml.age": sealed(t, to, "db:\n  password: pw-pl4nted-env\napi:\n  token: tok-pl4nted-new\n")})
	d, err := Diff(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range d.Changes {
		found = found || (c.Kind == "container" && strings.Contains(strings.Join(c.Fields, ","), "secret_files"))
	}
	if !found {
		t.Errorf("diff after a new token = %+v, want the container to change for its secret file", d.Changes)
	}
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
	// Applied, the new token replaces the container and its file.
	if rep, err = Apply(ctx, cfg, nil, ApplyOptions{}); err != nil || rep.Result != ResultApplied {
		t.Fatalf("Apply of the new token = %+v, %v", rep, err)
	}
	in2, err := f.cli.ContainerInspect(ctx, name)
	if err != nil || in2.ID == in.ID {
		t.Errorf("the container was not replaced for its new secret: %v", err)
	}
	if b, err := os.ReadFile(bound); err != nil || string(b) != "tok-pl4nted-new" {
		t.Errorf("the bound secret file = %q, %v; want the new token", b, err)
	}
	// The same plaintexts encrypted again (recipients rotated): nothing
	// changes, and the container is not restarted.
	writeTree(t, repo, map[string]string{"secrets/app.yaml.age": sealed(t, to, "db:\n  password: pw-pl4nted-env\napi:\n  token: tok-pl4nted-new\n")})
	rep, err = Apply(ctx, cfg, nil, ApplyOptions{})
	if err != nil || rep.Summary.Changed() {
		t.Errorf("Apply after re-encrypting the same plaintext = %+v, %v; want nothing changed", rep.Summary, err)
	}
	in3, err := f.cli.ContainerInspect(ctx, name)
	if err != nil || in3.ID != in2.ID || in3.State.StartedAt != in2.State.StartedAt {
		t.Errorf("the container was replaced or restarted for the same plaintext: %v", err)
	}
}

// sealed is plain encrypted, armored, to r.
func sealed(t *testing.T, r age.Recipient, plain string) string {
	t.Helper()
	var b bytes.Buffer
	aw := armor.NewWriter(&b)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, plain)
	if err := errors.Join(w.Close(), aw.Close()); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
