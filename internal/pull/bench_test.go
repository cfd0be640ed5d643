package pull_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/pull"
	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// cloneURLEnv makes the test binary a child that clones and reads one
// repository and exits, so that its peak memory is the clone's alone.
const cloneURLEnv = "OUTPOST_PULL_BENCH_CLONE_URL"

func TestMain(m *testing.M) {
	if url := os.Getenv(cloneURLEnv); url != "" {
		if err := cloneAndRead(url); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// cloneAndRead clones url into a fresh cache, and reads every file of the
// tip, the way the agent loads manifests.
func cloneAndRead(url string) error {
	dir, err := os.MkdirTemp("", "outpost-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r, err := pull.Open(dir, pull.Config{URL: url, Timeout: 10 * time.Minute}, nil)
	if err != nil {
		return err
	}
	res, err := r.Poll(context.Background())
	if err != nil {
		return err
	}
	fsys, err := r.Tree(context.Background(), res.Commit)
	if err != nil {
		return err
	}
	files := 0
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		_, err = fs.ReadFile(fsys, p)
		files++
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("files %d\n", files)
	return nil
}

// largeHistory writes a fast-import stream: a first commit with files
// files in 100 directories, then commits-1 commits that each change 10 of
// them.
func largeHistory(w io.Writer, files, commits int) {
	content := func(i, rev int) string {
		return fmt.Sprintf("kind: file\npath: /etc/outpost-bench/%05d.conf\ncontent: |\n  revision %d of file %d\n  %s\n", i, rev, i, bytes.Repeat([]byte("x"), 120))
	}
	when := int64(1700000000)
	for c := 0; c < commits; c++ {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Outpost Bench <bench@outpost.invalid> %d +0000\ndata <<EOF\ncommit %d\nEOF\n", when+int64(c), c)
		if c == 0 {
			for i := 0; i < files; i++ {
				data := content(i, 0)
				fmt.Fprintf(w, "M 100644 inline d%02d/f%05d.yaml\ndata %d\n%s\n", i%100, i, len(data), data)
			}
			continue
		}
		for k := 0; k < 10; k++ {
			i := (c*10 + k) % files
			data := content(i, c)
			fmt.Fprintf(w, "M 100644 inline d%02d/f%05d.yaml\ndata %d\n%s\n", i%100, i, len(data), data)
		}
	}
}

// BenchmarkPollUnchanged polls a repository whose branch has not moved,
// over smart HTTP: the cost of every poll interval of an idle fleet.
func BenchmarkPollUnchanged(b *testing.B) {
	root := gitserver.NewRoot(b)
	repo := root.Create("env")
	repo.Commit(gitserver.Files{"a.yaml": "a: 1\n"}, "first")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	r, err := pull.Open(filepath.Join(b.TempDir(), "git"), pull.Config{URL: h.URL("env")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.Poll(ctx); err != nil {
		b.Fatal(err)
	}
	h.Reset()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := r.Poll(ctx)
		if err != nil || res.Changed {
			b.Fatalf("Poll = %+v, %v; want unchanged", res, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(h.Requests())/float64(b.N), "requests/op")
	b.ReportMetric(float64(h.Bytes())/float64(b.N), "bytes/op")
}

// BenchmarkCloneLarge clones a repository of 10,000 files and 1,000
// commits over smart HTTP and reads every file of the tip, in a child
// process whose peak resident memory is reported.
func BenchmarkCloneLarge(b *testing.B) {
	root := gitserver.NewRoot(b)
	repo := root.Create("large")
	var stream bytes.Buffer
	largeHistory(&stream, 10000, 1000)
	repo.Import(&stream)
	repo.Git("gc", "-q")
	h := root.ServeHTTP(gitserver.HTTPOptions{})
	var maxRSS int64
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), cloneURLEnv+"="+h.URL("large"))
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("files 10000")) {
			b.Fatalf("clone child: %v: %s", err, out)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > maxRSS {
			maxRSS = ru.Maxrss // KiB on Linux
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	b.StopTimer()
	b.ReportMetric(float64(maxRSS)/1024, "peak-RSS-MiB")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "client-CPU-s/op")
	b.ReportMetric(float64(h.Bytes())/float64(b.N), "bytes/op")
}
