// Command prepare builds the machines and tools that the end-to-end tests
// cache, before the tests ask for them: the test hosts' root filesystem,
// the package tree on it, and the VM image and the Vagrant box made from
// that tree; and, beside them, nfpm, which the package tests and the VM
// suites build their packages with. On a fresh machine these take minutes
// of debootstrap, apt and compiling; test/run starts this beside the
// compile of the suite, which keeps the cores busy meanwhile. Each step is
// cached (the machines in the test cache, nfpm in Go's build cache) and the
// machines are locked as the tests' own calls are: a test that asks first
// waits for the build under way, and a run with everything cached costs
// little here.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/install"
	"github.com/outpost-gitops/outpost/test/e2e/vm"
)

func main() {
	ctx := context.Background()
	var wg sync.WaitGroup
	failed := false
	var mu sync.Mutex
	report := func(name string, start time.Time, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			fmt.Fprintf(os.Stderr, "prepare: %s: %v\n", name, err)
			failed = true
			return
		}
		fmt.Printf("prepare: %s ready in %v\n", name, time.Since(start).Round(time.Second))
	}
	wg.Go(func() {
		start := time.Now()
		dir, err := os.MkdirTemp("", "outpost-prepare-")
		if err == nil {
			defer os.RemoveAll(dir)
			_, err = install.InstallNFPM(ctx, dir)
		}
		report("nfpm, compiled into Go's build cache", start, err)
	})
	wg.Go(func() {
		for _, step := range []struct {
			name string
			make func(context.Context) (vm.Image, error)
		}{
			{"the VM image (and the test hosts' root filesystem)", vm.EnsureImage},
			{"the Vagrant box's image", vm.EnsureBoxImage},
		} {
			start := time.Now()
			_, err := step.make(ctx)
			report(step.name, start, err)
			if err != nil {
				return
			}
		}
	})
	wg.Wait()
	if failed {
		os.Exit(1)
	}
}
