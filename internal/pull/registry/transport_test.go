package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func response(code int, retryAfter string) *http.Response {
	h := http.Header{}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return &http.Response{StatusCode: code, Header: h}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	for attempt := range 8 {
		want := min(lo<<attempt, hi)
		for range 50 {
			if got := backoff(lo, hi, attempt, nil); got < want/2 || got > want {
				t.Fatalf("backoff(attempt %d) = %v, want within [%v, %v]", attempt, got, want/2, want)
			}
		}
	}
	tests := []struct {
		resp *http.Response
		want time.Duration
	}{
		{response(429, "1"), time.Second},
		{response(503, "0"), 0},
		{response(429, "60"), hi}, // capped; checkRetry refuses such a wait anyway
	}
	for _, tt := range tests {
		if got := backoff(lo, hi, 3, tt.resp); got != tt.want {
			t.Errorf("backoff(%d Retry-After %s) = %v, want %v", tt.resp.StatusCode, tt.resp.Header.Get("Retry-After"), got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		header string
		ok     bool
	}{
		{"3", true},
		{"-1", false},
		{"soon", false},
		{"", false},
		{time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), true},
	}
	for _, tt := range tests {
		d, ok := retryAfter(response(429, tt.header))
		if ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want ok %v", tt.header, d, ok, tt.ok)
		}
	}
	if d, _ := retryAfter(response(429, "3")); d != 3*time.Second {
		t.Errorf("retryAfter(3) = %v, want 3s", d)
	}
}

func TestCheckRetry(t *testing.T) {
	check := checkRetry(30 * time.Second)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		resp *http.Response
		err  error
		want bool
	}{
		{"200", context.Background(), response(200, ""), nil, false},
		{"404", context.Background(), response(404, ""), nil, false},
		{"401", context.Background(), response(401, ""), nil, false},
		{"500", context.Background(), response(500, ""), nil, true},
		{"502", context.Background(), response(502, ""), nil, true},
		{"501", context.Background(), response(501, ""), nil, false},
		{"429 without Retry-After", context.Background(), response(429, ""), nil, true},
		{"429 short Retry-After", context.Background(), response(429, "5"), nil, true},
		{"429 long Retry-After", context.Background(), response(429, "600"), nil, false},
		{"503 long Retry-After", context.Background(), response(503, "600"), nil, false},
		{"connection refused", context.Background(), nil, errors.New("dial tcp: connection refused"), true},
		{"TLS to plain HTTP", context.Background(), nil, fmt.Errorf("get: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), false},
		{"HTTPS to plain HTTP", context.Background(), nil, fmt.Errorf("get: %w", http.ErrSchemeMismatch), false},
		{"plain HTTP refused", context.Background(), nil, fmt.Errorf("x: %w", ErrPlainHTTP), false},
		{"cancelled", cancelled, response(500, ""), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := check(tt.ctx, tt.resp, tt.err); got != tt.want {
				t.Errorf("checkRetry(%s) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// TestTransportRetries drives the transport against a real HTTP server that
// fails a given number of times, and counts what reached it.
func TestTransportRetries(t *testing.T) {
	tests := []struct {
		name      string
		failures  int
		status    int
		want      int // status the caller sees
		wantCalls int
	}{
		{"500 then success", 2, 500, 200, 3},
		{"500 throughout", 100, 500, 500, 4},
		{"404 is not retried", 100, 404, 404, 1},
		{"429 then success", 1, 429, 200, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if int(calls.Add(1)) <= tt.failures {
					w.Header().Set("Retry-After", "0")
					http.Error(w, "no", tt.status)
					return
				}
				io.WriteString(w, "ok")
			}))
			t.Cleanup(srv.Close)
			th := &throttle{until: map[string]time.Time{}, now: time.Now}
			rt := newTransport(http.DefaultTransport, Retry{Max: 3, WaitMin: time.Millisecond, WaitMax: 10 * time.Millisecond}, th, discard())
			req, _ := http.NewRequest("GET", srv.URL+"/v2/", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip = %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want || int(calls.Load()) != tt.wantCalls {
				t.Errorf("RoundTrip = %d after %d requests, want %d after %d", resp.StatusCode, calls.Load(), tt.want, tt.wantCalls)
			}
		})
	}
}

func TestTransportThrottle(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "600")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	th := &throttle{until: map[string]time.Time{}, now: func() time.Time { return now }}
	rt := newTransport(http.DefaultTransport, Retry{Max: 3, WaitMin: time.Millisecond}, th, discard())
	req, _ := http.NewRequest("GET", srv.URL+"/v2/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	host := req.URL.Host
	if got, want := th.retryAt(host), now.Add(10*time.Minute); !got.Equal(want) {
		t.Errorf("retryAt(%s) = %v, want %v", host, got, want)
	}
	now = now.Add(11 * time.Minute)
	if got := th.retryAt(host); !got.IsZero() {
		t.Errorf("retryAt(%s) after the pause = %v, want zero", host, got)
	}
}

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	var reached []string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		reached = append(reached, r.URL.String())
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	th := &throttle{until: map[string]time.Time{}, now: time.Now}
	rt := newTransport(base, Retry{}, th, discard())
	tests := []struct {
		url     string
		refused bool
	}{
		{"http://127.0.0.1:5000/v2/", false},
		{"http://[::1]:5000/v2/", false},
		{"http://localhost:5000/v2/", false},
		{"http://10.1.2.3:5000/v2/", true},
		{"http://registry.example.com/v2/", true},
		{"https://registry.example.com/v2/", false},
	}
	var want []string
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", tt.url, nil)
		resp, err := rt.RoundTrip(req)
		if tt.refused {
			if !errors.Is(err, ErrPlainHTTP) {
				t.Errorf("RoundTrip(%s) = %v, want %v", tt.url, err, ErrPlainHTTP)
			}
			continue
		}
		want = append(want, tt.url)
		if err != nil {
			t.Errorf("RoundTrip(%s) = %v", tt.url, err)
			continue
		}
		resp.Body.Close()
	}
	if diff := cmp.Diff(want, reached); diff != "" {
		t.Errorf("requests that reached the network (-want +got):\n%s", diff)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
