package pull

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/outpost-gitops/outpost/internal/redact"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/net/proxy"
)

// Transport is how to reach a source: the URL to hand to go-git (without
// credentials), its authentication and the extra CAs for TLS. internal/status
// uses it to push notes to the same server.
type Transport struct {
	// URL has no user info for http(s); an ssh URL keeps its user name.
	URL string
	// Auth is nil for anonymous access, the git protocol and local paths.
	Auth transport.AuthMethod
	// CABundle holds PEM certificates trusted besides the system's.
	CABundle []byte
	// Local is true for a local path or a file:// URL.
	Local bool
	// LocalPath is the repository's directory when Local.
	LocalPath string
	// Proxy, for ssh, bounds each connection by the configuration's
	// timeout (go-git runs the SSH handshake without a context): pass it
	// as ProxyOptions of go-git's List, Fetch and Push options.
	Proxy transport.ProxyOptions
}

// scpLike matches git's short SSH form user@host:path.
var scpLike = regexp.MustCompile(`^(?:([^@/]+)@)?([^:/]+):(.*)$`)

// Transport works out how to reach c's source. It reads the credential and CA
// files that c names. A token or password file is read again before each
// HTTP request (see fileAuth); the CA file and an SSH key are read here
// only, so a rotated key takes effect when the caller builds a new
// Transport (the daemon does at every reload).
func (c Config) Transport() (Transport, error) {
	raw := strings.TrimSpace(c.URL)
	if raw == "" {
		return Transport{}, fmt.Errorf("%w: no url", ErrConfig)
	}
	var t Transport
	if c.Auth.CAFile != "" {
		b, err := os.ReadFile(c.Auth.CAFile)
		if err != nil {
			return Transport{}, fmt.Errorf("%w: ca file: %w", ErrConfig, err)
		}
		t.CABundle = b
	}
	switch {
	case strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "./") || strings.HasPrefix(raw, "../") || raw == ".":
		abs, err := filepath.Abs(raw)
		if err != nil {
			return Transport{}, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return Transport{URL: abs, Local: true, LocalPath: abs}, nil
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil {
			return Transport{}, fmt.Errorf("%w: %s: %w", ErrConfig, redact.URLs(raw), err)
		}
		return Transport{URL: raw, Local: true, LocalPath: u.Path}, nil
	case !strings.Contains(raw, "://"):
		m := scpLike.FindStringSubmatch(raw)
		if m == nil {
			return Transport{}, fmt.Errorf("%w: %s: not a URL, an scp-like ssh address or an absolute path", ErrConfig, redact.URLs(raw))
		}
		user := m[1]
		if user == "" {
			user = "git"
		}
		auth, err := c.sshAuth(user, m[2], "22")
		if err != nil {
			return Transport{}, err
		}
		return Transport{URL: raw, Auth: auth, Proxy: deadlineProxy(c.timeout())}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Transport{}, fmt.Errorf("%w: %s: %w", ErrConfig, redact.URLs(raw), err)
	}
	switch u.Scheme {
	case "https", "http":
		return c.httpTransport(t, u)
	case "ssh", "git+ssh", "ssh+git":
		return c.sshTransport(t, u, raw)
	case "git":
		t.URL = raw
		return t, nil
	}
	return Transport{}, fmt.Errorf("%w: %s: unsupported scheme %q", ErrConfig, redact.URLs(raw), u.Scheme)
}

// httpTransport is t for an http(s) URL: basic auth from the URL's user
// information or source.auth, or a token or password file read per
// request.
func (c Config) httpTransport(t Transport, u *url.URL) (Transport, error) {
	user, pass := c.Auth.Username, ""
	if u.User != nil {
		if user == "" {
			user = u.User.Username()
		}
		pass, _ = u.User.Password()
		u.User = nil
	}
	switch {
	case c.Auth.TokenFile != "":
		a, err := newFileAuth(c.Auth.TokenFile, user, true)
		if err != nil {
			return Transport{}, err
		}
		t.Auth = a
	case c.Auth.PasswordFile != "":
		a, err := newFileAuth(c.Auth.PasswordFile, user, false)
		if err != nil {
			return Transport{}, err
		}
		t.Auth = a
	case user != "" || pass != "":
		t.Auth = &githttp.BasicAuth{Username: user, Password: pass}
	}
	t.URL = u.String()
	return t, nil
}

// sshTransport is t for an ssh:// URL: the user from the URL or
// source.auth (git by default) and the key and known hosts files.
func (c Config) sshTransport(t Transport, u *url.URL, raw string) (Transport, error) {
	u.Scheme = "ssh"
	user := u.User.Username()
	if user == "" {
		user = c.Auth.Username
	}
	if user == "" {
		user = "git"
	}
	if _, ok := u.User.Password(); ok {
		return Transport{}, fmt.Errorf("%w: %s: ssh URLs take a key file, not a password", ErrConfig, redact.URLs(raw))
	}
	u.User = url.User(user)
	port := u.Port()
	if port == "" {
		port = "22"
	}
	auth, err := c.sshAuth(user, u.Hostname(), port)
	if err != nil {
		return Transport{}, err
	}
	t.URL, t.Auth, t.Proxy = u.String(), auth, deadlineProxy(c.timeout())
	return t, nil
}

// timeout is the configured timeout or DefaultTimeout.
func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: credential file: %w", ErrConfig, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// sshAuth returns the key file's auth with a strict known_hosts check.
func (c Config) sshAuth(user, host, port string) (transport.AuthMethod, error) {
	if c.Auth.SSHKeyFile == "" {
		return nil, fmt.Errorf("%w: an ssh source needs auth.ssh_key_file", ErrConfig)
	}
	keys, err := gitssh.NewPublicKeysFromFile(user, c.Auth.SSHKeyFile, "")
	if err != nil {
		return nil, fmt.Errorf("%w: ssh key %s: %w", ErrConfig, c.Auth.SSHKeyFile, err)
	}
	files := []string{c.Auth.KnownHostsFile}
	if c.Auth.KnownHostsFile == "" {
		files = defaultKnownHosts()
	}
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		} else if c.Auth.KnownHostsFile != "" {
			return nil, fmt.Errorf("%w: known_hosts: %w", ErrConfig, err)
		}
	}
	if len(existing) == 0 {
		return nil, fmt.Errorf("%w: an ssh source needs auth.known_hosts_file (none of %s exists)", ErrConfig, strings.Join(files, ", "))
	}
	db, err := gitssh.NewKnownHostsDb(existing...)
	if err != nil {
		return nil, fmt.Errorf("%w: known_hosts: %w", ErrConfig, err)
	}
	check := db.HostKeyCallback()
	keys.HostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) == 0:
			return fmt.Errorf("%w: %s offered %s %s", ErrHostKeyUnknown, hostname, key.Type(), ssh.FingerprintSHA256(key))
		case errors.As(err, &ke):
			return fmt.Errorf("%w: %s offered %s %s", ErrHostKeyChanged, hostname, key.Type(), ssh.FingerprintSHA256(key))
		}
		return fmt.Errorf("%w: %w", ErrHostKey, err)
	}
	// Ask only for the key types known_hosts has for this host, so that a
	// server with several host keys shows the one that can be checked.
	keys.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(host, port))
	return &sshAuth{PublicKeys: keys, timeout: c.timeout()}, nil
}

// defaultKnownHosts are OpenSSH's files, used when the configuration names
// none.
func defaultKnownHosts() []string {
	files := []string{"/etc/ssh/ssh_known_hosts"}
	if home, err := os.UserHomeDir(); err == nil {
		files = append([]string{filepath.Join(home, ".ssh", "known_hosts")}, files...)
	}
	return files
}

// deadlineScheme names a pseudo proxy through which go-git dials ssh: it
// dials directly and gives the connection a deadline, because go-git runs
// the SSH handshake without the operation's context and a server that
// accepts a connection and then stalls would hang the poll for ever.
const deadlineScheme = "outpost-deadline"

func init() {
	proxy.RegisterDialerType(deadlineScheme, func(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
		d, err := time.ParseDuration(u.Query().Get("timeout"))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%w: dial timeout %q", ErrConfig, u.Query().Get("timeout"))
		}
		return deadlineDialer{timeout: d}, nil
	})
}

// deadlineProxy returns the proxy options that bound every ssh connection
// of one operation to timeout.
func deadlineProxy(timeout time.Duration) transport.ProxyOptions {
	return transport.ProxyOptions{URL: deadlineScheme + "://direct/?timeout=" + url.QueryEscape(timeout.String())}
}

type deadlineDialer struct{ timeout time.Duration }

func (d deadlineDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(d.timeout)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sshAuth adds a connect timeout to go-git's key auth: go-git dials SSH
// without the operation's context.
type sshAuth struct {
	*gitssh.PublicKeys
	timeout time.Duration
}

func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	cc, err := a.PublicKeys.ClientConfig()
	if err != nil {
		return nil, err
	}
	cc.Timeout = a.timeout
	return cc, nil
}
