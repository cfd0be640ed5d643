package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// TestMain lets the scripts run the real outpost command: the test binary
// runs main when it is invoked as "outpost".
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"outpost": main})
}

// TestScripts runs the command line as a user does, from
// testdata/script/*.txtar. Every script passes --config, so the machine's
// /etc/outpost/agent.yaml plays no part.
func TestScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			examples, err := filepath.Abs("../../examples")
			env.Setenv("EXAMPLES", examples)
			if err != nil {
				return err
			}
			// outpost import runs outpost-import from PATH.
			dir, err := importer()
			env.Setenv("PATH", dir+string(os.PathListSeparator)+env.Getenv("PATH"))
			return err
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":  cmdExits,
			"mkfifo": cmdMkfifo,
		},
	})
}

var (
	importerOnce sync.Once
	importerDir  string
	importerErr  error
)

// importer builds outpost-import once and returns its directory.
func importer() (string, error) {
	importerOnce.Do(func() {
		importerDir, importerErr = os.MkdirTemp("", "outpost-import-")
		if importerErr != nil {
			return
		}
		cmd := exec.Command("go", host.ReleaseBuild("-o", filepath.Join(importerDir, "outpost-import"), "../import")...)
		cmd.Env = append(os.Environ(), host.ReleaseEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			importerErr = fmt.Errorf("build outpost-import: %w\n%s", err, out)
		}
	})
	return importerDir, importerErr
}

// cmdExits runs a command and checks its exit status exactly, which exec
// cannot: "exits 2 outpost diff" fails unless outpost exits with 2. Its
// output is then checked with stdout and stderr as usual.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exits")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits STATUS COMMAND [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: status %q: %v", args[0], err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// cmdMkfifo makes a named pipe: "mkfifo PATH".
func cmdMkfifo(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mkfifo PATH")
	}
	ts.Check(syscall.Mkfifo(ts.MkAbs(args[0]), 0o644))
}
