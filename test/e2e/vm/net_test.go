package vm

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestGuestReachesOnlyForwards checks the guest's network: a server on the
// host's loopback answers through its forward at HostAddr, and neither it
// nor anything else answers at qemu's gateway, 10.0.2.2, the address that
// an unrestricted user-mode network would route to the host and beyond.
func TestGuestReachesOnlyForwards(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "reached")
	}))
	t.Cleanup(srv.Close)
	fwd := guestPort(t)
	v := boot(t, Options{
		UserData: []byte("#cloud-config\n"),
		Forwards: []Forward{{GuestPort: fwd, Target: strings.TrimPrefix(srv.URL, "http://")}},
	})
	if got := guest(t, v, fmt.Sprintf("curl -fsS -m 20 http://%s:%d/", HostAddr, fwd)); got != "reached" {
		t.Fatalf("through the forward: got %q, want %q", got, "reached")
	}
	for _, url := range []string{
		fmt.Sprintf("http://10.0.2.2:%d/", port(t, strings.TrimPrefix(srv.URL, "http://"))),
		fmt.Sprintf("http://10.0.2.2:%d/", fwd),
		"http://deb.debian.org/debian/",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, code, err := v.Run(ctx, "curl -fsS -m 10 -o /dev/null "+url)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if code == 0 {
			t.Errorf("the guest reached %s; want it unreachable\n%s", url, out)
		}
	}
}
