package spec

import "testing"

func TestParseTemplate(t *testing.T) {
	host := Host{Name: "h1", Labels: map[string]string{"a": "1", "b": "2"}}
	tests := []struct {
		text, want string
		wantErr    bool
	}{
		{text: "", want: ""},
		{text: "plain", want: "plain"},
		{text: "{{ .Host.Name }}", want: "h1"},
		{text: "{{ range $k, $v := .Host.Labels }}{{ $k }}={{ $v }};{{ end }}", want: "a=1;b=2;"},
		{text: "{{ range $.Host.Labels }}{{ range $.Host.Labels }}x{{ end }}{{ end }}", want: "xxxx"},
		{text: `{{ index .Host.Labels "missing" }}`, want: ""},
		{text: "{{ with .Host.Labels }}{{ .a }}{{ end }}", want: "1"},
		{text: "{{ if eq .Host.Name \"h1\" }}yes{{ else }}no{{ end }}", want: "yes"},
		{text: "{{ range 3 }}x{{ end }}", wantErr: true},
		{text: "{{ range .Host }}x{{ end }}", want: "", wantErr: true}, // parses; fails to execute
		{text: "{{ $x := .Host.Labels }}{{ range $x }}x{{ end }}", wantErr: true},
		{text: "{{ range $.Host.Labels }}{{ range $.Host.Labels }}{{ range $.Host.Labels }}{{ end }}{{ end }}{{ end }}", wantErr: true},
		{text: `{{ define "a" }}x{{ end }}`, wantErr: true},
		{text: `{{ block "a" . }}x{{ end }}`, wantErr: true},
		{text: `{{ template "a" }}`, wantErr: true},
		{text: `{{ env "HOME" }}`, wantErr: true},
		{text: "{{ .Host.Labels.missing }}", wantErr: true},
		{text: "{{ .Env }}", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			tmpl, err := parseTemplate("t", tt.text)
			var got []byte
			if err == nil {
				got, err = execTemplate(tmpl, host, 1<<10)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("parse and execute %q = %q, %v, want error %v", tt.text, got, err, tt.wantErr)
			}
			if !tt.wantErr && string(got) != tt.want {
				t.Errorf("parse and execute %q = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

// TestExecTemplateLimit checks the output cap at its edge: output that fits
// renders, one byte over fails.
func TestExecTemplateLimit(t *testing.T) {
	labels := map[string]string{"a": "1"}
	tmpl, err := parseTemplate("t", "{{ .Host.Labels.a }}")
	if err != nil {
		t.Fatal(err)
	}
	out, err := execTemplate(tmpl, Host{Name: "h", Labels: labels}, 100)
	if err != nil || string(out) != "1" {
		t.Fatalf("execTemplate() = %q, %v, want %q", out, err, "1")
	}
	if out, err := execTemplate(tmpl, Host{Name: "h", Labels: labels}, 1); err != nil || string(out) != "1" {
		t.Errorf("execTemplate() with a limit of 1 = %q, %v, want %q", out, err, "1")
	}
	if _, err := execTemplate(tmpl, Host{Name: "h", Labels: labels}, 0); err == nil {
		t.Errorf("execTemplate() with a limit of 0 = nil error, want the output limit")
	}
}
