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
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
	"golang.org/x/crypto/ssh"
)

// A poll that finds the branch unchanged is the agent's most frequent
// request, and with protocol v0 its answer lists every ref of the
// repository: every host's notes ref among them, so that each poll grows
// with the fleet. Protocol v2's ls-refs names the refs it wants by prefix
// and the answer holds the branch alone. go-git speaks only v0, so polls,
// fetches (fetchv2.go) and the fleet view's listing speak v2 here, over
// go-git's pktline encoding and the credentials that Transport built; a
// server that does not answer in v2 is spoken to with go-git's v0 from
// then on.

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
// (capabilities and refs), and for the sections of a fetch's answer
// before its pack: a prefix matches a bounded set of refs, and a server
// that sends more is not to be trusted with the agent's memory.
const maxLsRefsBytes = 1 << 20

// ErrNotV2 means the server answered, but not in protocol v2.
var ErrNotV2 = errors.New("server does not speak git protocol v2")

// Remote is a repository on a server, reached as a Transport says, and
// spoken to in protocol v2 where the server answers in it: listing refs
// by prefix and fetching commits. A server that does not answer in v2 is
// remembered, and logged once. Its methods are safe for concurrent use.
type Remote struct {
	tr  Transport
	log *slog.Logger

	mu    sync.Mutex
	proto Protocol
	http  *http.Client // the client of v2 exchanges over http(s), once built
}

// NewRemote returns the remote repository that tr reaches; log (nil for
// none) gets the one line that says the server does not speak v2.
func NewRemote(tr Transport, log *slog.Logger) *Remote {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Remote{tr: tr, log: log}
}

// Protocol returns what the Remote speaks: unknown until a server
// answered, v2 once one answered in v2, v0 for good once one did not.
func (rm *Remote) Protocol() Protocol {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.proto
}

// Protocol returns what the Repo's polls speak (see Remote.Protocol).
func (r *Repo) Protocol() Protocol { return r.rm.Protocol() }

// closeIdle closes the idle connections of v2 exchanges over http(s).
func (rm *Remote) closeIdle() {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.http != nil {
		rm.http.CloseIdleConnections()
	}
}

// v2Conn is a protocol v2 conversation whose capabilities have been read.
// send sends one command, whole, and returns the stream of its answer,
// which must be read to its end before the next command.
type v2Conn struct {
	caps map[string]string
	send func(req []byte) (io.Reader, error)
}

// converse opens a v2 conversation with the server and runs talk in it.
// It fails with ErrNotV2 when the transport is not one that v2 is spoken
// over here, when the Remote gave v2 up before, or when the server does
// not answer in v2: then it gives v2 up for good, and logs it once.
func (rm *Remote) converse(ctx context.Context, talk func(*v2Conn) error) error {
	rm.mu.Lock()
	given := rm.proto == ProtocolV0
	rm.mu.Unlock()
	if given {
		return ErrNotV2
	}
	ep, err := transport.NewEndpoint(rm.tr.URL)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotV2, err)
	}
	switch ep.Protocol {
	case "http", "https":
		err = rm.converseHTTP(ctx, talk)
	case "git":
		err = converseGit(ctx, ep, talk)
	case "ssh":
		err = converseSSH(ctx, ep, rm.tr.Auth, talk)
	default:
		return ErrNotV2
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	switch {
	case errors.Is(err, ErrNotV2):
		if rm.proto != ProtocolV0 {
			rm.proto = ProtocolV0
			rm.log.Info("the server does not answer in git protocol v2; polling with v0, which lists every ref", "reason", err)
		}
	case err == nil:
		rm.proto = ProtocolV2
	}
	return err
}

// ListRefs returns the refs of the repository whose names start with one
// of prefixes: asked for by prefix in protocol v2 (ls-refs), so that the
// answer does not grow with the other refs, or picked out of the whole v0
// advertisement from a server that does not speak v2. Symbolic refs are
// left out. A server in v0 says that a repository is empty with
// transport.ErrEmptyRemoteRepository; in v2 it lists no refs.
func (rm *Remote) ListRefs(ctx context.Context, prefixes ...string) (map[string]plumbing.Hash, error) {
	var refs map[string]plumbing.Hash
	err := rm.converse(ctx, func(c *v2Conn) (err error) {
		refs, err = lsRefs(c, prefixes)
		return err
	})
	if !errors.Is(err, ErrNotV2) {
		return refs, err
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{rm.tr.URL}})
	all, err := remote.ListContext(ctx, &git.ListOptions{
		Auth: rm.tr.Auth, CABundle: rm.tr.CABundle, PeelingOption: git.IgnorePeeled,
		ProxyOptions: rm.tr.Proxy,
	})
	if err != nil {
		return nil, err
	}
	refs = map[string]plumbing.Hash{}
	for _, ref := range all {
		name := ref.Name().String()
		if ref.Type() != plumbing.HashReference {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				refs[name] = ref.Hash()
				break
			}
		}
	}
	return refs, nil
}

// lsRefs runs ls-refs for prefixes in c.
func lsRefs(c *v2Conn, prefixes []string) (map[string]plumbing.Hash, error) {
	ans, err := c.send(lsRefsRequest(prefixes))
	if err != nil {
		return nil, err
	}
	return readRefs(pktline.NewScanner(limited(ans)))
}

// lsRefsRequest is the ls-refs command for the refs under prefixes,
// ended by a flush.
func lsRefsRequest(prefixes []string) []byte {
	var b bytes.Buffer
	e := pktline.NewEncoder(&b)
	_ = e.EncodeString("command=ls-refs\n", "agent=outpost\n")
	b.WriteString(delimPkt) // the arguments follow
	for _, p := range prefixes {
		_ = e.EncodeString("ref-prefix " + p + "\n")
	}
	_ = e.Flush()
	return b.Bytes()
}

// delimPkt separates a v2 command's capabilities from its arguments, and
// the sections of an answer.
const delimPkt = "0001"

// readCaps reads a v2 capability advertisement up to its flush, and fails
// with ErrNotV2 when it is something else (a v0 ref advertisement). It
// returns each capability's value ("" for none).
func readCaps(s *pktline.Scanner) (map[string]string, error) {
	first := true
	caps := map[string]string{}
	for s.Scan() {
		line := strings.TrimSuffix(string(s.Bytes()), "\n")
		if msg, ok := strings.CutPrefix(line, "ERR "); ok && first {
			// The server refused, in whichever protocol: not a reason
			// to give v2 up.
			if repoNotFound(msg) {
				return nil, fmt.Errorf("%w: %s", transport.ErrRepositoryNotFound, msg)
			}
			return nil, fmt.Errorf("server error: %s", msg)
		}
		if first {
			if line != "version 2" {
				return nil, fmt.Errorf("%w: it answered %.40q", ErrNotV2, line)
			}
			first = false
			continue
		}
		if line == "" {
			return caps, nil // flush
		}
		k, v, _ := strings.Cut(line, "=")
		caps[k] = v
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if first {
		return nil, fmt.Errorf("%w: the server closed the connection before sending its capabilities", io.ErrUnexpectedEOF)
	}
	return nil, fmt.Errorf("%w: the capability advertisement has no end", io.ErrUnexpectedEOF)
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

// converseStream holds a v2 conversation over a connection on which the
// server speaks first (git://, ssh): its capabilities, then our commands
// and its answers. The final flush ends the conversation politely.
func converseStream(rd io.Reader, w io.Writer, talk func(*v2Conn) error) error {
	caps, err := readCaps(pktline.NewScanner(limited(rd)))
	if err != nil {
		if errors.Is(err, ErrNotV2) {
			// A v0 server waits for wants; a flush says there are none.
			_, _ = w.Write(pktline.FlushPkt)
		}
		return err
	}
	c := &v2Conn{caps: caps, send: func(req []byte) (io.Reader, error) {
		if _, err := w.Write(req); err != nil {
			return nil, err
		}
		return rd, nil
	}}
	if err := talk(c); err != nil {
		return err
	}
	_, _ = w.Write(pktline.FlushPkt)
	return nil
}

// converseGit speaks v2 to a git daemon: the version goes as an extra
// parameter of the request line, which daemons that do not know it ignore.
func converseGit(ctx context.Context, ep *transport.Endpoint, talk func(*v2Conn) error) error {
	conn, addr, err := dialBound(ctx, ep, gitDefaultPort, gitConnectTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	host := ep.Host
	if ep.Port > 0 && ep.Port != gitDefaultPort {
		host = addr
	}
	line := transport.UploadPackServiceName + " " + ep.Path + "\x00host=" + host + "\x00\x00version=2\x00"
	if err := pktline.NewEncoder(conn).EncodeString(line); err != nil {
		return ctxErr(ctx, err)
	}
	err = converseStream(bufio.NewReader(conn), conn, talk)
	if err != nil && !errors.Is(err, ErrNotV2) {
		return advRefsError(ctxErr(ctx, err))
	}
	return err
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
func converseSSH(ctx context.Context, ep *transport.Endpoint, auth transport.AuthMethod, talk func(*v2Conn) error) error {
	am, ok := auth.(gitssh.AuthMethod)
	if !ok {
		return fmt.Errorf("%w: no ssh credentials", transport.ErrInvalidAuthMethod)
	}
	cc, err := am.ClientConfig()
	if err != nil {
		return err
	}
	conn, addr, err := dialBound(ctx, ep, 22, cc.Timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if err != nil {
		return ctxErr(ctx, err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return ctxErr(ctx, err)
	}
	defer sess.Close()
	if err := sess.Setenv("GIT_PROTOCOL", "version=2"); err != nil {
		return fmt.Errorf("%w: sshd does not accept GIT_PROTOCOL (%w)", ErrNotV2, err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &limitedBuffer{left: 4096}
	sess.Stderr = stderr
	if err := sess.Start(transport.UploadPackServiceName + " " + shellQuote(ep.Path)); err != nil {
		return ctxErr(ctx, err)
	}
	err = converseStream(stdout, stdin, talk)
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		// Let upload-pack end on its own rather than by a cut
		// connection: sshd logs no error, and the exchange is the same
		// at every poll. After an early end, this waits for its last
		// words on stderr. The context's deadline bounds the wait.
		_ = stdin.Close()
		_ = sess.Wait()
	}
	if err != nil && !errors.Is(err, ErrNotV2) {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			// git-upload-pack says why it would not serve the path.
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return ctxErr(ctx, err)
	}
	return err
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

// httpClient returns the client of v2 exchanges over http(s): the CAs
// that Transport read, and no redirects (a server that redirects is left
// to go-git's v0 and its redirect policy).
func (rm *Remote) httpClient() (*http.Client, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.http != nil {
		return rm.http, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(rm.tr.CABundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(rm.tr.CABundle) {
			return nil, fmt.Errorf("%w: the ca file holds no PEM certificate", ErrConfig)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	rm.http = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return rm.http, nil
}

// converseHTTP speaks v2 over smart HTTP: the Git-Protocol header asks
// for it on the capability request, and each command is POSTed.
func (rm *Remote) converseHTTP(ctx context.Context, talk func(*v2Conn) error) error {
	client, err := rm.httpClient()
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(rm.tr.URL, "/")
	res, err := rm.httpDo(ctx, client, http.MethodGet, base+"/info/refs?service="+transport.UploadPackServiceName, nil)
	if err != nil {
		return err
	}
	caps, err := readServiceCaps(pktline.NewScanner(limited(res.Body)))
	res.Body.Close()
	if err != nil {
		return err
	}
	var last io.Closer
	defer func() {
		if last != nil {
			last.Close()
		}
	}()
	c := &v2Conn{caps: caps, send: func(req []byte) (io.Reader, error) {
		if last != nil {
			last.Close()
			last = nil
		}
		res, err := rm.httpDo(ctx, client, http.MethodPost, base+"/"+transport.UploadPackServiceName, req)
		if err != nil {
			return nil, err
		}
		last = res.Body
		if ct := res.Header.Get("Content-Type"); ct != "application/x-git-upload-pack-result" {
			return nil, fmt.Errorf("%w: the command was answered with content type %q", ErrNotV2, ct)
		}
		return res.Body, nil
	}}
	return talk(c)
}

// readServiceCaps reads the smart HTTP capability advertisement: the
// service line and its flush, then v2's capabilities.
func readServiceCaps(s *pktline.Scanner) (map[string]string, error) {
	if !s.Scan() {
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotV2, err)
		}
		return nil, fmt.Errorf("%w: empty answer", ErrNotV2)
	}
	if strings.HasPrefix(string(s.Bytes()), "# service=") {
		if !s.Scan() || len(s.Bytes()) != 0 {
			return nil, fmt.Errorf("%w: no flush after the service line", ErrNotV2)
		}
		return readCaps(s)
	}
	// Some servers leave the service line out in v2.
	if line := strings.TrimSuffix(string(s.Bytes()), "\n"); line != "version 2" {
		return nil, fmt.Errorf("%w: it answered %.40q", ErrNotV2, line)
	}
	caps := map[string]string{}
	for s.Scan() {
		line := strings.TrimSuffix(string(s.Bytes()), "\n")
		if line == "" {
			return caps, nil
		}
		k, v, _ := strings.Cut(line, "=")
		caps[k] = v
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: the capability advertisement has no end", io.ErrUnexpectedEOF)
}

// httpDo sends one request of a v2 exchange with the source's credentials.
// An error status becomes go-git's error for it, so that it is classified
// as go-git's v0 polls' are; a redirect or a dumb server means v0.
func (rm *Remote) httpDo(ctx context.Context, client *http.Client, method, url string, body []byte) (*http.Response, error) {
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
	if a, ok := rm.tr.Auth.(githttp.AuthMethod); ok {
		a.SetAuth(req)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	switch {
	case res.StatusCode >= 300 && res.StatusCode < 400:
		res.Body.Close()
		return nil, fmt.Errorf("%w: redirected (%s)", ErrNotV2, res.Status)
	case res.StatusCode != http.StatusOK:
		// NewErr reads the body for its message: bound it.
		res.Body = readCloser{io.LimitReader(res.Body, 4096), res.Body}
		return nil, githttp.NewErr(res)
	}
	if method == http.MethodGet && res.Header.Get("Content-Type") != "application/x-git-upload-pack-advertisement" {
		res.Body.Close()
		return nil, fmt.Errorf("%w: not a smart HTTP server (content type %q)", ErrNotV2, res.Header.Get("Content-Type"))
	}
	return res, nil
}
