package window_test

import (
	"errors"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/window"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func mustTimeNano(t testing.TB, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestResolution_Start(t *testing.T) {
	tests := []struct {
		name string
		size time.Duration
		ts   string
		want string
	}{
		{"minute", time.Minute, "2026-11-23T10:17:42Z", "2026-11-23T10:17:00Z"},
		{"minute boundary", time.Minute, "2026-11-23T10:17:00Z", "2026-11-23T10:17:00Z"},
		{"hour", time.Hour, "2026-11-23T10:17:42Z", "2026-11-23T10:00:00Z"},
		{"day is a UTC day", 24 * time.Hour, "2026-11-23T23:59:59+05:00", "2026-11-23T00:00:00Z"},
		{"day after offset", 24 * time.Hour, "2026-11-24T01:00:00+05:00", "2026-11-23T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := window.Resolution{Size: tt.size, Retention: 24 * time.Hour}
			got := time.Unix(r.Start(mustTime(t, tt.ts)), 0).UTC()
			if !got.Equal(mustTime(t, tt.want)) {
				t.Fatalf("Start(%s) = %s, want %s", tt.ts, got.Format(time.RFC3339), tt.want)
			}
		})
	}
}

func TestConfig_AppendWindows_EventTime(t *testing.T) {
	cfg := window.DefaultConfig()
	now := mustTime(t, "2026-11-23T12:00:00Z")
	tests := []struct {
		name string
		ts   string
		want []window.Window
	}{
		{"now lands in all three", "2026-11-23T11:59:30Z", []window.Window{
			{Res: 60, Start: mustTime(t, "2026-11-23T11:59:00Z").Unix()},
			{Res: 3600, Start: mustTime(t, "2026-11-23T11:00:00Z").Unix()},
			{Res: 86400, Start: mustTime(t, "2026-11-23T00:00:00Z").Unix()},
		}},
		{"3 days ago skips minutes", "2026-11-20T08:30:00Z", []window.Window{
			{Res: 3600, Start: mustTime(t, "2026-11-20T08:00:00Z").Unix()},
			{Res: 86400, Start: mustTime(t, "2026-11-20T00:00:00Z").Unix()},
		}},
		{"last retained minute", "2026-11-21T12:00:00Z", []window.Window{
			{Res: 60, Start: mustTime(t, "2026-11-21T12:00:00Z").Unix()},
			{Res: 3600, Start: mustTime(t, "2026-11-21T12:00:00Z").Unix()},
			{Res: 86400, Start: mustTime(t, "2026-11-21T00:00:00Z").Unix()},
		}},
		{"first expired minute", "2026-11-21T11:59:59Z", []window.Window{
			{Res: 3600, Start: mustTime(t, "2026-11-21T11:00:00Z").Unix()},
			{Res: 86400, Start: mustTime(t, "2026-11-21T00:00:00Z").Unix()},
		}},
		{"a year ago: days only", "2025-11-23T12:00:00Z", []window.Window{
			{Res: 86400, Start: mustTime(t, "2025-11-23T00:00:00Z").Unix()},
		}},
		{"ten years ago: none", "2016-11-23T12:00:00Z", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cfg.AppendWindows(nil, mustTime(t, tt.ts), now)
			if len(got) != len(tt.want) {
				t.Fatalf("windows = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("windows = %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}

func TestCheckEventTime(t *testing.T) {
	now := mustTime(t, "2026-11-23T12:00:00Z")
	if err := window.CheckEventTime(now.Add(window.MaxFuture), now); err != nil {
		t.Fatalf("exactly MaxFuture ahead refused: %v", err)
	}
	if err := window.CheckEventTime(now.Add(window.MaxFuture+time.Second), now); !errors.Is(err, window.ErrFuture) {
		t.Fatalf("err = %v, want ErrFuture", err)
	}
}

func TestResolution_Cutoff(t *testing.T) {
	r := window.Resolution{Size: time.Minute, Retention: 48 * time.Hour}
	now := mustTime(t, "2026-11-23T12:00:30Z")
	c := r.Cutoff(now)
	if !r.Retained(c, now) || r.Retained(c-60, now) {
		t.Fatalf("cutoff %d: retained=%v, before retained=%v", c, r.Retained(c, now), r.Retained(c-60, now))
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := window.ParseConfig("1m:48h,1h:90d,1d:1825d")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.String(), window.DefaultConfig().String(); got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	for _, bad := range []string{
		"", "1m", "1m:48h,30s:1h", "1m:48h,90s:48h", "1m:48h,1h:1h", "500ms:1h", "1m:30s", "x:1h", "1m:1h,1h:2h,", "-1m:1h",
	} {
		if _, err := window.ParseConfig(bad); !errors.Is(err, window.ErrInvalidConfig) {
			t.Errorf("ParseConfig(%q) = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1m", time.Minute, true},
		{"90s", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"7d", 7 * 24 * time.Hour, true},
		{"1825d", 1825 * 24 * time.Hour, true},
		{"0s", 0, true},
		{"", 0, false},
		{"d", 0, false},
		{"-1m", 0, false},
		{"1.5d", 0, false},
		{"99999999999d", 0, false},
		{"abc", 0, false},
	}
	for _, tt := range tests {
		got, err := window.ParseDuration(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z", true},
		{"2026-11-23T11:00:00+01:00", "2026-11-23T10:00:00Z", true},
		{"2026-11-23T10:00:00.5Z", "2026-11-23T10:00:00.5Z", true},
		{"1795428000", "2026-11-23T10:00:00Z", true},
		{"1795428000.25", "2026-11-23T10:00:00.25Z", true},
		{"0", "1970-01-01T00:00:00Z", true},
		{"", "", false},
		{"yesterday", "", false},
		{"-5", "", false},
		{"1795428000.", "2026-11-23T10:00:00Z", true},
		{"1795428000.x", "", false},
		{"1795428000.123456789", "2026-11-23T10:00:00.123456789Z", true},
		{"1795428000.000000001", "2026-11-23T10:00:00.000000001Z", true},
		{"1795428000.0000000001", "", false},
		{"1795428000.5x", "", false},
		{"1795428000.+5", "", false},
		{"1795428000.5.5", "", false},
		{"1e9", "", false},
		{"99999999999999999999", "", false},
		{"2026-13-01T00:00:00Z", "", false},
		{"1969-12-31T23:59:59Z", "", false},
	}
	for _, tt := range tests {
		got, err := window.ParseTime(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseTime(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if !tt.ok {
			if !errors.Is(err, window.ErrBadTime) {
				t.Errorf("ParseTime(%q) err = %v, want ErrBadTime", tt.in, err)
			}
			continue
		}
		want := mustTimeNano(t, tt.want)
		if !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, want %v", tt.in, got, want)
		}
	}
}
