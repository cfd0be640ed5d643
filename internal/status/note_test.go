package status

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/internal/targets/docker"
	"github.com/outpost-gitops/outpost/internal/targets/file"
)

const (
	commitA = "1111111111111111111111111111111111111111"
	commitB = "2222222222222222222222222222222222222222"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func sampleNote() Note {
	n := New("edge-042", commitA, Failed, t0)
	n.Labels = map[string]string{"site": "berlin", "role": "gateway"}
	n.AgentVersion = "0.3.0"
	n.HealthyAt = t0.Add(5 * time.Second)
	n.Images = map[string]string{"web": "1.4.2@sha256:" + strings.Repeat("ab", 32)}
	n.Failed = []Failure{{Resource: "unit:b.service", Error: "start: exit 1"}, {Resource: "container:a", Error: "pull: denied"}}
	n.DriftRepairs = 3
	n.Message = "1 of 4 resources failed"
	return n
}

func TestMarshalParseRoundTrip(t *testing.T) {
	n := sampleNote()
	b, err := n.Marshal()
	if err != nil {
		t.Fatalf("Marshal() error = %v", err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal(n)) error = %v", err)
	}
	if diff := cmp.Diff(n.normalized(), got); diff != "" {
		t.Errorf("Parse(Marshal(n)) differs (-want +got):\n%s", diff)
	}
	if got.Failed[0].Resource != "container:a" {
		t.Errorf("Parse(Marshal(n)).Failed[0].Resource = %q, want container:a (sorted)", got.Failed[0].Resource)
	}
}

func TestMarshalShape(t *testing.T) {
	// Every field of the schema is present (healthy_at and message only
	// when set), so that scripts need no defaults.
	b, err := New("h", commitA, Applied, t0).Marshal()
	if err != nil {
		t.Fatalf("Marshal() error = %v", err)
	}
	want := `{
  "schema": 1,
  "host": "h",
  "labels": {},
  "agent_version": "",
  "commit": "1111111111111111111111111111111111111111",
  "result": "applied",
  "applied_at": "2026-11-26T12:00:00Z",
  "images": {},
  "failed": [],
  "drift_repairs": 0
}
`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("Marshal() differs (-want +got):\n%s", diff)
	}
}

func TestParse(t *testing.T) {
	valid := `"host":"h","commit":"` + commitA + `","result":"applied","applied_at":"2026-11-26T12:00:00Z"`
	base := New("h", commitA, Applied, t0).normalized()
	tests := []struct {
		name    string
		in      string
		want    Note
		wantErr error // ErrInvalidNote, or nil
		schema  int   // a *SchemaError with this version is expected
	}{
		{name: "minimal", in: `{"schema":1,` + valid + `}`, want: base},
		{name: "unknown fields ignored", in: `{"schema":1,` + valid + `,"future":{"x":[1,2]},"zone":"eu"}`, want: base},
		{name: "newer schema", in: `{"schema":3,` + valid + `,"rollout_wave":2}`, want: func() Note { n := base; n.Schema = 3; return n }(), schema: 3},
		{name: "newer schema with a changed field type", in: `{"schema":2,` + valid + `,"images":[{"name":"web"}]}`, want: func() Note { n := base; n.Schema = 2; return n }(), schema: 2},
		{name: "newer schema with a new result", in: `{"schema":2,"host":"h","commit":"` + commitA + `","result":"paused","applied_at":"2026-11-26T12:00:00Z"}`, want: func() Note { n := base; n.Schema = 2; n.Result = "paused"; return n }(), schema: 2},
		{name: "digest", in: `{"schema":1,` + valid + `,"digest":"sha256:` + commitA + commitA[:24] + `"}`, want: func() Note { n := base; n.Digest = "sha256:" + commitA + commitA[:24]; return n }()},
		{name: "digest not sha256", in: `{"schema":1,` + valid + `,"digest":"` + commitA + `"}`, wantErr: ErrInvalidNote},
		{name: "short digest", in: `{"schema":1,` + valid + `,"digest":"sha256:0a0a"}`, wantErr: ErrInvalidNote},
		{name: "newer schema keeps the digest", in: `{"schema":2,` + valid + `,"digest":"sha256:` + commitA + commitA[:24] + `"}`, want: func() Note { n := base; n.Schema = 2; n.Digest = "sha256:" + commitA + commitA[:24]; return n }(), schema: 2},
		{name: "no schema", in: `{` + valid + `}`, wantErr: ErrInvalidNote},
		{name: "schema zero", in: `{"schema":0,` + valid + `}`, wantErr: ErrInvalidNote},
		{name: "schema not a number", in: `{"schema":"1",` + valid + `}`, wantErr: ErrInvalidNote},
		{name: "unknown result", in: `{"schema":1,"host":"h","commit":"` + commitA + `","result":"great","applied_at":"2026-11-26T12:00:00Z"}`, wantErr: ErrInvalidNote},
		{name: "short commit", in: `{"schema":1,"host":"h","commit":"1111111","result":"applied","applied_at":"2026-11-26T12:00:00Z"}`, wantErr: ErrInvalidNote},
		{name: "no host", in: `{"schema":1,"commit":"` + commitA + `","result":"applied","applied_at":"2026-11-26T12:00:00Z"}`, wantErr: ErrInvalidNote},
		{name: "wrong type", in: `{"schema":1,` + valid + `,"drift_repairs":"many"}`, wantErr: ErrInvalidNote},
		{name: "not json", in: `schema: 1`, wantErr: ErrInvalidNote},
		{name: "an array", in: `[1]`, wantErr: ErrInvalidNote},
		{name: "empty", in: ``, wantErr: ErrInvalidNote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.schema != 0 {
				var se *SchemaError
				if !errors.As(err, &se) || se.Version != tt.schema {
					t.Fatalf("Parse(%s) error = %v, want *SchemaError{%d}", tt.in, err, tt.schema)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse(%s) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%s) differs (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestRedactor(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{name: "url password", in: `fetch "https://deploy:hunter22@git.example.com/env.git": 401`, want: `fetch "https://git.example.com/env.git": 401`},
		{name: "url user only", in: "ssh://git@git.example.com:22/env.git", want: "ssh://git.example.com:22/env.git"},
		{name: "password with @", in: "https://u:p@ss@host/x", want: "https://host/x"},
		{name: "no userinfo", in: "https://host/a@b", want: "https://host/a@b"},
		{name: "two urls", in: "http://a:b@h1/ and git://c:d@h2/", want: "http://h1/ and git://h2/"},
		{name: "secret value", secrets: []string{"s3cr3t-token"}, in: "env TOKEN=s3cr3t-token rejected (s3cr3t-token)", want: "env TOKEN=[redacted] rejected ([redacted])"},
		{name: "longer secret first", secrets: []string{"abcd", "abcdefgh"}, in: "x abcdefgh y abcd", want: "x [redacted] y [redacted]"},
		{name: "short values kept", secrets: []string{"1", "on", ""}, in: "port 1 is on", want: "port 1 is on"},
		{name: "secret as url password", secrets: []string{"hunter22"}, in: "https://u:hunter22@h/", want: "https://h/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewRedactor(tt.secrets...).String(tt.in); got != tt.want {
				t.Errorf("NewRedactor(%q).String(%q) = %q, want %q", tt.secrets, tt.in, got, tt.want)
			}
		})
	}
}

func TestNoteRedact(t *testing.T) {
	n := sampleNote()
	n.Message = "pulled from https://u:pw1234@git/x with key sekrit-value"
	n.Failed = []Failure{{Resource: "container:web", Error: "env API_KEY=sekrit-value refused"}}
	got := n.Redact(NewRedactor("sekrit-value"))
	want := []Failure{{Resource: "container:web", Error: "env API_KEY=[redacted] refused"}}
	if diff := cmp.Diff(want, got.Failed); diff != "" {
		t.Errorf("Redact().Failed differs (-want +got):\n%s", diff)
	}
	if wantMsg := "pulled from https://git/x with key [redacted]"; got.Message != wantMsg {
		t.Errorf("Redact().Message = %q, want %q", got.Message, wantMsg)
	}
	if n.Failed[0].Error == got.Failed[0].Error {
		t.Errorf("Redact changed its receiver's failures")
	}
}

func TestSecrets(t *testing.T) {
	st := &spec.State{Resources: []*spec.Resource{
		{ID: spec.ID{Kind: file.Kind, Name: "/etc/a"}, Object: &file.File{Path: "/etc/a"}},
		{ID: spec.ID{Kind: docker.Kind, Name: "web"}, Object: &docker.Container{Name: "web", Env: map[string]string{"TOKEN": "t0k3n", "LEVEL": "info"}}},
		{ID: spec.ID{Kind: docker.Kind, Name: "db"}, Object: &docker.Container{Name: "db", Env: map[string]string{"PASS": "t0k3n"}}},
	}}
	want := []string{"info", "t0k3n"}
	if diff := cmp.Diff(want, Secrets(st)); diff != "" {
		t.Errorf("Secrets() differs (-want +got):\n%s", diff)
	}
	if got := Secrets(nil); got != nil {
		t.Errorf("Secrets(nil) = %q, want nil", got)
	}
}

func TestSameOutcome(t *testing.T) {
	base := sampleNote()
	tests := []struct {
		name   string
		change func(*Note)
		same   bool
	}{
		{name: "identical", change: func(*Note) {}, same: true},
		{name: "later time, more drift repairs, other message", change: func(n *Note) {
			n.AppliedAt = n.AppliedAt.Add(time.Hour)
			n.DriftRepairs = 9
			n.Message = "again"
		}, same: true},
		{name: "other error text", change: func(n *Note) { n.Failed[0].Error = "timeout after 31s" }, same: true},
		{name: "other result", change: func(n *Note) { n.Result = Applied }},
		{name: "other commit", change: func(n *Note) { n.Commit = commitB }},
		{name: "other image", change: func(n *Note) { n.Images = map[string]string{"web": "1.4.3@sha256:00"} }},
		{name: "other failed resource", change: func(n *Note) { n.Failed = n.Failed[:1] }},
		{name: "other labels", change: func(n *Note) { n.Labels = map[string]string{"site": "paris"} }},
		{name: "other agent", change: func(n *Note) { n.AgentVersion = "0.4.0" }},
		{name: "other artifact of the commit", change: func(n *Note) { n.Digest = "sha256:" + commitA + commitA[:24] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := sampleNote()
			n.Failed = append([]Failure(nil), n.Failed...)
			tt.change(&n)
			if got := n.sameOutcome(base); got != tt.same {
				t.Errorf("sameOutcome() = %v, want %v", got, tt.same)
			}
		})
	}
}

func TestCheckHost(t *testing.T) {
	for _, h := range []string{"edge-042", "web_1", "a.b.c", "H"} {
		if _, err := RefName(h); err != nil {
			t.Errorf("RefName(%q) error = %v, want nil", h, err)
		}
	}
	for _, h := range []string{"", "a/b", ".x", "x.", "a..b", "x.lock", "a b", "a:b", "a~1", "a^", "a*", "a?", "a[", "a\\b", "@", "a@{b", "tab\tx"} {
		if _, err := RefName(h); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("RefName(%q) error = %v, want ErrInvalidHost", h, err)
		}
	}
}
