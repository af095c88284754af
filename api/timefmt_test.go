package api

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestAppendUnixRFC3339_MatchesTime(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sec := rapid.Int64Range(-100, 253402300799+100).Draw(t, "sec")
		want := time.Unix(sec, 0).UTC().Format(time.RFC3339)
		if got := string(appendUnixRFC3339(nil, sec)); got != want {
			t.Fatalf("%d: %s, want %s", sec, got, want)
		}
	})
	for _, s := range []string{"1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "2026-11-23T10:00:00Z", "2100-03-01T00:00:00Z", "9999-12-31T23:59:59Z"} {
		ts, _ := time.Parse(time.RFC3339, s)
		if got := string(appendUnixRFC3339(nil, ts.Unix())); got != s {
			t.Fatalf("%s: got %s", s, got)
		}
	}
}

func BenchmarkRangeResponse(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 200_000)
	for i := 0; i < b.N; i++ {
		buf = buf[:0]
		for p := int64(0); p < 2880; p++ {
			buf = appendUnixRFC3339(buf, 1795428000+60*p)
		}
	}
}
