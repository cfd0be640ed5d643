package systemd

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// TestProtectedUnitNames checks that a unit that would replace the agent's
// own or one of systemd's core units is refused in validation, at the
// position of its name, with or without override: true, and that other
// names, override or not, load.
func TestProtectedUnitNames(t *testing.T) {
	tests := []struct {
		name string
		// why is the reason in the error; empty when the name loads.
		why string
	}{
		{"outpost.service", "one of the agent's own units"},
		{"outpost.socket", "one of the agent's own units"},
		{"outpost-images.timer", "one of the agent's own units"},
		{"outpost@web.service", "one of the agent's own units"},
		{"systemd-journald.service", "one of systemd's core units"},
		{"systemd-journald.socket", "one of systemd's core units"},
		{"systemd-networkd.service", "one of systemd's core units"},
		{"dbus.service", "the system bus"},
		{"dbus.socket", "the system bus"},
		{"dbus-broker.service", "the system bus"},
		{"default.target", "a boot target"},
		{"multi-user.target", "a boot target"},
		{"basic.target", "a boot target"},
		{"sysinit.target", "a boot target"},
		{"local-fs.target", "a boot target"},
		{"network-online.target", "a boot target"},
		{"sockets.target", "a boot target"},
		{"emergency.service", "the emergency mode"},
		{"rescue.target", "the rescue mode"},
		{"getty@tty1.service", "a console login unit"},
		{"getty@.service", "a console login unit"},
		{"serial-getty@ttyS0.service", "a console login unit"},
		{"ssh.service", "the SSH server"},
		{"sshd.service", "the SSH server"},
		{"ssh.socket", "the SSH server"},
		{"init.scope", "systemd's own scope"},
		{"system.slice", "systemd's system slice"},
		{"user@0.service", "systemd's per-user manager"},
		{"initrd-switch-root.service", "one of systemd's boot units"},
		{"poweroff.target", "a shutdown target"},
		// Names that only resemble them are the user's.
		{"web.service", ""},
		{"my-outpost.service", ""},
		{"outposts.service", ""},
		{"mysystemd-thing.service", ""},
		{"nginx.service", ""},
		{"web.target", ""},
		{"cron.service", ""},
	}
	for _, tt := range tests {
		for _, override := range []bool{false, true} {
			name := tt.name
			if override {
				name += "/override"
			}
			t.Run(name, func(t *testing.T) {
				manifest := "# a unit\nkind: unit\nname:   " + tt.name + "\ncontent: |\n  [Service]\n  ExecStart=/bin/true\n"
				if override {
					manifest += "override: true\n"
				}
				fsys := fstest.MapFS{"units/u.yaml": {Data: []byte(manifest)}}
				_, err := spec.Load(fsys, spec.Options{})
				if tt.why == "" {
					if err != nil {
						t.Fatalf("Load(unit %s) = %v, want no error", tt.name, err)
					}
					return
				}
				var es spec.Errors
				if !errors.As(err, &es) || !errors.Is(err, spec.ErrInvalid) {
					t.Fatalf("Load(unit %s) = %v, want validation errors", tt.name, err)
				}
				type got struct {
					Pos    spec.Pos
					Reason bool
				}
				want := []got{{spec.Pos{File: "units/u.yaml", Line: 3, Col: 9}, true}}
				var all []got
				for _, e := range es {
					all = append(all, got{e.Pos, strings.Contains(e.Msg, tt.why) && strings.Contains(e.Msg, "override: true")})
				}
				if diff := cmp.Diff(want, all); diff != "" {
					t.Errorf("Load(unit %s) errors (-want +got):\n%s\nerrors: %v", tt.name, diff, err)
				}
			})
		}
	}
}

// TestUnitOverride checks that override: true is read, and is false unless
// set.
func TestUnitOverride(t *testing.T) {
	for _, tt := range []struct {
		field string
		want  bool
	}{{"", false}, {"override: true\n", true}, {"override: false\n", false}} {
		manifest := "kind: unit\nname: nginx.service\ncontent: x\n" + tt.field
		repo, err := spec.Load(fstest.MapFS{"a.yaml": {Data: []byte(manifest)}}, spec.Options{})
		if err != nil {
			t.Fatalf("spec.Load(%q) = %v", manifest, err)
		}
		st, err := repo.Render(spec.Host{Name: "h"})
		if err != nil {
			t.Fatalf("Render() = %v", err)
		}
		if got := Of(st.Resources[0]).Override; got != tt.want {
			t.Errorf("spec.Load(%q): Override = %v, want %v", manifest, got, tt.want)
		}
	}
}
