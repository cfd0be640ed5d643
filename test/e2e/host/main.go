package host

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InsideEnv is set in the environment of a test binary that Main re-ran
// inside a test host.
const InsideEnv = "OUTPOST_TEST_INSIDE_HOST"

// Inside reports whether this process is a test binary that Main re-ran
// inside a test host.
func Inside() bool { return os.Getenv(InsideEnv) == "1" }

// Main runs a package's tests inside one test host, against its systemd.
// Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(host.Main(m, host.Options{})) }
//
// Outside a host it boots one, binds in the test binary and the package's
// directory (at the same path, read-only, as the working directory so that
// testdata/ is found), runs the binary inside with the same arguments and
// relays its output and exit status. Inside (see Inside), it runs the tests.
// Flags that write files (-test.coverprofile and the like) write inside the
// host, where the files are lost when it stops.
func Main(m *testing.M, opts Options) int {
	if Inside() {
		return m.Run()
	}
	if !flag.Parsed() {
		flag.Parse()
	}
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return m.Run() // listing tests needs no host
	}
	code, err := runInside(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: test host: %v\n", err)
		return 1
	}
	return code
}

func runInside(opts Options) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	opts.Binds = append(opts.Binds,
		// The test binary's directory keeps its path inside the host,
		// writable: go test hands the binary files in it, such as
		// -test.testlogfile, that the run inside must find and write.
		Bind{Source: filepath.Dir(exe)},
		Bind{Source: wd, ReadOnly: true},
	)
	ctx := context.Background()
	h, err := Boot(ctx, opts)
	if err != nil {
		return 0, err
	}
	defer h.Stop()
	cmd := h.CommandIn(ctx, wd, append([]string{exe}, os.Args[1:]...)...)
	cmd.Env = append(cmd.Env, InsideEnv+"=1", "TMPDIR=/tmp")
	for _, k := range []string{"GORACE", "GOTRACEBACK", "GODEBUG", "GOMAXPROCS"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}
