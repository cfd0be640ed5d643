package vm

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// reachesOnlyForwards checks the guest's network: the server at target on
// the host's loopback answers through its forward at HostAddr:fwd, and
// neither it nor anything else answers at qemu's gateway, 10.0.2.2, the
// address that an unrestricted user-mode network would route to the host
// and beyond.
func reachesOnlyForwards(t *testing.T, v *VM, fwd int, target string) {
	t.Helper()
	guest(t, v, fmt.Sprintf("curl -fsS -m 20 -o /dev/null http://%s:%d/", HostAddr, fwd))
	for _, url := range []string{
		fmt.Sprintf("http://10.0.2.2:%d/", port(t, target)),
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
