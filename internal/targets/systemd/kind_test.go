package systemd

import (
	"testing"
)

func TestCheckUnitName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"web.service", true},
		{"web-backup.timer", true},
		{"worker@.service", true},
		{"worker@1.service", true},
		{"srv-data.mount", true},
		{"dev-sda.device", true},
		{`system-getty\x2d.slice`, true},
		{"a.socket", true},
		{"web", false},
		{"web.conf", false},
		{".service", false},
		{"@.service", false},
		{"../web.service", false},
		{"sub/web.service", false},
		{"we b.service", false},
		{"a@b@c.service", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if err := checkUnitName(tt.in); (err == nil) != tt.ok {
				t.Errorf("checkUnitName(%q) = %v, want ok %v", tt.in, err, tt.ok)
			}
		})
	}
}
