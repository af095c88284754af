package api

import (
	"bytes"
	"time"
)

// scanBatch decodes a batch body of the common shape in one pass over its
// bytes, without reflection: {"increments":[…]} whose items are objects with
// the keys "name", "amount" and "ts", each at most once and in any order;
// names and ts strings without escapes; amounts as plain integers; ts as
// a string (RFC 3339, or anything else parseTime takes) or as Unix seconds
// with an optional fraction; JSON whitespace anywhere between tokens.
//
// It reports false for anything else, valid or not, and for any value the
// strict path would refuse: parseBatch then decodes the body the strict way,
// so every refusal, and every body of another shape, is answered exactly as
// before. When it reports true it returns what the strict path would: it
// recognises only JSON that encoding/json reads byte for byte as written,
// and leaves the values to the strict path's own checks and parsers
// (checkName, parseAmountJSON, parseTime).
func scanBatch(body []byte, now time.Time) ([]Increment, bool) {
	s := batchScan{b: body}
	if !s.skip('{') || s.key() != keyIncrements || !s.skip(':') || !s.skip('[') {
		return nil, false
	}
	// Every item opens with a brace, and nothing else in a body scanBatch
	// takes holds one (names and times have none), so counting them sizes
	// the slice exactly. More than a batch may hold is the strict path's to
	// refuse.
	n := bytes.Count(body[s.i:], []byte{'{'})
	if n < 1 || n > maxBatchItems {
		return nil, false
	}
	out := make([]Increment, n)
	for i := 0; ; i++ {
		if i == n || !s.item(&out[i], now) {
			return nil, false
		}
		if s.skip(',') {
			continue
		}
		if !s.skip(']') || !s.skip('}') {
			return nil, false
		}
		s.space()
		if s.i != len(s.b) {
			return nil, false
		}
		return out[:i+1], true
	}
}

// batchScan is scanBatch's position in the body.
type batchScan struct {
	b []byte
	i int
}

// The keys scanBatch knows; keyOther is any other string and keyNone is no
// string at all.
const (
	keyNone = iota
	keyOther
	keyIncrements
	keyName
	keyAmount
	keyTS
)

// space skips JSON whitespace.
func (s *batchScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// skip skips whitespace and then c, and reports whether c was there.
func (s *batchScan) skip(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str skips whitespace and a string without escapes and returns what is
// between its quotes; ok is false if there is no such string. The bytes
// between are not checked: callers take only what they check themselves.
func (s *batchScan) str() (v []byte, ok bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	// A loop, not bytes.IndexByte: the strings here are a few bytes long.
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '"':
			v, s.i = s.b[s.i+1:j], j+1
			return v, true
		case '\\':
			return nil, false
		}
	}
	return nil, false
}

// key skips whitespace and a key, and says which one it is.
func (s *batchScan) key() int {
	k, ok := s.str()
	switch {
	case !ok:
		return keyNone
	case string(k) == "name":
		return keyName
	case string(k) == "amount":
		return keyAmount
	case string(k) == "ts":
		return keyTS
	case string(k) == "increments":
		return keyIncrements
	}
	return keyOther
}

// number skips whitespace and a JSON number of the form 0 or [1-9][0-9]*,
// followed, if frac, by an optional fraction .[0-9]+, and returns it. Other
// numbers (signs, exponents, leading zeros) are left to the strict path.
func (s *batchScan) number(frac bool) ([]byte, bool) {
	s.space()
	start := s.i
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		s.digits()
	default:
		return nil, false
	}
	if frac && s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return nil, false
		}
	}
	return s.b[start:s.i], true
}

// digits skips decimal digits and says how many there were.
func (s *batchScan) digits() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// item decodes one item into inc.
func (s *batchScan) item(inc *Increment, now time.Time) bool {
	if !s.skip('{') {
		return false
	}
	var name, amount, ts []byte // amount stays nil when absent
	var seen [keyTS + 1]bool
	for {
		k := s.key()
		if !s.skip(':') || seen[k] {
			return false // no colon, or a key given twice
		}
		seen[k] = true
		var ok bool
		switch k {
		case keyName:
			// Whatever is between the quotes: checkName below refuses
			// all but the name bytes, which encoding/json reads as they are.
			name, ok = s.str()
		case keyAmount:
			amount, ok = s.number(false)
		case keyTS:
			if s.space(); s.i < len(s.b) && s.b[s.i] == '"' {
				// encoding/json would change control bytes and invalid
				// UTF-8; printable ASCII it reads as it is.
				ts, ok = s.str()
				ok = ok && printableASCII(ts)
			} else {
				ts, ok = s.number(true)
			}
		}
		if !ok {
			return false // another key, or a value of another form
		}
		if s.skip(',') {
			continue
		}
		if !s.skip('}') {
			return false
		}
		break
	}
	nm := string(name) // "" if absent, which checkName refuses
	if checkName(nm) != nil {
		return false
	}
	a, e := parseAmountJSON(amount)
	if e != nil {
		return false
	}
	// parseTimeJSON parses a present ts with parseTime: a number as its
	// bytes, a string as json.Unmarshal reads it, which for printable ASCII
	// without escapes is the bytes between the quotes. Calling parseTime
	// directly spares its json.Unmarshal and the allocations that go with it.
	var t time.Time
	if !seen[keyTS] {
		t, e = parseTimeJSON(nil, now)
	} else {
		t, e = parseTime(string(ts), now)
	}
	if e != nil {
		return false
	}
	*inc = Increment{Name: nm, Amount: a, TS: t}
	return true
}

func printableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
