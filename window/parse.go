package window

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a Go duration ("90s", "1h30m") or a whole number of
// days ("7d"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && !strings.ContainsAny(days, "hmsuµn") {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > math.MaxInt64/uint64(24*time.Hour) {
			return 0, fmt.Errorf("%w: %q", ErrBadDuration, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %q", ErrBadDuration, s)
	}
	return d, nil
}

// FormatDuration is the inverse of ParseDuration for the durations Abacus
// prints: whole days as "Nd", whole hours as "Nh", whole minutes as "Nm",
// anything else as Go prints it.
func FormatDuration(d time.Duration) string {
	switch {
	case d > 0 && d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

// maxUnix is the last second of year 9999, the latest time Abacus accepts.
const maxUnix = 253402300799

// ParseTime parses an RFC 3339 time or Unix seconds, optionally with a
// fraction ("1795428000", "1795428000.25"). Times before 1970 or after 9999
// are refused.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty", ErrBadTime)
	}
	if c := s[0]; c >= '0' && c <= '9' && !strings.ContainsAny(s, "-:TtZz") {
		secs, frac, _ := strings.Cut(s, ".")
		sec, err := strconv.ParseInt(secs, 10, 64)
		if err != nil || sec > maxUnix || len(frac) > 9 {
			return time.Time{}, fmt.Errorf("%w: %q", ErrBadTime, s)
		}
		// The fraction's digits, scaled to nanoseconds (a loop: this runs
		// for every item of a batch).
		var nsec int64
		for i := range 9 {
			nsec *= 10
			if i >= len(frac) {
				continue
			}
			if c := frac[i]; c >= '0' && c <= '9' {
				nsec += int64(c - '0')
			} else {
				return time.Time{}, fmt.Errorf("%w: %q", ErrBadTime, s)
			}
		}
		return time.Unix(sec, nsec).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Unix() < 0 || t.Unix() > maxUnix {
		return time.Time{}, fmt.Errorf("%w: %q", ErrBadTime, s)
	}
	return t.UTC(), nil
}
