package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// scanNow is the node's clock in these tests: 1795435200 in Unix seconds,
// so event times up to 1795435500 are accepted.
var scanNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// checkScanBatch holds parseBatch and scanBatch to the strict path on body:
// parseBatch answers exactly as parseBatchStrict does, errors included, and
// scanBatch, when it takes a body, takes only one the strict path accepts
// and returns the same increments. It reports whether scanBatch took it.
func checkScanBatch(t interface {
	Helper()
	Fatalf(string, ...any)
}, body []byte) bool {
	t.Helper()
	want, wantErr := parseBatchStrict(body, scanNow)
	got, gotErr := parseBatch(body, scanNow)
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErr, wantErr) {
		t.Fatalf("%q:\nparseBatch  %v, %v\nstrict path %v, %v", body, got, gotErr, want, wantErr)
	}
	fast, ok := scanBatch(body, scanNow)
	switch {
	case !ok:
		return false
	case wantErr != nil:
		t.Fatalf("%q: scanBatch takes a body the strict path refuses (%v): %v", body, wantErr, fast)
	case !reflect.DeepEqual(fast, want):
		t.Fatalf("%q:\nscanBatch   %v\nstrict path %v", body, fast, want)
	}
	return true
}

// commonBatchBodies are bodies of the shape scanBatch is for: each must be
// taken by it.
func commonBatchBodies() [][]byte {
	bodies := [][]byte{
		[]byte(`{"increments":[{"name":"a"}]}`),
		[]byte(`{"increments":[{"name":"signups","amount":7,"ts":"2026-11-23T11:00:00Z"}]}`),
		[]byte(`{"increments":[{"name":"a","amount":2},{"name":"b","ts":1795428000.5}]}`),
		[]byte(`{"increments":[{"ts":1795428000,"amount":9007199254740991,"name":"x"}]}`),
		[]byte(`{"increments":[{"name":"page.views:eu-1_A","ts":"2026-11-23T12:04:59.999999999+01:00"}]}`),
		[]byte(`{"increments":[{"name":"a","ts":"1795428000"},{"name":"a","ts":0},{"name":"a","ts":1795435500}]}`),
		[]byte(" \r\n\t{ \"increments\" :\n[ { \"name\" : \"a\" , \"amount\" : 3 , \"ts\" : 1795428000.123 } ,\n{\"name\":\"b\"} ] } \n"),
		batchBodyOf(1000, "unix"),
		batchBodyOf(1000, "rfc3339"),
		batchBodyOf(maxBatchItems, "unix"),
		// as abacus-bench writes them
		[]byte(`{"increments":[{"name":"bench-1","ts":1795428000.042},{"name":"bench-2","ts":1795428000.043}]}`),
	}
	// as a Go client writes them, compact and indented
	type item struct {
		Name   string `json:"name"`
		Amount uint64 `json:"amount,omitempty"`
		TS     string `json:"ts,omitempty"`
	}
	v := struct {
		Increments []item `json:"increments"`
	}{[]item{{"a", 1, ""}, {"b", 0, "2026-11-23T11:00:00Z"}, {strings.Repeat("z", maxNameLen), 42, "2026-11-23T08:00:00.5-03:00"}}}
	compact, _ := json.Marshal(v)
	indented, _ := json.MarshalIndent(v, "", "\t")
	return append(bodies, compact, indented)
}

// batchBodyOf is a batch of n increments of a realistic mix: a few hundred
// counters, small amounts, event times over the last minutes, given as Unix
// seconds with milliseconds ("unix") or RFC 3339 ("rfc3339").
func batchBodyOf(n int, ts string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"increments":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		t := scanNow.Add(-10*time.Minute + time.Duration(i)*time.Millisecond*37)
		fmt.Fprintf(&b, `{"name":"page.views:site-%d","amount":%d,"ts":`, i%250, 1+i%5)
		if ts == "unix" {
			fmt.Fprintf(&b, `%d.%03d}`, t.Unix(), t.Nanosecond()/1e6)
		} else {
			fmt.Fprintf(&b, `"%s"}`, t.Format(time.RFC3339Nano))
		}
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func TestScanBatch_CommonShapes(t *testing.T) {
	for _, body := range commonBatchBodies() {
		if !checkScanBatch(t, body) {
			t.Errorf("%.200q: scanBatch leaves it to the strict path", body)
		}
	}
}

// TestParseBatch_TakesScan holds parseBatch to the single pass through its
// allocations: the slice, then one string per name and one per event time
// (window.ParseTime keeps its argument), where the strict path makes many.
func TestParseBatch_TakesScan(t *testing.T) {
	const n = 100
	body := batchBodyOf(n, "unix")
	fast := testing.AllocsPerRun(20, func() { parseBatch(body, scanNow) })
	strict := testing.AllocsPerRun(20, func() { parseBatchStrict(body, scanNow) })
	if fast > 1+2*n {
		t.Errorf("parseBatch: %v allocations for %d increments, want at most %d (the strict path: %v)", fast, n, 1+2*n, strict)
	}
}

// TestScanBatch_MatchesStrict runs checkScanBatch on bodies at the edges of
// the shape scanBatch takes: each may be taken or not, but when taken it
// must come out as the strict path has it.
func TestScanBatch_MatchesStrict(t *testing.T) {
	for _, body := range edgeBatchBodies() {
		checkScanBatch(t, []byte(body))
	}
}

func edgeBatchBodies() []string {
	return []string{
		``, ` `, `null`, `{}`, `[]`, `{"increments":null}`, `{"increments":[]}`, `{"increments":{}}`,
		`{"increments":[null]}`, `{"increments":[{}]}`, `{"increments":[1]}`, `{"increments":[[]]}`,
		`{"increments":[{"name":"a"}]}}`, `{"increments":[{"name":"a"}]}]`, `{"increments":[{"name":"a"}]}]x`,
		`{"increments":[{"name":"a"}]},`, `{"increments":[{"name":"a"}]} x`, `{"increments":[{"name":"a"}]}{}`,
		`{"increments":[{"name":"a"}]}` + "\x00", "\ufeff" + `{"increments":[{"name":"a"}]}`,
		`{"increments":[{"name":"a"}]`, `{"increments":[{"name":"a"},]}`, `{"increments":[{"name":"a",}]}`,
		`{"increments":[{"name":"a"}],}`, `{"increments":[{"name":"a"} {"name":"b"}]}`,
		`{"increments":[{"name":"a"}],"increments":[{"name":"b"}]}`, `{"Increments":[{"name":"a"}]}`,
		`{"incr\u0065ments":[{"name":"a"}]}`, `{"x":1,"increments":[{"name":"a"}]}`, `{"name":"a","increments":[{"name":"a"}]}`,
		`{"increments":[{"name":"a","name":"b"}]}`, `{"increments":[{"name":"a","Name":"b"}]}`, `{"increments":[{"NAME":"a"}]}`,
		`{"increments":[{"name":"a","amount":1,"amount":2}]}`, `{"increments":[{"name":"a","ts":0,"ts":1}]}`,
		`{"increments":[{"name":"a","Amount":2}]}`, `{"increments":[{"name":"a","x":null}]}`, `{"increments":[{"name":"a","increments":[]}]}`,
		`{"increments":[{"n\u0061me":"a"}]}`, `{"increments":[{"name":"a","amount":1,"\u0061mount":2}]}`,
		`{"increments":[{"name":"\u0061"}]}`, `{"increments":[{"name":"a\u002db"}]}`, `{"increments":[{"name":"caf\u00e9"}]}`,
		`{"increments":[{"name":"café"}]}`, "{\"increments\":[{\"name\":\"a\xff\"}]}", "{\"increments\":[{\"name\":\"a\tb\"}]}",
		`{"increments":[{"name":"a\"b"}]}`, `{"increments":[{"name":"a\\"}]}`, `{"increments":[{"name":""}]}`,
		`{"increments":[{"name":"a`, `{"increments":[{"name":null}]}`, `{"increments":[{"name":1}]}`, `{"increments":[{"name":["a"]}]}`,
		`{"increments":[{"name":"` + strings.Repeat("a", 128) + `"}]}`, `{"increments":[{"name":"` + strings.Repeat("a", 129) + `"}]}`,
		`{"increments":[{"name":"a","amount":0}]}`, `{"increments":[{"name":"a","amount":01}]}`, `{"increments":[{"name":"a","amount":-1}]}`,
		`{"increments":[{"name":"a","amount":-0}]}`, `{"increments":[{"name":"a","amount":1.0}]}`, `{"increments":[{"name":"a","amount":1e3}]}`,
		`{"increments":[{"name":"a","amount":1E0}]}`, `{"increments":[{"name":"a","amount":"5"}]}`, `{"increments":[{"name":"a","amount":null}]}`,
		`{"increments":[{"name":"a","amount":true}]}`, `{"increments":[{"name":"a","amount":{}}]}`, `{"increments":[{"name":"a","amount":9007199254740992}]}`,
		`{"increments":[{"name":"a","amount":18446744073709551616}]}`, `{"increments":[{"name":"a","amount":99999999999999999999999999}]}`,
		`{"increments":[{"name":"a","amount":1.}]}`, `{"increments":[{"name":"a","amount":+1}]}`, `{"increments":[{"name":"a","amount":1x}]}`,
		`{"increments":[{"name":"a","ts":1795428000}]}`, `{"increments":[{"name":"a","ts":1795428000.5}]}`,
		`{"increments":[{"name":"a","ts":1795428000.123456789}]}`, `{"increments":[{"name":"a","ts":1795428000.1234567891}]}`,
		`{"increments":[{"name":"a","ts":0}]}`, `{"increments":[{"name":"a","ts":00}]}`, `{"increments":[{"name":"a","ts":0.5}]}`,
		`{"increments":[{"name":"a","ts":1795428000.}]}`, `{"increments":[{"name":"a","ts":.5}]}`, `{"increments":[{"name":"a","ts":-1}]}`,
		`{"increments":[{"name":"a","ts":-0}]}`, `{"increments":[{"name":"a","ts":1e9}]}`, `{"increments":[{"name":"a","ts":1795428000e0}]}`,
		`{"increments":[{"name":"a","ts":1795428000.5e0}]}`, `{"increments":[{"name":"a","ts":253402300799}]}`,
		`{"increments":[{"name":"a","ts":253402300800}]}`, `{"increments":[{"name":"a","ts":1795435500}]}`,
		`{"increments":[{"name":"a","ts":1795435500.000000001}]}`, `{"increments":[{"name":"a","ts":99999999999999999999}]}`,
		`{"increments":[{"name":"a","ts":"2026-11-23T11:00:00Z"}]}`, `{"increments":[{"name":"a","ts":"2026-11-23T11:00:00.123+01:00"}]}`,
		`{"increments":[{"name":"a","ts":"2026-11-23t11:00:00z"}]}`, `{"increments":[{"name":"a","ts":"2026-11-23T11:00:00"}]}`,
		`{"increments":[{"name":"a","ts":"2026-11-23 11:00:00Z"}]}`, `{"increments":[{"name":"a","ts":"2026-11-23T11:00:00Z "}]}`,
		`{"increments":[{"name":"a","ts":"1795428000"}]}`, `{"increments":[{"name":"a","ts":"1795428000.5"}]}`, `{"increments":[{"name":"a","ts":"0"}]}`,
		`{"increments":[{"name":"a","ts":"2026-11-23T11:00:00\u005a"}]}`, `{"increments":[{"name":"a","ts":"2026-11-23T11:00:00Z\n"}]}`,
		"{\"increments\":[{\"name\":\"a\",\"ts\":\"2026-11-23T11:00:00Z\x7f\"}]}", "{\"increments\":[{\"name\":\"a\",\"ts\":\"2026-11-23T11:00:00Z\xff\"}]}",
		`{"increments":[{"name":"a","ts":""}]}`, `{"increments":[{"name":"a","ts":null}]}`, `{"increments":[{"name":"a","ts":true}]}`,
		`{"increments":[{"name":"a","ts":"9999-12-31T23:59:59Z"}]}`, `{"increments":[{"name":"a","ts":"1969-12-31T23:59:59Z"}]}`,
		`{"increments":[{"name":"a","ts":"2026-11-23T12:05:00Z"}]}`, `{"increments":[{"name":"a","ts":"2026-11-23T12:05:00.000000001Z"}]}`,
		`{"increments":[{"name":"a","ts":"2026-02-30T11:00:00Z"}]}`, `{"increments":[{"name":"a","ts":"2026-11-23T11:00:00+24:00"}]}`,
		`{"increments":[{"name":"a","ts":[]}]}`, `{"increments":[{"name":"a","ts":{"x":1}}]}`,
		"{\"increments\":[{\"name\":\"a\",\f\"amount\":1}]}", "{\"increments\":[{\"name\":\"a\",\u00a0\"amount\":1}]}",
		"{\"increments\":[{\"name\":\"a\",\v\"amount\":1}]}",
		string(batchBodyOf(maxBatchItems+1, "unix")),
	}
}

// TestScanBatch_Generated runs checkScanBatch on bodies built from pieces
// near the common shape: valid and invalid keys and values, whitespace JSON
// allows and some it does not, wrong tops and tails, and a stray byte.
func TestScanBatch_Generated(t *testing.T) {
	taken := 0
	rapid.Check(t, func(t *rapid.T) {
		if checkScanBatch(t, genBatchBody(t)) {
			taken++
		}
	})
	if taken == 0 {
		t.Error("scanBatch took none of the generated bodies")
	}
}

func genBatchBody(t *rapid.T) []byte {
	// Each piece is odd once in oddOne draws; 0 makes a body of the
	// common shape.
	oddOne := rapid.SampledFrom([]int{0, 4, 16, 64}).Draw(t, "oddOne")
	pick := func(label string, common []string, odd []string) string {
		if oddOne == 0 || len(odd) == 0 || rapid.IntRange(1, oddOne).Draw(t, label+"Odd") > 1 {
			return rapid.SampledFrom(common).Draw(t, label)
		}
		return rapid.SampledFrom(odd).Draw(t, label)
	}
	var b []byte
	ws := func() {
		b = append(b, pick("ws", []string{"", "", "", " ", "\n\t", "\r\n "}, []string{"\f", "\v", "\u00a0", "\x00"})...)
	}
	names := []string{`"a"`, `"signups"`, `"page.views:eu-1_x"`, `"` + strings.Repeat("n", 128) + `"`}
	oddNames := []string{`""`, `"a b"`, `"\u0061"`, `"caf\u00e9"`, `"café"`, `"a\"b"`, `"a\\b"`, "\"a\tb\"", "\"a\xff\"",
		`"` + strings.Repeat("n", 129) + `"`, `null`, `1`, `["a"]`, `"a`}
	amounts := []string{`1`, `7`, `9007199254740991`, `123456`}
	oddAmounts := []string{`0`, `01`, `-1`, `-0`, `1.0`, `1e3`, `1E0`, `"5"`, `null`, `true`, `{}`, `9007199254740992`,
		`18446744073709551616`, `99999999999999999999999`, `1.`, `+1`, `1x`, `9007199254740991.0`}
	times := []string{`1795428000`, `1795428000.5`, `1795428000.123456789`, `"2026-11-23T11:00:00Z"`,
		`"2026-11-23T11:00:00.123+01:00"`, `1795435500`, `0`, `"1795428000.25"`}
	oddTimes := []string{`1795428000.1234567891`, `00`, `1795428000.`, `.5`, `-1`, `-0`, `1e9`, `1795428000e0`, `253402300799`,
		`253402300800`, `1795435500.000000001`, `99999999999999999999`, `"2026-11-23t11:00:00z"`, `"2026-11-23T11:00:00"`,
		`"2026-11-23T11:00:00Z "`, `"2026-11-23T11:00:00\u005a"`, "\"2026-11-23T11:00:00Z\x7f\"", `""`, `null`, `true`, `[]`,
		`"9999-12-31T23:59:59Z"`, `"1969-12-31T23:59:59Z"`, `"2026-11-23T12:05:00Z"`, `"2026-11-23T12:05:00.000000001Z"`,
		`"2026-02-30T11:00:00Z"`, `"0"`, `"-1"`}
	ws()
	b = append(b, pick("top", []string{`{"increments":`}, []string{`{"Increments":`, `{"incr\u0065ments":`, `{"x":1,"increments":`, `[`, `{`, `{"increments"`})...)
	ws()
	b = append(b, pick("open", []string{"["}, []string{"{", "null", "[]", ""})...)
	for i, n := 0, rapid.IntRange(1, 6).Draw(t, "items"); i < n; i++ {
		if i > 0 {
			ws()
			b = append(b, pick("comma", []string{","}, []string{"", ",,", ";"})...)
		}
		ws()
		if oddOne > 0 && rapid.IntRange(1, oddOne).Draw(t, "oddItem") == 1 {
			b = append(b, rapid.SampledFrom([]string{`null`, `1`, `[]`, `"a"`, `{}`, `{"name":"a"`}).Draw(t, "item")...)
			continue
		}
		// The item's keys: name, then amount and ts or not, in any order;
		// an odd item drops one or adds another.
		keys := []string{`"name"`}
		for _, k := range []string{`"amount"`, `"ts"`} {
			if rapid.Bool().Draw(t, "has"+k) {
				keys = append(keys, k)
			}
		}
		if oddOne > 0 && rapid.IntRange(1, oddOne).Draw(t, "oddKeys") == 1 {
			if rapid.Bool().Draw(t, "drop") {
				keys = keys[1:]
			}
			keys = append(keys, rapid.SampledFrom([]string{`"name"`, `"amount"`, `"ts"`, `"Name"`, `"AMOUNT"`, `"Ts"`,
				`"x"`, `"n\u0061me"`, `"increments"`, `"name "`, `name`}).Draw(t, "extraKey"))
		}
		keys = rapid.Permutation(keys).Draw(t, "keys")
		b = append(b, '{')
		for j, key := range keys {
			if j > 0 {
				ws()
				b = append(b, pick("comma", []string{","}, []string{"", ",,"})...)
			}
			ws()
			b = append(b, key...)
			ws()
			b = append(b, pick("colon", []string{":"}, []string{"", "::"})...)
			ws()
			switch {
			case oddOne > 0 && rapid.IntRange(1, oddOne).Draw(t, "anyValue") == 1:
				all := append(append(append(append(append(append([]string(nil), names...), oddNames...), amounts...), oddAmounts...), times...), oddTimes...)
				b = append(b, rapid.SampledFrom(all).Draw(t, "value")...)
			case key == `"name"`:
				b = append(b, pick("name", names, oddNames)...)
			case key == `"amount"`:
				b = append(b, pick("amount", amounts, oddAmounts)...)
			default:
				b = append(b, pick("ts", times, oddTimes)...)
			}
		}
		ws()
		b = append(b, '}')
	}
	ws()
	b = append(b, pick("close", []string{"]}"}, []string{"]", "}", "],}", `],"increments":[]}`, "]}}", "]}]", "]} x", "]},", "]}{}"})...)
	ws()
	if oddOne > 0 && rapid.IntRange(1, oddOne).Draw(t, "stray") == 1 {
		i := rapid.IntRange(0, len(b)-1).Draw(t, "at")
		c := rapid.Byte().Draw(t, "byte")
		switch rapid.IntRange(0, 2).Draw(t, "how") {
		case 0:
			b = append(b[:i], b[i+1:]...)
		case 1:
			b = append(b[:i], append([]byte{c}, b[i:]...)...)
		default:
			b[i] = c
		}
	}
	return b
}

// FuzzParseBatchScan holds scanBatch and parseBatch to the strict path on any
// body: see checkScanBatch.
func FuzzParseBatchScan(f *testing.F) {
	for _, body := range commonBatchBodies() {
		if len(body) < 4096 {
			f.Add(body)
		}
	}
	f.Add(batchBodyOf(3, "unix"))
	f.Add(batchBodyOf(3, "rfc3339"))
	for _, body := range edgeBatchBodies() {
		if len(body) < 4096 {
			f.Add([]byte(body))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkScanBatch(t, body)
	})
}

// BenchmarkParseBatch compares the strict path with parseBatch on 1,000
// increments, event times as Unix seconds or RFC 3339.
func BenchmarkParseBatch(b *testing.B) {
	for _, ts := range []string{"unix", "rfc3339"} {
		body := batchBodyOf(1000, ts)
		for _, p := range []struct {
			name  string
			parse func([]byte, time.Time) ([]Increment, *apiError)
		}{{"strict", parseBatchStrict}, {"parseBatch", parseBatch}} {
			b.Run("ts="+ts+"/"+p.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if _, e := p.parse(body, scanNow); e != nil {
						b.Fatal(e)
					}
				}
			})
		}
	}
}
