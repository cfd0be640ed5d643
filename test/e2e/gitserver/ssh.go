package gitserver

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// SSHServer is Debian's sshd serving a Root to one client key, as the user
// that runs the test (root): git-upload-pack and git-receive-pack run as
// plain commands.
type SSHServer struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// User is the login name in URL.
	User string
	// KeyFile is the client's private key, which sshd accepts.
	KeyFile string
	// KnownHostsFile names the server's real host key.
	KnownHostsFile string
	// WrongKnownHostsFile names another key for the same host: a changed
	// host key.
	WrongKnownHostsFile string
	// OtherHostKnownHostsFile names only a different host: an unknown host.
	OtherHostKnownHostsFile string
	// HostKey is the server's public host key in authorized_keys form.
	HostKey string

	root   *Root
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
	stderr *bytes.Buffer
}

// SSHOptions configure an ssh server.
type SSHOptions struct {
	// RefuseGitProtocol leaves GIT_PROTOCOL out of AcceptEnv, as some
	// servers do: clients cannot ask for protocol v2.
	RefuseGitProtocol bool
}

// ServeSSH starts /usr/sbin/sshd on a loopback port with a throwaway host key
// that accepts one client key, made here. It accepts GIT_PROTOCOL from the
// client's environment, as most Git hosts do. The test must run as root.
func (r *Root) ServeSSH() *SSHServer {
	r.t.Helper()
	return r.ServeSSHWith(SSHOptions{})
}

// ServeSSHWith is ServeSSH with options.
func (r *Root) ServeSSHWith(o SSHOptions) *SSHServer {
	r.t.Helper()
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		r.t.Fatalf("gitserver: %s is required (Debian's openssh-server; test/run installs it): %v", sshd, err)
	}
	if os.Geteuid() != 0 {
		r.t.Fatalf("gitserver: sshd needs root to switch to the login user; run the tests as root")
	}
	u, err := user.Current()
	if err != nil {
		r.t.Fatalf("gitserver: %v", err)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		r.t.Fatalf("gitserver: %v", err)
	}
	dir := r.t.TempDir()
	hostKey := NewSSHKey(r.t)
	wrongKey := NewSSHKey(r.t)
	client := NewSSHKey(r.t)
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(client.Public+"\n"), 0o600); err != nil {
		r.t.Fatalf("gitserver: %v", err)
	}
	acceptEnv := "AcceptEnv GIT_PROTOCOL\n"
	if o.RefuseGitProtocol {
		acceptEnv = ""
	}
	var lastErr error
	for range 5 {
		port := freePort(r.t)
		s := &SSHServer{
			Addr: "127.0.0.1:" + strconv.Itoa(port), User: u.Username, KeyFile: client.PrivateFile,
			HostKey: hostKey.Public, root: r, exited: make(chan struct{}), stderr: &bytes.Buffer{},
		}
		hostPattern := fmt.Sprintf("[127.0.0.1]:%d", port)
		s.KnownHostsFile = writeFile(r, dir, "known_hosts", hostPattern+" "+hostKey.Public+"\n")
		s.WrongKnownHostsFile = writeFile(r, dir, "known_hosts.wrong", hostPattern+" "+wrongKey.Public+"\n")
		s.OtherHostKnownHostsFile = writeFile(r, dir, "known_hosts.other", "[127.0.0.2]:1 "+hostKey.Public+"\n")
		conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers %s
PrintMotd no
LogLevel ERROR
SetEnv SHLVL=1
%s`, port, hostKey.PrivateFile, authKeys, u.Username, acceptEnv)
		// SHLVL=1: bash, the login shell, sources ~/.bashrc for commands
		// that sshd runs when SHLVL is unset; a slow .bashrc would slow
		// every connection down.
		confFile := writeFile(r, dir, "sshd_config", conf)
		s.cmd = exec.Command(sshd, "-D", "-e", "-f", confFile)
		s.cmd.Stderr = s.stderr
		ownGroup(s.cmd)
		if err := s.cmd.Start(); err != nil {
			r.t.Fatalf("gitserver: start sshd: %v", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.exited) }()
		if err := waitListening(s.Addr, s.exited); err != nil {
			stopProcess(s.cmd, s.exited)
			lastErr = fmt.Errorf("%w: %s", err, s.stderr.String())
			continue
		}
		r.t.Cleanup(s.Close)
		return s
	}
	r.t.Fatalf("gitserver: sshd: %v", lastErr)
	return nil
}

// URL returns the repository name's ssh:// URL.
func (s *SSHServer) URL(name string) string {
	return "ssh://" + s.User + "@" + s.Addr + s.root.Path(name)
}

// SSHProxy is an SSHServer behind a counting Proxy, with a known_hosts
// file that names the server's key at the proxy's address.
type SSHProxy struct {
	*Proxy
	// KnownHosts is the known_hosts file for clients of the proxy.
	KnownHosts string
	server     *SSHServer
}

// Proxied puts a counting proxy in front of s.
func (s *SSHServer) Proxied(t testing.TB) *SSHProxy {
	t.Helper()
	p := NewProxy(t, s.Addr)
	known := filepath.Join(t.TempDir(), "known_hosts")
	line := "[" + strings.Replace(p.Addr, ":", "]:", 1) + " " + s.HostKey + "\n"
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return &SSHProxy{Proxy: p, KnownHosts: known, server: s}
}

// URL returns the repository name's ssh:// URL through the proxy.
func (p *SSHProxy) URL(name string) string {
	return strings.Replace(p.server.URL(name), p.server.Addr, p.Addr, 1)
}

// Close stops sshd; it is safe to call more than once.
func (s *SSHServer) Close() {
	s.once.Do(func() { stopProcess(s.cmd, s.exited) })
}

func writeFile(r *Root, dir, name, content string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		r.t.Fatalf("gitserver: %v", err)
	}
	return p
}
