package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestRead(t *testing.T) {
	stamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261203051000-0123456789ab+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-03T05:10:00Z"}}}, true
	}
	devel := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true
	}
	tests := []struct {
		name     string
		ver, rev string
		bi       func() (*debug.BuildInfo, bool)
		want     Info
		str      string
	}{
		{"ldflags win", "v1.2.0", "", stamped,
			Info{"v1.2.0", "0123456789abcdef0123+dirty", "go1.26.8", "2026-12-03T05:10:00Z"}, "abacus v1.2.0 (commit 0123456789ab+dirty, go1.26.8)"},
		{"toolchain stamp", "", "", stamped,
			Info{"v0.0.0-20261203051000-0123456789ab+dirty", "0123456789abcdef0123+dirty", "go1.26.8", "2026-12-03T05:10:00Z"}, ""},
		{"go run", "", "", devel, Info{"devel", "unknown", "go1.26.8", ""}, "abacus devel (commit unknown, go1.26.8)"},
		{"ldflags revision", "v1.2.0", "abc123", devel, Info{"v1.2.0", "abc123", "go1.26.8", ""}, "abacus v1.2.0 (commit abc123, go1.26.8)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := read(tt.ver, tt.rev, tt.bi)
			if got != tt.want {
				t.Errorf("read = %+v, want %+v", got, tt.want)
			}
			if tt.str != "" && got.String() != tt.str {
				t.Errorf("String = %q, want %q", got.String(), tt.str)
			}
		})
	}
}
