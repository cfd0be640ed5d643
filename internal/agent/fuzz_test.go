package agent

import (
	"errors"
	"path/filepath"
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to the agent configuration's strict
// parser. Whatever the input: no panic; either a configuration whose values
// passed the checks, or ConfigErrors naming the file, sorted by position,
// each with a message. Seeds: testdata/fuzz/FuzzParseConfig.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("source: {url: https://git.example.com/env.git, interval: 1m}\nhost: {name: h, labels: {a: b}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("agent.yaml", data)
		if err != nil {
			var es ConfigErrors
			if !errors.As(err, &es) || !errors.Is(err, ErrConfig) {
				t.Fatalf("ParseConfig() = %v (%T), want ConfigErrors", err, err)
			}
			if len(es) == 0 {
				t.Fatal("ParseConfig() = empty ConfigErrors")
			}
			for i, e := range es {
				if e.File != "agent.yaml" || e.Msg == "" {
					t.Errorf("error %q: want the file named and a message", e)
				}
				if i > 0 && (e.Line < es[i-1].Line || e.Line == es[i-1].Line && e.Col < es[i-1].Col) {
					t.Errorf("errors not sorted: %q before %q", es[i-1], e)
				}
			}
			return
		}
		if !filepath.IsAbs(cfg.StateDir) {
			t.Errorf("state_dir %q accepted, want an absolute path", cfg.StateDir)
		}
		for _, d := range []Duration{cfg.Source.Interval, cfg.Images.Interval, cfg.HealthTimeout} {
			if d <= 0 {
				t.Errorf("duration %s accepted, want positive", d)
			}
		}
		for _, p := range cfg.AllowedPaths {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				t.Errorf("allowed path %q accepted, want absolute and clean", p)
			}
		}
		if cfg.Source.Verify.AllowedSigners != "" && cfg.Source.Verify.OpenPGPKeyring != "" {
			t.Error("both verify keys accepted")
		}
	})
}
