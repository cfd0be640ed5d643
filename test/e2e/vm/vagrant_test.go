package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// TestVagrantUp runs `vagrant up` with the vagrant-libvirt provider on a box
// packaged from the VM image with sshd and the vagrant user added, under
// libvirt's qemu (TCG) domain type. The Vagrantfile is the debian12
// machine of test/vagrant/Vagrantfile on the test's box and network: the
// .deb synced with rsync, then provision.sh with the repository on the git
// protocol. The agent must converge with the machine's labels, push its
// note and revert drift. The machine's only
// network is an isolated libvirt network the test makes, on which the host
// serves the repository and nothing else.
func TestVagrantUp(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	dist := builtDeb(t)
	t.Logf("package built in %v", time.Since(begin).Round(time.Millisecond))
	mod, err := host.ModuleRoot()
	mustf(t, err, "module root")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	start := time.Now()
	img, err := EnsureBoxImage(ctx)
	mustf(t, err, "build the box image")
	t.Logf("box image ready in %v", time.Since(start).Round(time.Millisecond))
	vagrant, err := tool("vagrant", "vagrant")
	mustf(t, err, "vagrant")
	ensureLibvirt(t, ctx)

	tmp := t.TempDir()
	// libvirt runs qemu as its own user, which must reach the pool and the
	// console log.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		mustf(t, os.Chmod(d, 0o711), "make the test directory reachable")
	}
	id := randHex(t, 4)
	netName, bridge := "outpost-"+id, "obr"+id
	// An isolated network (no <forward>): the guest reaches the host's
	// address on it and nothing beyond.
	octet, err := strconv.ParseUint(id[:2], 16, 8)
	mustf(t, err, "subnet")
	subnet := fmt.Sprintf("10.213.%d", 10+octet%200)
	gw := subnet + ".1"
	virsh(t, ctx, "net-define", writeFile(t, tmp, "net.xml", fmt.Sprintf(`<network>
  <name>%s</name>
  <bridge name='%s'/>
  <ip address='%s' netmask='255.255.255.0'>
    <dhcp><range start='%s.10' end='%s.200'/></dhcp>
  </ip>
</network>
`, netName, bridge, gw, subnet, subnet)))
	// A persistent network, as vagrant-libvirt's own are: when `vagrant up`
	// fails it removes the network, and a transient one would already be
	// gone then, hiding the first error behind that one.
	t.Cleanup(func() {
		exec.Command("virsh", "-c", "qemu:///system", "net-destroy", netName).Run()
		exec.Command("virsh", "-c", "qemu:///system", "net-undefine", netName).Run()
	})
	virsh(t, ctx, "net-start", netName)
	poolName := "outpost-" + id
	poolDir := filepath.Join(tmp, "pool")
	mustf(t, os.Mkdir(poolDir, 0o711), "pool directory")
	virsh(t, ctx, "pool-create-as", poolName, "dir", "--target", poolDir)
	t.Cleanup(func() { virsh(t, context.Background(), "pool-destroy", poolName) })

	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(envFiles, "first desired state")
	d := root.ServeGit()
	gitAddr := proxy(t, net.JoinHostPort(gw, "0"), d.Addr)

	home := filepath.Join(tmp, "vagrant.d")
	box := filepath.Join(tmp, "debian12.box")
	mustf(t, PackageBox(ctx, img, box), "package the box")
	project := filepath.Join(tmp, "project")
	mustf(t, os.Mkdir(project, 0o755), "project directory")
	console := filepath.Join(tmp, "console.log")
	writeFile(t, project, "Vagrantfile", fmt.Sprintf(`Vagrant.configure("2") do |config|
  config.vm.box = "outpost-test/debian12"
  config.vm.hostname = "debian12"
  config.vm.synced_folder %[1]q, "/outpost-dist", type: "rsync"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  # Vagrant's 300 s is for a machine with a CPU of its own: this one is
  # emulated beside a loaded suite.
  config.vm.boot_timeout = 600
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
    lv.default_prefix = %[10]q
    lv.memory = 1024
    lv.cpus = 1
    lv.kernel = %[2]q
    lv.initrd = %[3]q
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
    lv.graphics_type = "none"
    lv.video_type = "none"
    lv.serial :type => "file", :source => {:path => %[4]q}
    lv.storage_pool_name = %[5]q
    lv.management_network_name = %[6]q
    lv.management_network_address = %[7]q
    lv.management_network_mode = "none"
  end
  config.vm.provision "shell", path: %[8]q,
    args: ["/outpost-dist", %[9]q, "main", "role=web,os=debian"]
end
`, dist, img.Kernel, img.Initrd, console, poolName, netName, subnet+".0/24",
		filepath.Join(mod, "test/vagrant/provision.sh"), "git://"+gitAddr+"/env.git",
		"outpost-"+id+"-"))

	// run runs vagrant in the project and returns its standard output, and
	// with an error its standard error too.
	run := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, vagrant, args...)
		cmd.Dir = project
		cmd.Env = append(os.Environ(), "VAGRANT_HOME="+home, "VAGRANT_CHECKPOINT_DISABLE=1",
			"VAGRANT_DEFAULT_PROVIDER=libvirt", "VAGRANT_NO_COLOR=1")
		cmd.WaitDelay = 10 * time.Second
		var stderr strings.Builder
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		out := string(b)
		if err != nil {
			out = compact(out)
			err = fmt.Errorf("%w\n%s", err, compact(stderr.String()))
		}
		return out, err
	}
	start = time.Now()
	if out, err := run(ctx, "box", "add", "--name", "outpost-test/debian12", box); err != nil {
		t.Fatalf("vagrant box add: %v\n%s", err, out)
	}
	t.Logf("box added in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if out, err := run(ctx, "destroy", "-f"); err != nil {
			t.Errorf("vagrant destroy: %v\n%s", err, out)
		}
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("console:\n%s", tailString(string(b), 12000))
		}
	})
	// However libvirtd was started, its qemu for this machine runs at the
	// guests' priority.
	start = time.Now()
	upStart := start
	nicedCtx, stopNiced := context.WithCancel(ctx)
	defer stopNiced()
	go keepNiced(nicedCtx, "guest=outpost-"+id+"-", func(pid int) {
		t.Logf("qemu %d of the machine held at niceness %d, %v into vagrant up", pid, guestNice, time.Since(upStart).Round(time.Second))
	})
	out, err := run(ctx, "up", "--provider=libvirt")
	if err != nil {
		b, _ := os.ReadFile(console)
		t.Fatalf("vagrant up, %v in: %v\n%s\nthe console's last lines:\n%s",
			time.Since(start).Round(time.Second), err, out, lastLines(string(b), 30))
	}
	t.Logf("vagrant up (boot, ssh, rsync, provision.sh): %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, 3*time.Minute, "the note of debian12 on the server", func() bool {
		return noteRef(t, root.Path("env"), "debian12") != ""
	})
	t.Logf("vagrant up to note pushed: %v", time.Since(start).Round(time.Millisecond))
	out, err = run(ctx, "ssh", "-c", "sudo cat "+managedPath)
	if err != nil || out != managedContent {
		t.Fatalf("vagrant ssh -c 'sudo cat %s': %v: got %q, want %q", managedPath, err, out, managedContent)
	}
	// provision.sh wrote the machine's labels into agent.yaml.
	cfg, err := run(ctx, "ssh", "-c", "sudo cat /etc/outpost/agent.yaml")
	mustf(t, err, "vagrant ssh -c 'sudo cat /etc/outpost/agent.yaml'")
	for _, want := range []string{"role: \"web\"", "os: \"debian\""} {
		if !strings.Contains(cfg, want) {
			t.Errorf("agent.yaml lacks %s:\n%s", want, cfg)
		}
	}
	// Drift by hand is reverted.
	_, err = run(ctx, "ssh", "-c", "echo drifted | sudo tee "+managedPath)
	mustf(t, err, "drift %s by hand", managedPath)
	waitFor(t, 2*time.Minute, "the agent to revert "+managedPath, func() bool {
		out, err := run(ctx, "ssh", "-c", "sudo cat "+managedPath)
		return err == nil && out == managedContent
	})
}

// progress matches the box upload's progress counter, thousands of them.
var progress = regexp.MustCompile(`(\x1b\[K)?Progress: \d+%(\x1b\[K)?`)

// compact drops the progress counters and the blank lines from vagrant's
// output, so that what a failure says fits in a CI log's excerpt.
func compact(s string) string {
	var lines []string
	for _, l := range strings.Split(progress.ReplaceAllString(s, ""), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ensureLibvirt starts libvirt's daemons when none answers: the CI machine
// has no systemd to start them.
func ensureLibvirt(t *testing.T, ctx context.Context) {
	t.Helper()
	if exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "version").Run() == nil {
		return
	}
	for _, d := range []struct{ name, pkg string }{{"virtlogd", "libvirt-daemon-system"}, {"libvirtd", "libvirt-daemon-system"}} {
		if running(d.name) {
			continue // left by an earlier run: a second one cannot take its pidfile
		}
		p, err := tool(d.name, d.pkg)
		mustf(t, err, "libvirt")
		// Started at the guests' priority: libvirtd's qemu inherits it.
		name, args := niced(p, "-d")
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s -d: %v: %s", d.name, err, out)
		}
	}
	waitFor(t, time.Minute, "libvirtd to answer virsh", func() bool {
		return exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "version").Run() == nil
	})
}

// running reports whether a process whose command is name runs.
func running(name string) bool {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range comms {
		if b, err := os.ReadFile(c); err == nil && strings.TrimSpace(string(b)) == name {
			return true
		}
	}
	return false
}

func virsh(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-c", "qemu:///system"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	mustf(t, os.WriteFile(p, []byte(content), 0o644), "write %s", name)
	return p
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// proxy listens on listen and relays each connection to target until the
// test ends; it returns the address it listens on.
func proxy(t *testing.T, listen, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	mustf(t, err, "listen on %s", listen)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() {
					io.Copy(u, c)
					u.(*net.TCPConn).CloseWrite()
				}()
				io.Copy(c, u)
			}()
		}
	}()
	return l.Addr().String()
}
