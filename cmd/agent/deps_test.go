package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// testOnly are packages, and prefixes of packages ending in "/", that exist
// for tests or for the build and must never be linked into the agent: they
// would grow the binary and bring test hooks onto every host.
var testOnly = []string{
	"testing",
	"testing/",
	"net/http/httptest",
	"github.com/outpost-gitops/outpost/test/",
	"github.com/google/go-cmp/",
	"github.com/rogpeppe/go-internal/",
	"github.com/stretchr/testify/",
	// The man page generator: only a -tags gendocs build has it
	// (gendocs.go), so that the released binary does not carry it.
	"github.com/spf13/cobra/doc",
	"github.com/cpuguy83/go-md2man/",
	"github.com/russross/blackfriday/",
	// The Compose loader: only outpost-import links it (cmd/import).
	"github.com/compose-spec/",
	"github.com/outpost-gitops/outpost/internal/compose",
}

// TestDeps fails when the outpost binary, as released (linux, static),
// links a test-only package.
func TestDeps(t *testing.T) {
	t.Parallel()
	for _, goarch := range []string{"amd64", "arm64", "arm", "riscv64"} {
		t.Run(goarch, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".")
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
					stderr = ee.Stderr
				}
				t.Fatalf("go list -deps: %v\n%s", err, stderr)
			}
			deps := strings.Fields(string(out))
			var sawAgent bool
			for _, dep := range deps {
				if dep == "github.com/outpost-gitops/outpost/internal/agent" {
					sawAgent = true
				}
				for _, bad := range testOnly {
					if dep == bad || strings.HasSuffix(bad, "/") && strings.HasPrefix(dep, bad) {
						t.Errorf("outpost for linux/%s links %s, a package for tests or the build only", goarch, dep)
					}
				}
			}
			// An empty or wrong list would pass above without proving anything.
			if !sawAgent {
				t.Fatalf("go list -deps of cmd/agent does not list internal/agent; got %d packages", len(deps))
			}
		})
	}
}
