package systemd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/internal/converge"
	"github.com/outpost-gitops/outpost/internal/spec"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// The driver satisfies the engine's contracts.
var (
	_ converge.Driver        = (*Driver)(nil)
	_ converge.Restarter     = (*Driver)(nil)
	_ converge.HealthChecker = (*Driver)(nil)
	_ converge.Watcher       = (*Driver)(nil)
	_ converge.Preparer      = (*Driver)(nil)
)

// TestMain runs the tests inside a test host, where systemd is PID 1 and
// the system bus is its own: outside, host.Main boots the host and re-runs
// this binary in it.
func TestMain(m *testing.M) {
	os.Exit(host.Main(m, host.Options{NoDocker: true}))
}

func newDriver(t testing.TB) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := New(ctx, Options{
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Settle:    time.Second,
		BackupDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// unitName returns a unit name unique to this run, and removes whatever
// the test leaves of it.
func unitName(t testing.TB, suffix string) string {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	name := "outpost-test-" + hex.EncodeToString(b[:]) + suffix
	t.Cleanup(func() {
		exec.Command("systemctl", "stop", name).Run()
		exec.Command("systemctl", "disable", name).Run()
		os.RemoveAll("/etc/systemd/system/" + name + ".d")
		os.Remove("/etc/systemd/system/" + name)
		exec.Command("systemctl", "daemon-reload").Run()
		exec.Command("systemctl", "reset-failed", name).Run()
	})
	return name
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func unitResource(u *Unit) *spec.Resource {
	return &spec.Resource{ID: spec.ID{Kind: Kind, Name: u.Name}, Prune: true, Object: u}
}

func boolp(b bool) *bool { return &b }

// systemctl runs systemctl and returns its trimmed output, failing t when
// fail is true and it fails.
func systemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, _ := exec.Command("systemctl", args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func mustSystemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func show(t testing.TB, name, prop string) string {
	t.Helper()
	return mustSystemctl(t, "show", "-p", prop, "--value", name)
}

func mustApply(t testing.TB, d *Driver, r *spec.Resource) spec.Change {
	t.Helper()
	ch, err := d.CheckApply(ctxT(t), r, true)
	if err != nil {
		t.Fatalf("CheckApply(%s, apply) = %v", r.ID, err)
	}
	return ch
}

const sleeper = "[Unit]\nDescription=Outpost test service\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
