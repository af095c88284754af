package api

import "testing"

func TestParseAmount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64 // 0: refused
	}{
		{"1", 1}, {"7", 7}, {"9007199254740991", MaxAmount}, {"0000000000000001", 1},
		{"", 0}, {"0", 0}, {"9007199254740992", 0}, {"00000000000000001", 0}, {"+1", 0}, {"-1", 0},
		{" 1", 0}, {"1 ", 0}, {"1.0", 0}, {"1e3", 0}, {"0x1", 0}, {"1_0", 0}, {"١", 0}, {"1\x00", 0}, {"null", 0},
	} {
		got, e := parseAmount(tc.in)
		switch {
		case tc.want == 0 && (e == nil || e.kind != kindInvalidAmount):
			t.Errorf("parseAmount(%q) = %d, %v; want an invalid-amount refusal", tc.in, got, e)
		case tc.want != 0 && (e != nil || got != tc.want):
			t.Errorf("parseAmount(%q) = %d, %v; want %d", tc.in, got, e, tc.want)
		}
	}
}
