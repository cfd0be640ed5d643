package vm

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-gitops/outpost/test/e2e/gitserver"
	"github.com/outpost-gitops/outpost/test/e2e/host"
)

// TestVagrantProvision runs test/vagrant/provision.sh in a VM the way the
// Vagrantfile's Debian machine does: the .deb downloaded from the host,
// then the script with the repository's URL on the git protocol, the
// branch and the machine's labels. The agent must converge and push its
// note.
func TestVagrantProvision(t *testing.T) {
	t.Parallel()
	dist := builtDeb(t)
	mod, err := host.ModuleRoot()
	mustf(t, err, "module root")
	root := gitserver.NewRoot(t)
	repo := root.Create("env")
	repo.Commit(envFiles, "first desired state")
	d := root.ServeGit()
	debPort, scriptPort, gitPort := guestPort(t), guestPort(t), guestPort(t)
	v := boot(t, Options{
		UserData: []byte("#cloud-config\n"),
		MetaData: []byte("instance-id: outpost-vm-vagrant\nlocal-hostname: debian12\n"),
		Forwards: []Forward{
			{GuestPort: debPort, Target: serveDir(t, dist)},
			{GuestPort: scriptPort, Target: serveDir(t, filepath.Join(mod, "test/vagrant"))},
			{GuestPort: gitPort, Target: d.Addr},
		},
	})
	start := time.Now()
	guest(t, v, fmt.Sprintf(`set -e
mkdir -p /outpost-dist
curl -fsS -o /outpost-dist/outpost_%[1]s_linux_amd64.deb http://%[2]s:%[3]d/outpost_%[1]s_linux_amd64.deb
curl -fsS -o /tmp/provision.sh http://%[2]s:%[4]d/provision.sh
sh /tmp/provision.sh /outpost-dist git://%[2]s:%[5]d/env.git main role=web,os=debian`,
		debVersion, HostAddr, debPort, scriptPort, gitPort))
	waitFor(t, 3*time.Minute, "the desired state and the note", func() bool {
		return hasContent(v, managedPath, managedContent) && noteRef(t, root.Path("env"), "debian12") != ""
	})
	t.Logf("provision to note pushed: %v", time.Since(start).Round(time.Millisecond))
	cfg := guest(t, v, "cat /etc/outpost/agent.yaml")
	for _, want := range []string{"role: \"web\"", "os: \"debian\""} {
		if !strings.Contains(cfg, want) {
			t.Errorf("agent.yaml lacks %s:\n%s", want, cfg)
		}
	}
	revertsDrift(t, v)
}
