package pull

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
)

// go-git's transport for git:// URLs dials with net.Dial: no timeout and no
// context, so a server whose packets are dropped holds a poll until the
// kernel gives up on the connection (about two minutes on Linux), whatever
// the configured timeout. gitDaemon replaces it for fetches and for pushes
// (the notes pusher's): it dials with the operation's context when the
// first request goes out, and the context's deadline bounds every read and
// write after.

func init() {
	client.InstallProtocol("git", gitDaemon{})
}

// gitDefaultPort is the git protocol's port when the URL names none.
const gitDefaultPort = 9418

// gitConnectTimeout bounds the connect of an operation whose context has
// no deadline. The puller's operations all have one: Config.Timeout.
const gitConnectTimeout = DefaultTimeout

type gitDaemon struct{}

var _ transport.Transport = gitDaemon{}

func (gitDaemon) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	if auth != nil {
		// The git protocol has no authentication.
		return nil, transport.ErrInvalidAuthMethod
	}
	return &gitSession{ep: ep, service: transport.UploadPackServiceName}, nil
}

func (gitDaemon) NewReceivePackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.ReceivePackSession, error) {
	if auth != nil {
		return nil, transport.ErrInvalidAuthMethod
	}
	return &gitSession{ep: ep, service: transport.ReceivePackServiceName}, nil
}

// gitSession is one upload-pack or receive-pack exchange over one
// connection. go-git calls it from one goroutine at a time.
type gitSession struct {
	ep      *transport.Endpoint
	service string // git-upload-pack or git-receive-pack

	conn net.Conn      // nil until the first request
	r    *bufio.Reader // reads conn
	// unbind stops watching the context that bounds the I/O now.
	unbind func() bool
	// ended holds why that context ended, once it has.
	ended   atomic.Pointer[error]
	adv     *packp.AdvRefs
	packRun bool // the upload-pack request went out: the server ends the exchange
	closed  bool
}

var errSessionClosed = errors.New("git protocol session closed")

// addr is the server's host:port.
func (s *gitSession) addr() string {
	port := s.ep.Port
	if port <= 0 {
		port = gitDefaultPort
	}
	return net.JoinHostPort(s.ep.Host, strconv.Itoa(port))
}

// bind makes ctx bound the session's I/O: its deadline becomes the
// connection's, and its end cuts a read or write in progress. The first
// bind dials, within ctx, and sends the request for the session's service.
func (s *gitSession) bind(ctx context.Context) error {
	if s.closed {
		return errSessionClosed
	}
	dial := s.conn == nil
	if dial {
		d := net.Dialer{Timeout: gitConnectTimeout}
		conn, err := d.DialContext(ctx, "tcp", s.addr())
		if err != nil {
			// The dialer's timer and the context's race at the deadline:
			// name the context's end as the cause either way.
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %w", context.Cause(ctx), err)
			}
			if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
				return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
			}
			return err
		}
		s.conn = conn
		s.r = bufio.NewReader(sessionReader{s})
	}
	if s.unbind != nil {
		s.unbind()
	}
	s.ended.Store(nil)
	deadline, _ := ctx.Deadline() // none: the zero time
	if err := s.conn.SetDeadline(deadline); err != nil {
		return err
	}
	conn := s.conn
	s.unbind = context.AfterFunc(ctx, func() {
		err := context.Cause(ctx)
		s.ended.Store(&err)
		_ = conn.SetDeadline(time.Unix(1, 0))
	})
	if !dial {
		return nil
	}
	host := s.ep.Host
	if s.ep.Port > 0 && s.ep.Port != gitDefaultPort {
		host = net.JoinHostPort(s.ep.Host, strconv.Itoa(s.ep.Port))
	}
	var b bytes.Buffer
	req := packp.GitProtoRequest{RequestCommand: s.service, Pathname: s.ep.Path, Host: host}
	if err := req.Encode(&b); err != nil {
		return err
	}
	return s.write(b.Bytes())
}

// ioErr names the end of the bound context as the cause of an I/O error
// it provoked.
func (s *gitSession) ioErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if cause := s.ended.Load(); cause != nil {
		return fmt.Errorf("%w: %w", *cause, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is the context's, and it can pass
		// before the context's own timer has recorded why.
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

func (s *gitSession) write(b []byte) error {
	_, err := s.conn.Write(b)
	return s.ioErr(err)
}

type sessionReader struct{ s *gitSession }

func (r sessionReader) Read(p []byte) (int, error) {
	n, err := r.s.conn.Read(p)
	return n, r.s.ioErr(err)
}

func (s *gitSession) AdvertisedReferences() (*packp.AdvRefs, error) {
	return s.AdvertisedReferencesContext(context.Background())
}

func (s *gitSession) AdvertisedReferencesContext(ctx context.Context) (*packp.AdvRefs, error) {
	if s.adv != nil {
		return s.adv, nil
	}
	if err := s.bind(ctx); err != nil {
		return nil, err
	}
	ar := packp.NewAdvRefs()
	push := s.service == transport.ReceivePackServiceName
	if err := ar.Decode(s.r); err != nil && !(push && errors.Is(err, packp.ErrEmptyAdvRefs)) {
		return nil, advRefsError(err)
	}
	if ar.IsEmpty() && !push {
		// An empty repository can be pushed to, not fetched from.
		return nil, transport.ErrEmptyRemoteRepository
	}
	transport.FilterUnsupportedCapabilities(ar.Capabilities)
	s.adv = ar
	return ar, nil
}

// advRefsError turns what a git daemon sends instead of its refs into
// go-git's errors.
func advRefsError(err error) error {
	var line *pktline.ErrorLine
	var data *packp.ErrUnexpectedData
	switch {
	case errors.Is(err, packp.ErrEmptyAdvRefs):
		return transport.ErrEmptyRemoteRepository
	case errors.Is(err, packp.ErrEmptyInput):
		// git daemon without --informative-errors hangs up on a
		// repository it does not serve.
		return fmt.Errorf("%w: the server closed the connection before sending its refs", io.ErrUnexpectedEOF)
	case errors.As(err, &line) && repoNotFound(line.Text):
		return fmt.Errorf("%w: %s", transport.ErrRepositoryNotFound, line.Text)
	case errors.As(err, &data) && repoNotFound(string(data.Data)):
		return fmt.Errorf("%w: %s", transport.ErrRepositoryNotFound, strings.TrimSpace(string(data.Data)))
	}
	return err
}

// repoNotFound reports whether a server's error line says that it has no
// such repository (git daemon with --informative-errors, and hosts that
// speak the git protocol).
func repoNotFound(s string) bool {
	s = strings.ToLower(s)
	for _, m := range []string{"not exported", "no such repository", "not found", "does not exist", "does not appear to be a git repository"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func (s *gitSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	if req.IsEmpty() {
		// Every commit wanted is here already.
		return nil, errors.Join(transport.ErrEmptyUploadPackRequest, s.Close())
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if _, err := s.AdvertisedReferencesContext(ctx); err != nil {
		return nil, err
	}
	if err := s.bind(ctx); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := req.UploadRequest.Encode(&b); err != nil {
		return nil, fmt.Errorf("encode upload-pack request: %w", err)
	}
	if err := req.UploadHaves.Encode(&b, true); err != nil {
		return nil, fmt.Errorf("encode haves: %w", err)
	}
	if err := pktline.NewEncoder(&b).EncodeString("done\n"); err != nil {
		return nil, err
	}
	s.packRun = true
	if err := s.write(b.Bytes()); err != nil {
		return nil, err
	}
	if _, err := s.r.Peek(1); errors.Is(err, io.EOF) {
		// The server has nothing to send.
		return nil, errors.Join(transport.ErrEmptyUploadPackRequest, s.Close())
	} else if err != nil {
		return nil, err
	}
	res := packp.NewUploadPackResponse(req)
	if err := res.Decode(readCloser{s.r, s}); err != nil {
		return nil, fmt.Errorf("decode upload-pack response: %w", err)
	}
	return res, nil
}

// ReceivePack sends the reference updates and their pack, and reads the
// server's report when one was asked for.
func (s *gitSession) ReceivePack(ctx context.Context, req *packp.ReferenceUpdateRequest) (*packp.ReportStatus, error) {
	if _, err := s.AdvertisedReferencesContext(ctx); err != nil {
		return nil, err
	}
	if err := s.bind(ctx); err != nil {
		return nil, err
	}
	s.packRun = true
	if err := req.Encode(sessionWriter{s}); err != nil {
		return nil, errors.Join(fmt.Errorf("encode receive-pack request: %w", err), s.Close())
	}
	if !req.Capabilities.Supports(capability.ReportStatus) {
		return nil, s.Close()
	}
	var r io.Reader = s.r
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, s.r)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, s.r)
	}
	report := packp.NewReportStatus()
	if err := report.Decode(r); err != nil {
		return nil, errors.Join(fmt.Errorf("decode receive-pack report: %w", err), s.Close())
	}
	return report, errors.Join(report.Error(), s.Close())
}

type sessionWriter struct{ s *gitSession }

func (w sessionWriter) Write(p []byte) (int, error) {
	n, err := w.s.conn.Write(p)
	return n, w.s.ioErr(err)
}

// readCloser closes the session when the response has been read.
type readCloser struct {
	io.Reader
	io.Closer
}

// Close ends the exchange. Before an upload-pack request, a flush tells the
// server that no request follows. It can be called more than once.
func (s *gitSession) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn == nil {
		return nil
	}
	if s.unbind != nil {
		s.unbind()
	}
	if !s.packRun {
		_, _ = s.conn.Write(pktline.FlushPkt)
	}
	return s.conn.Close()
}
