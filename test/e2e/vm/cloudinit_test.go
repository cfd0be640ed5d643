package vm

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
)

// The desired state the tests' repository holds: one file.
const (
	managedPath    = "/etc/outpost-vm/hello"
	managedContent = "converged from git\n"
)

var envFiles = gitserver.Files{
	"fleet.yaml": "targets:\n  - path: common\n",
	"common/hello.yaml": "kind: file\npath: " + managedPath + "\ncontent: |\n  " +
		strings.TrimSpace(managedContent) + "\nmode: \"0644\"\n",
}

// The example values that the examples mark "# REPLACE".
const (
	exampleReleaseURL = "https://github.com/outpost-gitops/outpost/releases/download/v0.1.0"
	exampleKnownHosts = "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleHostKeyOfTheGitServer"
	exampleKey        = "-----BEGIN OPENSSH PRIVATE KEY-----\n      (the fleet's read-only deploy key)  # REPLACE: the key\n      -----END OPENSSH PRIVATE KEY-----"
	exampleToken      = "(a token that may read the repository and push refs/notes/outpost/*)"
)

// TestCloudInitSSH boots a fresh VM on packaging/cloud-init/user-data.yaml
// with its repository, deploy key, known_hosts line and release URL filled
// in: the repository served by sshd on the host, the .deb by an HTTP server
// on the host, both reached by the guest at HostAddr and nothing else.
// Then it stops the server and reboots the VM: the agent comes back and
// keeps enforcing the last commit it applied.
func TestCloudInitSSH(t *testing.T) {
	t.Parallel()
	dist := builtDeb(t)
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(envFiles, "first desired state")
	ssh := root.ServeSSH()
	debPort, gitPort := guestPort(t), guestPort(t)
	key, err := os.ReadFile(ssh.KeyFile)
	mustf(t, err, "read the deploy key")
	kh, err := os.ReadFile(ssh.KnownHostsFile)
	mustf(t, err, "read known_hosts")
	f := strings.Fields(string(kh)) // [127.0.0.1]:PORT TYPE KEY
	if len(f) < 3 {
		t.Fatalf("known_hosts %q: want a pattern, a type and a key", kh)
	}
	url := fmt.Sprintf("ssh://%s@%s:%d%s", ssh.User, HostAddr, gitPort, root.Path("env"))
	ud := fill(t, "user-data.yaml", [][2]string{
		{"ssh://git@git.example.com/fleet/env.git", url},
		{exampleKey, indent(string(key), 6)},
		{exampleKnownHosts, fmt.Sprintf("[%s]:%d %s %s", HostAddr, gitPort, f[1], f[2])},
		{exampleReleaseURL, fmt.Sprintf("http://%s:%d", HostAddr, debPort)},
	})
	rollout(t, rolloutCase{
		userData: ud,
		metaData: "instance-id: outpost-vm-ssh\nlocal-hostname: vm-ssh\n",
		hostName: "vm-ssh",
		bare:     root.Path("env"),
		forwards: []Forward{
			{GuestPort: debPort, Target: serveDir(t, dist)},
			{GuestPort: gitPort, Target: ssh.Addr},
		},
		stopServer: ssh.Close,
	})
}

// TestCloudInitMetadata boots a fresh VM on the jinja example,
// packaging/cloud-init/user-data-metadata.yaml, with its repository, token
// and release URL filled in: the repository served by git http-backend on
// the host behind a check of the token as a forge makes it. cloud-init renders the
// host's name from the NoCloud meta-data, so the note arrives under that
// name. The guest reaches the host through its forwards and nothing else.
func TestCloudInitMetadata(t *testing.T) {
	t.Parallel()
	dist := builtDeb(t)
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(envFiles, "first desired state")
	const token = "vm-test-token-3f9a"
	tokens := gitserver.NewTokens(token)
	h := root.ServeHTTP(gitserver.HTTPOptions{Tokens: tokens})
	debPort, gitPort := guestPort(t), guestPort(t)
	debAddr := serveDir(t, dist)
	ud := fill(t, "user-data-metadata.yaml", [][2]string{
		{"https://git.example.com/fleet/env.git", fmt.Sprintf("http://%s:%d/env.git", HostAddr, gitPort)},
		{exampleToken, token},
		{exampleReleaseURL, fmt.Sprintf("http://%s:%d", HostAddr, debPort)},
	})
	rollout(t, rolloutCase{
		userData: ud,
		metaData: "instance-id: outpost-vm-meta\nlocal-hostname: edge-vm-7\n",
		hostName: "edge-vm-7",
		bare:     root.Path("env"),
		forwards: []Forward{
			{GuestPort: debPort, Target: debAddr},
			{GuestPort: gitPort, Target: h.Addr},
		},
		inGuest: func(v *VM) {
			reachesOnlyForwards(t, v, debPort, debAddr)
		},
	})
	if tokens.Accepted(token) == 0 {
		t.Error("the server never accepted the example's token")
	}
	if logins := tokens.PasswordLogins(); len(logins) > 0 {
		t.Errorf("the agent tried password logins as %q; want the token sent as a forge documents it", logins)
	}
}

type rolloutCase struct {
	userData []byte
	metaData string
	hostName string
	bare     string
	forwards []Forward
	// stopServer, when set, stops the git server before a reboot.
	stopServer func()
	// inGuest checks more in the converged guest.
	inGuest func(v *VM)
}

// rollout boots the VM, waits for the desired state and the note and
// reverts drift. With stopServer, it then stops the git server, reboots,
// and checks that the agent comes back and keeps enforcing the last commit
// it applied. (One reboot in the suite: each costs a minute or more of
// emulated CPU.)
func rollout(t *testing.T, c rolloutCase) {
	v := boot(t, Options{UserData: c.userData, MetaData: []byte(c.metaData), Forwards: c.forwards})
	t.Logf("boot to shell: %v", time.Since(v.Booted).Round(time.Millisecond))
	var converged, noted time.Duration
	waitFor(t, 10*time.Minute, "the desired state in the guest and the note on the server", func() bool {
		if converged == 0 && hasContent(v, managedPath, managedContent) {
			converged = time.Since(v.Booted)
		}
		if noted == 0 && noteRef(t, c.bare, c.hostName) != "" {
			noted = time.Since(v.Booted)
		}
		select {
		case <-v.Exited():
			t.Fatalf("the VM stopped: %v", v.Err())
		default:
		}
		return converged != 0 && noted != 0
	})
	t.Logf("boot to first converge: %v; boot to note pushed: %v",
		converged.Round(time.Millisecond), noted.Round(time.Millisecond))
	t.Logf("agent CPU after its first pass: %s", agentCPU(t, v))
	if got := strings.TrimSpace(guest(t, v, "hostname")); got != c.hostName {
		t.Errorf("guest hostname = %q, want %q", got, c.hostName)
	}
	revertsDrift(t, v)
	if c.inGuest != nil {
		c.inGuest(v)
	}
	if c.stopServer == nil {
		return
	}
	c.stopServer()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	mustf(t, v.Reboot(ctx), "reboot, waiting up to 8m for the next boot's shell")
	t.Logf("reboot to shell: %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, 2*time.Minute, "outpost.service active after the reboot", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, code, err := v.Run(ctx, "systemctl is-active --quiet outpost.service")
		return err == nil && code == 0
	})
	t.Logf("agent CPU from its start to its enforcing pass, server down: %s", agentCPU(t, v))
	revertsDrift(t, v)
}

func hasContent(v *VM, path, want string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, code, err := v.Run(ctx, "cat "+path)
	return err == nil && code == 0 && out == want
}

// revertsDrift overwrites the managed file and waits for the agent to put
// it back.
func revertsDrift(t *testing.T, v *VM) {
	t.Helper()
	guest(t, v, "echo drifted >"+managedPath)
	waitFor(t, time.Minute, "the agent to revert "+managedPath, func() bool {
		return hasContent(v, managedPath, managedContent)
	})
}

// agentCPU is the CPU time that systemd accounts to outpost.service.
func agentCPU(t *testing.T, v *VM) string {
	t.Helper()
	out := strings.TrimSpace(guest(t, v, "systemctl show -p CPUUsageNSec --value outpost.service"))
	var ns int64
	if _, err := fmt.Sscan(out, &ns); err != nil {
		return out
	}
	return time.Duration(ns).Round(time.Millisecond).String()
}
