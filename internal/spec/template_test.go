package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"text/template"

	"github.com/outpost-gitops/outpost/test/e2e/peak"
)

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
				got, err = execTemplate(tmpl, host, 1<<10, newBudget(1<<20, 1<<10), nil)
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
	out, err := execTemplate(tmpl, Host{Name: "h", Labels: labels}, 100, newBudget(1<<20, 100), nil)
	if err != nil || string(out) != "1" {
		t.Fatalf("execTemplate() = %q, %v, want %q", out, err, "1")
	}
	if out, err := execTemplate(tmpl, Host{Name: "h", Labels: labels}, 1, newBudget(1<<20, 1), nil); err != nil || string(out) != "1" {
		t.Errorf("execTemplate() with a limit of 1 = %q, %v, want %q", out, err, "1")
	}
	if _, err := execTemplate(tmpl, Host{Name: "h", Labels: labels}, 0, newBudget(1<<20, 0), nil); err == nil {
		t.Errorf("execTemplate() with a limit of 0 = nil error, want the output limit")
	}
}

// doubling is a template that makes a value of size<<n bytes from a
// printf of size bytes, by concatenating it with itself n times, and
// prints only its length.
func doubling(size, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{{ $v := printf "%%0%dd" 0 }}`, size)
	for range n {
		b.WriteString(`{{ $v = printf "%s%s" $v $v }}`)
	}
	b.WriteString("{{ len $v }}\n")
	return b.String()
}

// nested is a template that calls fn n deep on 64 times seed, a string that
// fn escapes into one twice as long.
func nested(fn, seed string, n int) string {
	return "{{ " + strings.Repeat(fn+" (", n) + `"` + strings.Repeat(seed, 64) + `"` + strings.Repeat(")", n) + " }}\n"
}

// hostileTemplates make far more than they print.
var hostileTemplates = []struct {
	name, text string
	wantPos    string // the file and line in the error
}{
	{"printf-doubling", doubling(1_000_000, 10), "t.tmpl:1:"},
	{"printf-doubling-more", doubling(1_000_000, 12), "t.tmpl:1:"},
	{"js-nested", nested("js", `\\`, 24), "t.tmpl:1:"},
	{"html-doubling", strings.ReplaceAll(doubling(1_000_000, 12), `printf "%s%s" $v $v`, `html $v $v`), "t.tmpl:1:"},
	{"urlquery-doubling", strings.ReplaceAll(doubling(1_000_000, 12), `printf "%s%s" $v $v`, `urlquery $v $v`), "t.tmpl:1:"},
	{"print-doubling", "\n" + strings.ReplaceAll(doubling(1_000_000, 12), `printf "%s%s" $v $v`, `print $v $v`), "t.tmpl:2:"},
	{"println-doubling", "\n\n" + strings.ReplaceAll(doubling(1_000_000, 12), `printf "%s%s" $v $v`, `println $v $v`), "t.tmpl:3:"},
	{"printf-star-width", `{{ $v := printf "%0*d" 1000000 0 }}{{ $v = printf "%s%s%[1]s%[1]s%[1]s" $v $v }}` + strings.Repeat(`{{ $v = printf "%s%s" $v $v }}`, 6) + "{{ len $v }}", "t.tmpl:1:"},
	{"printf-precision", strings.Repeat(`{{ len (printf "%.1000000f%.1000000f" 1.0 1.0) }}`, 20), "t.tmpl:1:"},
	{"output", strings.Repeat(`{{ printf "%01000000d" 0 }}`, 40), "t.tmpl"},
}

// TestTemplateBudget checks that each hostile template is refused with
// ErrTemplateBudget and the template's position, and that the budget is
// shared by every template of one host's render.
func TestTemplateBudget(t *testing.T) {
	for _, tt := range hostileTemplates {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"a.yaml": {Data: []byte("kind: file\npath: /etc/a\nsource: t.tmpl\ntemplate: true\n")},
				"t.tmpl": {Data: []byte(tt.text)},
			}
			repo, err := Load(fsys, Options{})
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			_, err = repo.Render(Host{Name: "h"})
			if !errors.Is(err, ErrTemplateBudget) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Render() = %v, want ErrTemplateBudget and ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "a.yaml:3:9: template: "+tt.wantPos) {
				t.Errorf("Render() = %v, want it to start with %q", err, "a.yaml:3:9: template: "+tt.wantPos)
			}
		})
	}
	t.Run("shared", func(t *testing.T) {
		// Each file alone fits; together they pass the host's budget.
		fsys := fstest.MapFS{}
		for i := range 3 {
			fsys[fmt.Sprintf("%d.yaml", i)] = &fstest.MapFile{Data: fmt.Appendf(nil, "kind: file\npath: /etc/%d\ncontent: '{{ printf \"%%0900d\" 0 }}'\ntemplate: true\n", i)}
		}
		repo, err := Load(fsys, Options{TemplateBudget: 4000})
		if err != nil {
			t.Fatalf("Load() = %v", err)
		}
		_, err = repo.Render(Host{Name: "h"})
		if !errors.Is(err, ErrTemplateBudget) {
			t.Fatalf("Render() = %v, want ErrTemplateBudget", err)
		}
		if want := "2.yaml:3:10: "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Render() = %v, want it to start with %q", err, want)
		}
		if _, err := repo.Render(Host{Name: "h"}); !errors.Is(err, ErrTemplateBudget) {
			t.Errorf("second Render() = %v, want the same refusal: the budget is per render", err)
		}
		repo, err = Load(fsys, Options{TemplateBudget: 10000})
		if err != nil {
			t.Fatalf("Load() = %v", err)
		}
		if _, err := repo.Render(Host{Name: "h"}); err != nil {
			t.Errorf("Render() with a budget of 10000 = %v, want nil", err)
		}
	})
}

// TestTemplateSteps checks the step budget: each function call and each
// write is a step, whatever its size.
func TestTemplateSteps(t *testing.T) {
	tmpl, err := parseTemplate("t", "{{ range $.Host.Labels }}{{ range $.Host.Labels }}{{ print 1 }}{{ end }}{{ end }}")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{}
	for i := range 10 {
		labels[fmt.Sprint(i)] = "x"
	}
	for _, tt := range []struct {
		steps   int64
		wantErr bool
	}{{steps: 200, wantErr: false}, {steps: 199, wantErr: true}} {
		b := newBudget(1<<20, 1<<20)
		b.steps = tt.steps // 100 calls of print and 100 writes
		_, err := execTemplate(tmpl, Host{Name: "h", Labels: labels}, 1<<20, b, nil)
		if got := errors.Is(err, ErrTemplateBudget); got != tt.wantErr {
			t.Errorf("execTemplate() with %d steps = %v, want ErrTemplateBudget %v", tt.steps, err, tt.wantErr)
		}
	}
}

// TestTemplateBoundedFuncs checks that the bounded functions print what
// text/template's builtins print.
func TestTemplateBoundedFuncs(t *testing.T) {
	host := Host{Name: "h<1>", Labels: map[string]string{"a": `"x" & y`}}
	for _, text := range []string{
		`{{ printf "%05d|%-4s|%.2f|%q|%x|%[1]d" 42 "ab" 3.14159 "c\n" "hi" }}`,
		`{{ printf "%*d|%v" 5 1 .Host.Labels }}`,
		`{{ print "a" 1 2 "b" .Host.Name }}`,
		`{{ println "a" 1 }}`,
		`{{ html .Host.Labels.a .Host.Name }}`,
		`{{ js .Host.Labels.a "<\u2028>" }}`,
		`{{ urlquery .Host.Labels.a "/?" }}`,
		`{{ .Host.Name | html | js | urlquery }}`,
	} {
		t.Run(text, func(t *testing.T) {
			tmpl, err := parseTemplate("t", text)
			if err != nil {
				t.Fatal(err)
			}
			got, err := execTemplate(tmpl, host, 1<<10, newBudget(1<<22, 1<<21), nil)
			if err != nil {
				t.Fatalf("execTemplate(%q) = %v", text, err)
			}
			var want strings.Builder
			plain := template.Must(template.New("t").Parse(text))
			if err := plain.Execute(&want, templateData{Host: templateHost{Name: host.Name, Labels: host.Labels}}); err != nil {
				t.Fatal(err)
			}
			if string(got) != want.String() {
				t.Errorf("execTemplate(%q) = %q, want %q", text, got, want.String())
			}
		})
	}
}

// TestTemplatePeakMemory renders each hostile template in a child process
// and checks its peak memory. Before the budget, each needed from 410 MB
// (printf-doubling) to several GB.
func TestTemplatePeakMemory(t *testing.T) {
	const bound = raceMemory * 112 << 20 // the budget is 32 MiB, plus garbage
	for _, tt := range hostileTemplates {
		t.Run(tt.name, func(t *testing.T) {
			rss, msg := peak.Measure(t, func() error {
				fsys := fstest.MapFS{
					"a.yaml": {Data: []byte("kind: file\npath: /etc/a\nsource: t.tmpl\ntemplate: true\n")},
					"t.tmpl": {Data: []byte(tt.text)},
				}
				repo, err := Load(fsys, Options{})
				if err != nil {
					return err
				}
				_, err = repo.Render(Host{Name: "h"})
				return err
			})
			t.Logf("peak %d MiB: %s", rss>>20, msg)
			if msg == "" {
				t.Errorf("Render() = nil, want the budget's error")
			}
			if rss > bound {
				t.Errorf("peak memory %d MiB, want at most %d MiB", rss>>20, bound>>20)
			}
		})
	}
}

// FuzzTemplate renders an arbitrary template, and checks that the bounded
// functions never let a value pass the budget: printfSize is an upper bound
// of what fmt.Sprintf makes, and a render that passes the budget fails
// with ErrTemplateBudget.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		`{{ printf "%05d|%-4s|%.2f|%q|%x|%[1]d|%*d" 42 "ab" 3.14159 "c\n" "hi" 3 4 }}`,
		`{{ printf "% x %+q %#v %U" "\x00\xff" "é" .Host.Labels 65 }}`,
		`{{ js (html (urlquery .Host.Name "<&>\"")) }}`,
		`{{ print 1 "a" 2 }}{{ println .Host.Labels }}`,
	} {
		f.Add(s, 1.5, "x")
	}
	f.Fuzz(func(t *testing.T, text string, num float64, arg string) {
		tmpl, err := parseTemplate("t", text)
		if err != nil {
			return
		}
		out, err := execTemplate(tmpl, Host{Name: arg, Labels: map[string]string{"a": arg}}, 1<<16, newBudget(1<<18, 1<<16), nil)
		if err == nil && len(out) > 1<<16 {
			t.Errorf("execTemplate(%q) made %d bytes, more than its limit", text, len(out))
		}
		// The bound of printf with the fuzzer's format and arguments.
		for _, args := range [][]any{{num, arg}, {arg, int64(num), arg}, {[]byte(arg), num, true, nil}} {
			bound := printfSize(text, args)
			if bound > 64<<20 {
				continue // the fuzzer's memory, not the bound, is the limit here
			}
			if got := len(fmt.Sprintf(text, args...)); int64(got) > bound {
				t.Errorf("printfSize(%q, %v) = %d, but fmt.Sprintf made %d bytes", text, args, bound, got)
			}
		}
	})
}
