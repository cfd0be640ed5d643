// Command prepare builds the machines that the end-to-end tests cache,
// before the tests ask for them: the test hosts' root filesystem, the
// package tree on it, and the VM image and the Vagrant box made from that
// tree. On a fresh machine these take minutes of debootstrap and apt, most
// of it waiting on the network and dpkg; test/run starts this beside the
// compile of the suite, which keeps the cores busy meanwhile. Each step is
// cached and locked as the tests' own calls are: a test that asks first
// waits for the build under way, and a run with everything cached costs
// nothing here.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/vm"
)

func main() {
	ctx := context.Background()
	for _, step := range []struct {
		name string
		make func(context.Context) (vm.Image, error)
	}{
		{"the VM image (and the test hosts' root filesystem)", vm.EnsureImage},
		{"the Vagrant box's image", vm.EnsureBoxImage},
	} {
		start := time.Now()
		if _, err := step.make(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "prepare: %s: %v\n", step.name, err)
			os.Exit(1)
		}
		fmt.Printf("prepare: %s ready in %v\n", step.name, time.Since(start).Round(time.Second))
	}
}
