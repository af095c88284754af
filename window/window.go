package window

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// MaxFuture is how far ahead of a node's clock an event time may be.
const MaxFuture = 5 * time.Minute

// MaxPoints is the most points one range query may return.
const MaxPoints = 11000

// Resolution is one granularity of windows and how long they are kept.
type Resolution struct {
	// Size is the window length: whole seconds, at least one.
	Size time.Duration
	// Retention is how long a window is kept after its end would fall out of
	// view: a window is retained while its end is later than now - Retention.
	Retention time.Duration
}

// Seconds is the window length in seconds, the resolution's identity on disk
// and on the wire.
func (r Resolution) Seconds() uint32 { return uint32(r.Size / time.Second) }

// String is "size:retention", for example "1m:48h".
func (r Resolution) String() string {
	return FormatDuration(r.Size) + ":" + FormatDuration(r.Retention)
}

// Start is the start, in Unix seconds, of the window containing ts.
func (r Resolution) Start(ts time.Time) int64 {
	size := int64(r.Size / time.Second)
	sec := ts.Unix()
	start := sec - sec%size
	if sec%size < 0 {
		start -= size
	}
	return start
}

// Retained reports whether the window starting at start (Unix seconds) is
// still kept at now.
func (r Resolution) Retained(start int64, now time.Time) bool {
	end := time.Unix(start, 0).Add(r.Size)
	return end.After(now.Add(-r.Retention))
}

// Cutoff is the start of the oldest window retained at now: every window
// starting before it has expired.
func (r Resolution) Cutoff(now time.Time) int64 {
	c := r.Start(now.Add(-r.Retention))
	if !r.Retained(c, now) {
		c += int64(r.Size / time.Second)
	}
	return c
}

// Config is the set of resolutions a cluster keeps. Every node of a cluster
// must use the same Config.
type Config struct {
	// Resolutions, finest first. Each size is a whole multiple of the one
	// before, and retention never shrinks as size grows.
	Resolutions []Resolution
}

// DefaultConfig keeps minutes for 48 hours, hours for 90 days and days for five
// years.
func DefaultConfig() Config {
	return Config{Resolutions: []Resolution{
		{Size: time.Minute, Retention: 48 * time.Hour},
		{Size: time.Hour, Retention: 90 * 24 * time.Hour},
		{Size: 24 * time.Hour, Retention: 5 * 365 * 24 * time.Hour},
	}}
}

// ParseConfig parses "size:retention,…", for example "1m:48h,1h:90d,1d:1825d".
func ParseConfig(s string) (Config, error) {
	var c Config
	for _, part := range strings.Split(s, ",") {
		size, ret, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return Config{}, fmt.Errorf("%w: %q: want size:retention", ErrInvalidConfig, part)
		}
		sd, err := ParseDuration(size)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		rd, err := ParseDuration(ret)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		c.Resolutions = append(c.Resolutions, Resolution{Size: sd, Retention: rd})
	}
	return c, c.Validate()
}

// String is the canonical form ParseConfig reads. Two nodes agree on windows
// exactly when their strings are equal.
func (c Config) String() string {
	parts := make([]string, len(c.Resolutions))
	for i, r := range c.Resolutions {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Validate checks the rules on Config.Resolutions.
func (c Config) Validate() error {
	if len(c.Resolutions) == 0 {
		return fmt.Errorf("%w: no resolutions", ErrInvalidConfig)
	}
	if len(c.Resolutions) > 16 {
		return fmt.Errorf("%w: at most 16 resolutions", ErrInvalidConfig)
	}
	for i, r := range c.Resolutions {
		switch {
		case r.Size < time.Second || r.Size%time.Second != 0:
			return fmt.Errorf("%w: size %v is not a whole number of seconds", ErrInvalidConfig, r.Size)
		case r.Size/time.Second > math.MaxUint32:
			return fmt.Errorf("%w: size %v is too large", ErrInvalidConfig, r.Size)
		case r.Retention < r.Size:
			return fmt.Errorf("%w: retention %v is shorter than size %v", ErrInvalidConfig, r.Retention, r.Size)
		}
		if i == 0 {
			continue
		}
		prev := c.Resolutions[i-1]
		switch {
		case r.Size <= prev.Size || r.Size%prev.Size != 0:
			return fmt.Errorf("%w: size %v is not a larger multiple of %v", ErrInvalidConfig, r.Size, prev.Size)
		case r.Retention < prev.Retention:
			return fmt.Errorf("%w: retention %v of %v is shorter than %v of %v", ErrInvalidConfig, r.Retention, r.Size, prev.Retention, prev.Size)
		}
	}
	return nil
}

// Lookup returns the resolution whose window is secs seconds long.
func (c Config) Lookup(secs uint32) (Resolution, bool) {
	i := slices.IndexFunc(c.Resolutions, func(r Resolution) bool { return r.Seconds() == secs })
	if i < 0 {
		return Resolution{}, false
	}
	return c.Resolutions[i], true
}

// Window is one window of one resolution.
type Window struct {
	Res   uint32 // window length in seconds
	Start int64  // Unix seconds
}

// CheckEventTime refuses an event time more than MaxFuture ahead of now.
func CheckEventTime(ts, now time.Time) error {
	if ts.After(now.Add(MaxFuture)) {
		return ErrFuture
	}
	return nil
}

// AppendWindows appends to dst the windows an event at ts lands in at now:
// one per resolution whose window containing ts is retained.
func (c Config) AppendWindows(dst []Window, ts, now time.Time) []Window {
	for _, r := range c.Resolutions {
		if start := r.Start(ts); start >= 0 && r.Retained(start, now) {
			dst = append(dst, Window{Res: r.Seconds(), Start: start})
		}
	}
	return dst
}

// Retained reports whether the window of secs-second resolution starting at
// start is kept at now. A resolution the config does not have is not kept.
func (c Config) Retained(secs uint32, start int64, now time.Time) bool {
	r, ok := c.Lookup(secs)
	return ok && start >= 0 && start%int64(secs) == 0 && r.Retained(start, now)
}
