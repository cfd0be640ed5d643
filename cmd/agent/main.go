// Command outpost is Outpost's agent and command line: it validates an
// environment repository, shows what it would change on this host, and
// converges the host to it.
//
// This package only parses flags, sets up logging and signals, and calls
// internal/agent, which does the work.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
