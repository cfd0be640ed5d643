package gitserver

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NginxServer is Debian's nginx with fcgiwrap in front of git
// http-backend: the usual way to serve smart HTTP, and the one whose CPU a
// benchmark can read. /NAME.git passes the Git-Protocol header on (protocol
// v2); /v0/NAME.git drops it, as a front end that does not know it would.
type NginxServer struct {
	// Addr is 127.0.0.1:PORT.
	Addr string

	nginx, fcgi   *exec.Cmd
	nginxExited   chan struct{}
	fcgiExited    chan struct{}
	once          sync.Once
	fcgiStderr    *bytes.Buffer
	nginxStderr   *bytes.Buffer // read only after nginx exited
	nginxErrorLog string
}

// NginxOptions size the server for a load; the zero value is a test's.
type NginxOptions struct {
	// Connections is nginx's worker_connections: clients keep their
	// connections alive between polls, so a fleet needs about one per
	// host (and nginx one more per FastCGI request). 0 means 512.
	Connections int
	// Children is how many fcgiwrap processes serve requests, each one
	// at a time. 0 means 1, as Debian's socket-activated fcgiwrap runs.
	Children int
	// KeepAlive is how long nginx keeps an idle client connection open;
	// 0 means nginx's default, 75 s.
	KeepAlive time.Duration
}

// ServeNginx starts fcgiwrap and nginx (as root, in a directory of the
// test) for every repository of r. Both binaries must be installed
// (Debian's nginx and fcgiwrap; test/run installs them).
func (r *Root) ServeNginx() *NginxServer { return r.ServeNginxWith(NginxOptions{}) }

// ServeNginxWith is ServeNginx sized by o.
func (r *Root) ServeNginxWith(o NginxOptions) *NginxServer {
	r.t.Helper()
	nginx := mustLookPath(r.t, "nginx")
	fcgiwrap := mustLookPath(r.t, "fcgiwrap")
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		r.t.Fatalf("gitserver: %v", err)
	}
	dir := r.t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			r.t.Fatalf("gitserver: %v", err)
		}
	}
	sock := filepath.Join(dir, "fcgiwrap.sock")
	s := &NginxServer{fcgiStderr: &bytes.Buffer{}, fcgiExited: make(chan struct{}), nginxExited: make(chan struct{}),
		nginxErrorLog: filepath.Join(dir, "logs", "error.log")}
	// fcgiwrap reaps every http-backend it runs, so their CPU shows in
	// its processes' /proc stat, all of one process group.
	s.fcgi = exec.Command(fcgiwrap, "-c", strconv.Itoa(max(o.Children, 1)), "-s", "unix:"+sock)
	s.fcgi.Env = gitEnv(filepath.Dir(r.Dir))
	s.fcgi.Stderr = s.fcgiStderr
	ownGroup(s.fcgi)
	if err := s.fcgi.Start(); err != nil {
		r.t.Fatalf("gitserver: start fcgiwrap: %v", err)
	}
	go func() { _ = s.fcgi.Wait(); close(s.fcgiExited) }()
	r.t.Cleanup(s.Close)
	if err := waitFile(sock, s.fcgiExited); err != nil {
		stopProcess(s.fcgi, s.fcgiExited)
		r.t.Fatalf("gitserver: fcgiwrap: %v: %s", err, s.fcgiStderr.String())
	}

	var lastErr error
	for range 5 {
		port := freePort(r.t)
		s.Addr = "127.0.0.1:" + strconv.Itoa(port)
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConf(dir, s.Addr, sock, backend, r.Dir, cmp.Or(o.Connections, 512), int(cmp.Or(o.KeepAlive, 75*time.Second).Seconds()))), 0o644); err != nil {
			r.t.Fatalf("gitserver: %v", err)
		}
		s.nginxExited = make(chan struct{})
		s.nginx = exec.Command(nginx, "-c", conf, "-p", dir)
		s.nginxStderr = &bytes.Buffer{}
		s.nginx.Stderr = s.nginxStderr
		ownGroup(s.nginx)
		if err := s.nginx.Start(); err != nil {
			r.t.Fatalf("gitserver: start nginx: %v", err)
		}
		exited := s.nginxExited
		go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(s.nginx)
		if err := waitListening(s.Addr, exited); err != nil {
			stopProcess(s.nginx, exited)
			b, _ := os.ReadFile(s.nginxErrorLog)
			lastErr = fmt.Errorf("%w: %s%s", err, s.nginxStderr.String(), b)
			continue
		}
		return s
	}
	r.t.Fatalf("gitserver: nginx: %v", lastErr)
	return nil
}

// nginxConf is the configuration of one test server. The fastcgi lines
// are those an operator writes (docs/scale.md).
func nginxConf(dir, addr, sock, backend, root string, conns, keepAlive int) string {
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
user root;
worker_rlimit_nofile %[6]d;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections %[6]d; }
http {
  access_log off;
  keepalive_timeout %[7]ds;
  client_body_temp_path %[1]s/tmp/body;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  proxy_temp_path %[1]s/tmp/proxy;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  server {
    listen %[2]s;
    # Regular expressions are tried in order: /v0/ first.
    location ~ ^/v0(/.*\.git/(info/refs|git-upload-pack))$ {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:%[3]s;
      fastcgi_param SCRIPT_FILENAME %[4]s;
      fastcgi_param GIT_PROJECT_ROOT %[5]s;
      fastcgi_param PATH_INFO $1;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_pass_request_headers off;
    }
    location ~ ^/.*\.git/(info/refs|git-upload-pack|git-receive-pack)$ {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:%[3]s;
      fastcgi_param SCRIPT_FILENAME %[4]s;
      fastcgi_param GIT_PROJECT_ROOT %[5]s;
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER outpost-test;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param HTTP_GIT_PROTOCOL $http_git_protocol;
    }
  }
}
`, dir, addr, sock, backend, root, conns, keepAlive)
}

// URL returns the repository's URL, which speaks protocol v2.
func (s *NginxServer) URL(name string) string { return "http://" + s.Addr + "/" + name + ".git" }

// URLv0 returns the repository's URL behind a location that drops the
// Git-Protocol header: protocol v0 only.
func (s *NginxServer) URLv0(name string) string {
	return "http://" + s.Addr + "/v0/" + name + ".git"
}

// CPU returns the user and system CPU time that nginx and fcgiwrap used,
// with every http-backend and upload-pack that fcgiwrap ran and reaped.
func (s *NginxServer) CPU() (time.Duration, error) {
	var total time.Duration
	for _, cmd := range []*exec.Cmd{s.nginx, s.fcgi} {
		d, err := groupCPU(cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// clockTick is Linux's USER_HZ, the unit of /proc's CPU times.
const clockTick = 10 * time.Millisecond

// groupCPU sums utime, stime, cutime and cstime of every process of the
// process group pgid.
func groupCPU(pgid int) (time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// The command name, field 2, is in parentheses and may hold
		// spaces: count fields after its closing one.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// f[0] is field 3 (state); pgrp is field 5, utime..cstime 14..17.
		if len(f) < 15 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		for _, v := range f[11:15] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%s/stat: %w", e.Name(), err)
			}
			ticks += n
		}
	}
	return time.Duration(ticks) * clockTick, nil
}

// waitFile waits until path exists, or the process exits, or ten seconds
// pass.
func waitFile(path string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear", path)
		}
		select {
		case <-exited:
			return fmt.Errorf("the server exited before it made %s", path)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops nginx and fcgiwrap; it is safe to call more than once.
func (s *NginxServer) Close() {
	s.once.Do(func() {
		if s.nginx != nil {
			stopProcess(s.nginx, s.nginxExited)
		}
		stopProcess(s.fcgi, s.fcgiExited)
	})
}
