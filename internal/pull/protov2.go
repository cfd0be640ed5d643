package pull

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// A poll that finds the branch unchanged is the agent's most frequent
// request, and with protocol v0 its answer lists every ref of the
// repository: every host's notes ref among them, so that each poll grows
// with the fleet. Protocol v2's ls-refs names the refs it wants by prefix
// and the answer holds the branch alone. go-git speaks only v0, so the
// poll speaks v2 here, over go-git's pktline encoding and the credentials
// that Transport built; a server that does not answer in v2 is polled with
// go-git's v0 from then on.
//
// Fetching a new commit stays with go-git's v0 fetch. It runs only when
// the branch moved, and keeping one fetch path keeps the pack handling and
// its limits (the caps on what a fetch may bring) in one place.

// Protocol is the Git wire protocol that a Repo's polls speak.
type Protocol int

const (
	// ProtocolUnknown: no poll has reached the server yet.
	ProtocolUnknown Protocol = iota
	// ProtocolV2: polls ask for the branch alone (ls-refs).
	ProtocolV2
	// ProtocolV0: the server did not answer in v2; polls read the whole
	// ref advertisement.
	ProtocolV0
)

func (p Protocol) String() string {
	switch p {
	case ProtocolV2:
		return "v2"
	case ProtocolV0:
		return "v0"
	}
	return "unknown"
}

// maxLsRefsBytes bounds what a server may send for one ls-refs exchange
// (capabilities and refs): a branch prefix matches a handful of refs, and a
// server that sends more is not to be trusted with the agent's memory.
const maxLsRefsBytes = 1 << 20

// errNotV2 means the server answered, but not in protocol v2.
var errNotV2 = errors.New("server does not speak git protocol v2")

// Protocol returns what the Repo's polls speak: unknown until a server
// answered, v2 once one answered in v2, v0 for good once one did not.
func (r *Repo) Protocol() Protocol {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proto
}

// lsRefsV2 asks for the branch's tip in protocol v2. done is false when
// the poll must be made in v0 instead: the transport is not one that v2
// serves here, or the server did not answer in v2 (remembered, and logged
// once). r.mu is held.
func (r *Repo) lsRefsV2(ctx context.Context) (tip plumbing.Hash, done bool, err error) {
	if r.proto == ProtocolV0 {
		return plumbing.ZeroHash, false, nil
	}
	ep, err := transport.NewEndpoint(r.tr.URL)
	if err != nil {
		return plumbing.ZeroHash, false, nil
	}
	prefix := r.branch.String()
	var refs map[string]plumbing.Hash
	switch ep.Protocol {
	case "http", "https":
		refs, err = r.lsRefsHTTP(ctx, ep, prefix)
	case "git":
		refs, err = lsRefsGit(ctx, ep, prefix)
	case "ssh":
		refs, err = lsRefsSSH(ctx, ep, r.tr.Auth, prefix)
	default:
		return plumbing.ZeroHash, false, nil
	}
	if errors.Is(err, errNotV2) {
		r.proto = ProtocolV0
		r.log.Info("the server does not answer in git protocol v2; polling with v0, which lists every ref", "reason", err)
		return plumbing.ZeroHash, false, nil
	}
	if err != nil {
		return plumbing.ZeroHash, true, r.wrapErr("ls-remote", err)
	}
	r.proto = ProtocolV2
	tip, ok := refs[prefix]
	if !ok {
		return plumbing.ZeroHash, true, &Error{Op: "ls-remote", URL: r.redacted, Kind: ErrBranchNotFound, Err: fmt.Errorf("no branch %q", r.cfg.Branch)}
	}
	return tip, true, nil
}

// lsRefsRequest is the ls-refs command for the refs under prefix, ended
// by a flush.
func lsRefsRequest(prefix string) []byte {
	var b bytes.Buffer
	e := pktline.NewEncoder(&b)
	_ = e.EncodeString("command=ls-refs\n", "agent=outpost\n")
	b.WriteString("0001") // delim-pkt: the arguments follow
	_ = e.EncodeString("ref-prefix " + prefix + "\n")
	_ = e.Flush()
	return b.Bytes()
}

// readCaps reads a v2 capability advertisement up to its flush, and fails
// with errNotV2 when it is something else (a v0 ref advertisement).
func readCaps(s *pktline.Scanner) error {
	first := true
	for s.Scan() {
		line := strings.TrimSuffix(string(s.Bytes()), "\n")
		if msg, ok := strings.CutPrefix(line, "ERR "); ok && first {
			// The server refused, in whichever protocol: not a reason
			// to give v2 up.
			if repoNotFound(msg) {
				return fmt.Errorf("%w: %s", transport.ErrRepositoryNotFound, msg)
			}
			return fmt.Errorf("server error: %s", msg)
		}
		if first {
			if line != "version 2" {
				return fmt.Errorf("%w: it answered %.40q", errNotV2, line)
			}
			first = false
			continue
		}
		if line == "" {
			return nil // flush
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	if first {
		return fmt.Errorf("%w: the server closed the connection before sending its capabilities", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("%w: the capability advertisement has no end", io.ErrUnexpectedEOF)
}

// readRefs reads an ls-refs answer: "<oid> <name>[ attr...]" lines up to a
// flush.
func readRefs(s *pktline.Scanner) (map[string]plumbing.Hash, error) {
	refs := map[string]plumbing.Hash{}
	for s.Scan() {
		line := strings.TrimSuffix(string(s.Bytes()), "\n")
		if line == "" {
			return refs, nil
		}
		if msg, ok := strings.CutPrefix(line, "ERR "); ok {
			return nil, fmt.Errorf("server error: %s", msg)
		}
		oid, rest, ok := strings.Cut(line, " ")
		name, _, _ := strings.Cut(rest, " ")
		h := plumbing.NewHash(oid)
		if !ok || h.String() != oid {
			return nil, fmt.Errorf("malformed ls-refs line %.80q", line)
		}
		refs[name] = h
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: the ls-refs answer has no end", io.ErrUnexpectedEOF)
}

// limited reads at most maxLsRefsBytes of rd, and then fails.
func limited(rd io.Reader) io.Reader {
	return &capReader{r: rd, left: maxLsRefsBytes}
}

type capReader struct {
	r    io.Reader
	left int64
}

var errTooLong = fmt.Errorf("the server sent more than %d bytes for one ls-refs", maxLsRefsBytes)

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errTooLong
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// lsRefsStream runs ls-refs over a connection on which the server speaks
// first (git://, ssh): its capabilities, then our command, then the refs.
// The final flush ends the session politely.
func lsRefsStream(rd io.Reader, w io.Writer, prefix string) (map[string]plumbing.Hash, error) {
	s := pktline.NewScanner(limited(rd))
	if err := readCaps(s); err != nil {
		if errors.Is(err, errNotV2) {
			// A v0 server waits for wants; a flush says there are none.
			_, _ = w.Write(pktline.FlushPkt)
		}
		return nil, err
	}
	if _, err := w.Write(lsRefsRequest(prefix)); err != nil {
		return nil, err
	}
	refs, err := readRefs(s)
	if err != nil {
		return nil, err
	}
	_, _ = w.Write(pktline.FlushPkt)
	return refs, nil
}

// lsRefsGit speaks v2 to a git daemon: the version goes as an extra
// parameter of the request line, which daemons that do not know it ignore.
func lsRefsGit(ctx context.Context, ep *transport.Endpoint, prefix string) (map[string]plumbing.Hash, error) {
	conn, addr, err := dialBound(ctx, ep, gitDefaultPort, gitConnectTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	host := ep.Host
	if ep.Port > 0 && ep.Port != gitDefaultPort {
		host = addr
	}
	line := transport.UploadPackServiceName + " " + ep.Path + "\x00host=" + host + "\x00\x00version=2\x00"
	if err := pktline.NewEncoder(conn).EncodeString(line); err != nil {
		return nil, ctxErr(ctx, err)
	}
	refs, err := lsRefsStream(bufio.NewReader(conn), conn, prefix)
	if err != nil && !errors.Is(err, errNotV2) {
		return nil, advRefsError(ctxErr(ctx, err))
	}
	return refs, err
}

// dialBound connects to the endpoint (on defaultPort when it names none)
// within ctx and connectTimeout. ctx's deadline becomes the connection's,
// and its end cuts the I/O in progress, until the connection is closed.
func dialBound(ctx context.Context, ep *transport.Endpoint, defaultPort int, connectTimeout time.Duration) (net.Conn, string, error) {
	port := ep.Port
	if port <= 0 {
		port = defaultPort
	}
	addr := net.JoinHostPort(ep.Host, strconv.Itoa(port))
	d := net.Dialer{Timeout: connectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	return boundConn{conn, stop}, addr, nil
}

// boundConn stops watching its context when it closes.
type boundConn struct {
	net.Conn
	stop func() bool
}

func (c boundConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// ctxErr names the end of ctx as the cause of an I/O error it provoked.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", context.Cause(ctx), err)
	}
	return err
}

// lsRefsSSH speaks v2 over ssh: GIT_PROTOCOL goes in the session's
// environment, which sshd passes on only when it accepts it (AcceptEnv
// GIT_PROTOCOL); a refusal means v0.
func lsRefsSSH(ctx context.Context, ep *transport.Endpoint, auth transport.AuthMethod, prefix string) (map[string]plumbing.Hash, error) {
	am, ok := auth.(gitssh.AuthMethod)
	if !ok {
		return nil, fmt.Errorf("%w: no ssh credentials", transport.ErrInvalidAuthMethod)
	}
	cc, err := am.ClientConfig()
	if err != nil {
		return nil, err
	}
	conn, addr, err := dialBound(ctx, ep, 22, cc.Timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	defer sess.Close()
	if err := sess.Setenv("GIT_PROTOCOL", "version=2"); err != nil {
		return nil, fmt.Errorf("%w: sshd does not accept GIT_PROTOCOL (%w)", errNotV2, err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &limitedBuffer{left: 4096}
	sess.Stderr = stderr
	if err := sess.Start(transport.UploadPackServiceName + " " + shellQuote(ep.Path)); err != nil {
		return nil, ctxErr(ctx, err)
	}
	refs, err := lsRefsStream(stdout, stdin, prefix)
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		// Let upload-pack end on its own rather than by a cut
		// connection: sshd logs no error, and the exchange is the same
		// at every poll. After an early end, this waits for its last
		// words on stderr. The context's deadline bounds the wait.
		_ = stdin.Close()
		_ = sess.Wait()
	}
	if err != nil && !errors.Is(err, errNotV2) {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			// git-upload-pack says why it would not serve the path.
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, ctxErr(ctx, err)
	}
	return refs, err
}

// limitedBuffer keeps the first bytes written to it. The ssh session
// writes to it from a goroutine of its own.
type limitedBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	left int
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.left > 0 {
		n := min(len(p), l.left)
		l.b.Write(p[:n])
		l.left -= n
	}
	return len(p), nil
}

// shellQuote quotes s for the remote shell as git does: in single quotes,
// with each single quote and exclamation mark outside them.
func shellQuote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, c := range s {
		if c == '\'' || c == '!' {
			b.WriteString(`'\` + string(c) + `'`)
			continue
		}
		b.WriteRune(c)
	}
	b.WriteByte('\'')
	return b.String()
}

// httpClient returns the client of v2 polls over http(s): the CAs that
// Transport read, and no redirects (a server that redirects is left to
// go-git's v0 and its redirect policy). r.mu is held.
func (r *Repo) httpClient() (*http.Client, error) {
	if r.v2http != nil {
		return r.v2http, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(r.tr.CABundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(r.tr.CABundle) {
			return nil, fmt.Errorf("%w: the ca file holds no PEM certificate", ErrConfig)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	r.v2http = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return r.v2http, nil
}

// lsRefsHTTP speaks v2 over smart HTTP: the Git-Protocol header asks for
// it on the capability request, and the ls-refs command is POSTed.
func (r *Repo) lsRefsHTTP(ctx context.Context, ep *transport.Endpoint, prefix string) (map[string]plumbing.Hash, error) {
	client, err := r.httpClient()
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(r.tr.URL, "/")
	res, err := r.httpDo(ctx, client, http.MethodGet, base+"/info/refs?service="+transport.UploadPackServiceName, nil)
	if err != nil {
		return nil, err
	}
	s := pktline.NewScanner(limited(res.Body))
	err = readServiceCaps(s)
	res.Body.Close()
	if err != nil {
		return nil, err
	}

	res, err = r.httpDo(ctx, client, http.MethodPost, base+"/"+transport.UploadPackServiceName, lsRefsRequest(prefix))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/x-git-upload-pack-result" {
		return nil, fmt.Errorf("%w: ls-refs answered with content type %q", errNotV2, ct)
	}
	return readRefs(pktline.NewScanner(limited(res.Body)))
}

// readServiceCaps reads the smart HTTP capability advertisement: the
// service line and its flush, then v2's capabilities.
func readServiceCaps(s *pktline.Scanner) error {
	if !s.Scan() {
		if err := s.Err(); err != nil {
			return fmt.Errorf("%w: %w", errNotV2, err)
		}
		return fmt.Errorf("%w: empty answer", errNotV2)
	}
	if strings.HasPrefix(string(s.Bytes()), "# service=") {
		if !s.Scan() || len(s.Bytes()) != 0 {
			return fmt.Errorf("%w: no flush after the service line", errNotV2)
		}
		return readCaps(s)
	}
	// Some servers leave the service line out in v2.
	if line := strings.TrimSuffix(string(s.Bytes()), "\n"); line != "version 2" {
		return fmt.Errorf("%w: it answered %.40q", errNotV2, line)
	}
	for s.Scan() {
		if len(s.Bytes()) == 0 {
			return nil
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: the capability advertisement has no end", io.ErrUnexpectedEOF)
}

// httpDo sends one request of a v2 exchange with the source's credentials.
// An error status becomes go-git's error for it, so that it is classified
// as go-git's v0 polls' are; a redirect or a dumb server means v0.
func (r *Repo) httpDo(ctx context.Context, client *http.Client, method, url string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Git-Protocol", "version=2")
	req.Header.Set("User-Agent", "git/outpost")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
		req.Header.Set("Accept", "application/x-git-upload-pack-result")
	}
	// Basic auth, or a token or password file read for this request.
	if a, ok := r.tr.Auth.(githttp.AuthMethod); ok {
		a.SetAuth(req)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	switch {
	case res.StatusCode >= 300 && res.StatusCode < 400:
		res.Body.Close()
		return nil, fmt.Errorf("%w: redirected (%s)", errNotV2, res.Status)
	case res.StatusCode != http.StatusOK:
		// NewErr reads the body for its message: bound it.
		res.Body = readCloser{io.LimitReader(res.Body, 4096), res.Body}
		return nil, githttp.NewErr(res)
	}
	if method == http.MethodGet && res.Header.Get("Content-Type") != "application/x-git-upload-pack-advertisement" {
		res.Body.Close()
		return nil, fmt.Errorf("%w: not a smart HTTP server (content type %q)", errNotV2, res.Header.Get("Content-Type"))
	}
	return res, nil
}
