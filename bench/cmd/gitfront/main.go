// Command gitfront serves the bare repositories under a directory with
// `git http-backend` on loopback and counts requests, bytes and the
// backend's CPU time, for bench/footprint.sh. GET /_stats prints the
// counters as JSON; GET /_reset zeroes them.
//
//	gitfront -root DIR -addr-file FILE
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/outpost-gitops/outpost/bench/gitfront"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gitfront:", err)
		os.Exit(1)
	}
}

func run() error {
	root := flag.String("root", "", "the `directory` of bare repositories")
	addr := flag.String("addr", "127.0.0.1:0", "the loopback `address` to listen on")
	addrFile := flag.String("addr-file", "", "write the address to this `file` once listening")
	flag.Parse()
	if *root == "" {
		return fmt.Errorf("-root is required")
	}
	var mu sync.Mutex
	var s *gitfront.Server
	stats := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/_reset":
			s.Reset()
		case "/_stats":
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Stats())
	})
	mu.Lock()
	s, err := gitfront.Start(*root, *addr, stats)
	mu.Unlock()
	if err != nil {
		return err
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile+".tmp", []byte(s.Addr+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return s.Close()
}
