// Command hello proves that BuildBinary's static binaries run in a test host.
package main

import (
	"fmt"
	"os"
)

func main() {
	name, _ := os.Hostname()
	fmt.Printf("hello from %s\n", name)
}
