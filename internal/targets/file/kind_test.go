package file

import (
	"io/fs"
	"testing"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    fs.FileMode
		wantErr bool
	}{
		{in: "0644", want: 0o644},
		{in: "640", want: 0o640},
		{in: "0000", want: 0},
		{in: "4755", want: fs.ModeSetuid | 0o755},
		{in: "2750", want: fs.ModeSetgid | 0o750},
		{in: "1777", want: fs.ModeSticky | 0o777},
		{in: "0888", wantErr: true},
		{in: "64", wantErr: true},
		{in: "10644", wantErr: true},
		{in: "rw-r--r--", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseMode(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want && !tt.wantErr {
				t.Errorf("parseMode(%q) = %v, %v, want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
