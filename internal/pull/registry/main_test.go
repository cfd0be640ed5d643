package registry

import (
	"fmt"
	"os"
	"testing"

	testreg "github.com/outpost-gitops/outpost/test/e2e/registry"
)

// sharedRegistry is one real docker-registry for every test of the package;
// each test uses repositories of its own.
var sharedRegistry *testreg.Registry

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "outpost-registry-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	reg, stop, err := testreg.Launch(dir)
	if err != nil {
		// A missing registry fails the package; it is never skipped.
		fmt.Fprintf(os.Stderr, "registry: %v\n", err)
		return 1
	}
	defer stop()
	sharedRegistry = reg
	return m.Run()
}
