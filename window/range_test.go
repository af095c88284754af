package window_test

import (
	"errors"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/window"
)

func TestConfig_Plan(t *testing.T) {
	cfg := window.DefaultConfig()
	now := mustTime(t, "2026-11-23T12:00:30Z")
	tests := []struct {
		name    string
		q       window.Query
		res     time.Duration
		from    string
		to      string
		step    time.Duration
		points  int
		partial bool
	}{
		{
			name: "defaults: last hour by minute, last point holds now",
			q:    window.Query{},
			res:  time.Minute, from: "2026-11-23T11:00:00Z", to: "2026-11-23T12:01:00Z", step: time.Minute, points: 61,
		},
		{
			name: "aligned to step since epoch",
			q:    window.Query{From: mustTime(t, "2026-11-23T10:07:00Z"), To: mustTime(t, "2026-11-23T10:53:00Z"), Step: 15 * time.Minute},
			res:  time.Minute, from: "2026-11-23T10:00:00Z", to: "2026-11-23T11:00:00Z", step: 15 * time.Minute, points: 4,
		},
		{
			name: "exact bounds need no extra point",
			q:    window.Query{From: mustTime(t, "2026-11-23T10:00:00Z"), To: mustTime(t, "2026-11-23T11:00:00Z"), Step: 5 * time.Minute},
			res:  time.Minute, from: "2026-11-23T10:00:00Z", to: "2026-11-23T11:00:00Z", step: 5 * time.Minute, points: 12,
		},
		{
			name: "hour step reads hour windows",
			q:    window.Query{From: mustTime(t, "2026-11-23T06:00:00Z"), To: mustTime(t, "2026-11-23T12:00:00Z"), Step: time.Hour},
			res:  time.Hour, from: "2026-11-23T06:00:00Z", to: "2026-11-23T12:00:00Z", step: time.Hour, points: 6,
		},
		{
			name: "90m step is a multiple of minutes only",
			q:    window.Query{From: mustTime(t, "2026-11-23T00:00:00Z"), To: mustTime(t, "2026-11-23T12:00:00Z"), Step: 90 * time.Minute},
			res:  time.Minute, from: "2026-11-23T00:00:00Z", to: "2026-11-23T12:00:00Z", step: 90 * time.Minute, points: 8,
		},
		{
			name: "default step at a 10-day-old from is an hour",
			q:    window.Query{From: mustTime(t, "2026-11-13T12:00:00Z"), To: mustTime(t, "2026-11-14T12:00:00Z")},
			res:  time.Hour, from: "2026-11-13T12:00:00Z", to: "2026-11-14T12:00:00Z", step: time.Hour, points: 24,
		},
		{
			name: "minute step beyond minute retention is partial",
			q:    window.Query{From: mustTime(t, "2026-11-20T12:00:00Z"), To: mustTime(t, "2026-11-20T13:00:00Z"), Step: time.Minute},
			res:  time.Minute, from: "2026-11-20T12:00:00Z", to: "2026-11-20T13:00:00Z", step: time.Minute, points: 60, partial: true,
		},
		{
			name: "beyond all retention: coarsest, partial",
			q:    window.Query{From: mustTime(t, "2016-01-01T00:00:00Z"), To: mustTime(t, "2016-01-08T00:00:00Z")},
			res:  24 * time.Hour, from: "2016-01-01T00:00:00Z", to: "2016-01-08T00:00:00Z", step: 24 * time.Hour, points: 7, partial: true,
		},
		{
			name: "48h at minute step is 2880 points",
			q:    window.Query{From: mustTime(t, "2026-11-21T12:01:00Z"), To: mustTime(t, "2026-11-23T12:01:00Z"), Step: time.Minute},
			res:  time.Minute, from: "2026-11-21T12:01:00Z", to: "2026-11-23T12:01:00Z", step: time.Minute, points: 2880,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := cfg.Plan(tt.q, now)
			if err != nil {
				t.Fatal(err)
			}
			if p.Resolution.Size != tt.res || p.Step != tt.step || p.Points != tt.points || p.Partial != tt.partial {
				t.Fatalf("plan = res %v step %v points %d partial %v; want res %v step %v points %d partial %v",
					p.Resolution.Size, p.Step, p.Points, p.Partial, tt.res, tt.step, tt.points, tt.partial)
			}
			if !p.From.Equal(mustTime(t, tt.from)) || !p.To.Equal(mustTime(t, tt.to)) {
				t.Fatalf("plan [%s, %s), want [%s, %s)", p.From.Format(time.RFC3339), p.To.Format(time.RFC3339), tt.from, tt.to)
			}
		})
	}
}

func TestConfig_Plan_Errors(t *testing.T) {
	cfg := window.DefaultConfig()
	now := mustTime(t, "2026-11-23T12:00:00Z")
	tests := []struct {
		name string
		q    window.Query
		want error
	}{
		{"from after to", window.Query{From: now, To: now.Add(-time.Hour)}, window.ErrEmptyRange},
		{"from equals to", window.Query{From: now, To: now}, window.ErrEmptyRange},
		{"negative step", window.Query{Step: -time.Minute}, window.ErrBadStep},
		{"step not a multiple", window.Query{Step: 90 * time.Second}, window.ErrStepNotMultiple},
		{"step below finest", window.Query{Step: 30 * time.Second}, window.ErrStepNotMultiple},
		{"11001 points", window.Query{From: now.Add(-11001 * time.Minute), To: now, Step: time.Minute}, window.ErrTooManyPoints},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := cfg.Plan(tt.q, now); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if p, err := cfg.Plan(window.Query{From: now.Add(-11000 * time.Minute), To: now, Step: time.Minute}, now); err != nil || p.Points != window.MaxPoints {
		t.Fatalf("exactly %d points: %v, %v", window.MaxPoints, p.Points, err)
	}
}

// TestPlan_CoversRange checks, for arbitrary queries, that the points tile
// [From, To) exactly, cover the asked range, and that every window of the
// chosen resolution inside the range maps to the point containing it.
func TestPlan_CoversRange(t *testing.T) {
	cfg := window.DefaultConfig()
	now := time.Unix(1795428000, 0)
	rapid.Check(t, func(t *rapid.T) {
		to := now.Add(-time.Duration(rapid.Int64Range(0, 100*24*3600).Draw(t, "toAgo")) * time.Second)
		from := to.Add(-time.Duration(rapid.Int64Range(1, 7*24*3600).Draw(t, "span")) * time.Second)
		step := time.Duration(rapid.SampledFrom([]int64{0, 60, 120, 300, 3600, 7200, 86400}).Draw(t, "step")) * time.Second
		p, err := cfg.Plan(window.Query{From: from, To: to, Step: step}, now)
		if errors.Is(err, window.ErrTooManyPoints) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.From.After(from) || p.To.Before(to) {
			t.Fatalf("plan [%v,%v) does not cover [%v,%v)", p.From, p.To, from, to)
		}
		if p.To.Sub(p.From) != time.Duration(p.Points)*p.Step || p.From.Unix()%int64(p.Step/time.Second) != 0 {
			t.Fatalf("points do not tile: %+v", p)
		}
		if p.Step%p.Resolution.Size != 0 {
			t.Fatalf("step %v is not a multiple of resolution %v", p.Step, p.Resolution.Size)
		}
		w := p.Resolution.Start(from)
		i, ok := p.PointOf(w)
		if !ok || i != int((w-p.From.Unix())/int64(p.Step/time.Second)) {
			t.Fatalf("window %d maps to point %d (%v)", w, i, ok)
		}
		if _, ok := p.PointOf(p.To.Unix()); ok {
			t.Fatalf("window at To maps into the plan")
		}
	})
}
