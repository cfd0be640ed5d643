package vm

import (
	"io"
	"net"
	"os"
	"sync"
)

// RelayArg, as the first argument of the test binary, makes it a relay to
// the address in the second (see RelayMain).
const RelayArg = "outpost-vm-relay"

// RelayMain makes the test binary qemu's forwarder of one guest connection
// (see Forward): run as "BINARY outpost-vm-relay ADDR", it copies standard
// input to ADDR and ADDR's answers to standard output, then exits. qemu
// splits the command at spaces and runs it without a shell. Call RelayMain
// first in TestMain.
func RelayMain() {
	if len(os.Args) != 3 || os.Args[1] != RelayArg {
		return
	}
	addr := os.Args[2]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		os.Exit(1)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(c, os.Stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(os.Stdout, c)
	os.Stdout.Close()
	wg.Wait()
	os.Exit(0)
}
