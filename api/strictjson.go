package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// checkKeys scans a JSON body before it is decoded into v and refuses what
// encoding/json would let through silently: a key given twice in one object
// (encoding/json keeps the last: {"amount":1,"amount":1000000} would apply a
// million), and a key that matches one of v's fields only when case is
// ignored ("Amount"). Malformed JSON is left to the decoder. It scans the
// bytes itself: json.Decoder.Token allocates for every token, and on a
// batch of 10,000 items cost two thirds of the decode it guards.
func checkKeys(body []byte, v any) *apiError {
	s := keyScanner{b: body, fields: fieldNamesOf(reflect.TypeOf(v))}
	for {
		s.space()
		if s.i >= len(s.b) {
			return nil
		}
		if e := s.value(0); e != nil || s.bad {
			return e
		}
	}
}

// keyScanner walks JSON values for checkKeys. bad means the input is not
// JSON: the scan stops there, and the decoder says what is wrong.
type keyScanner struct {
	b      []byte
	i      int
	bad    bool
	fields map[string]bool
}

// maxDepth is encoding/json's own nesting limit.
const maxDepth = 10000

func (s *keyScanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// next skips space and reports whether the next byte is c, and if so
// steps over it.
func (s *keyScanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// value scans one value starting at s.i.
func (s *keyScanner) value(depth int) *apiError {
	s.space()
	if s.i >= len(s.b) || depth > maxDepth {
		s.bad = true
		return nil
	}
	switch s.b[s.i] {
	case '{':
		s.i++
		return s.object(depth)
	case '[':
		s.i++
		if s.next(']') {
			return nil
		}
		for {
			if e := s.value(depth + 1); e != nil || s.bad {
				return e
			}
			if s.next(']') {
				return nil
			}
			if !s.next(',') {
				s.bad = true
				return nil
			}
		}
	case '"':
		s.str()
		return nil
	}
	start := s.i // a number, true, false or null
	for s.i < len(s.b) && !strings.ContainsRune(",]} \t\n\r", rune(s.b[s.i])) {
		s.i++
	}
	s.bad = s.i == start
	return nil
}

// object scans an object's members; s.i is past its '{'.
func (s *keyScanner) object(depth int) *apiError {
	if s.next('}') {
		return nil
	}
	var seen []string
	var seenSet map[string]bool // once an object has many keys
	for {
		s.space()
		k := s.str()
		if s.bad {
			return nil
		}
		dup := seenSet[k]
		if seenSet == nil {
			dup = slices.Contains(seen, k)
			if seen = append(seen, k); len(seen) > 16 {
				seenSet = make(map[string]bool, 2*len(seen))
				for _, k := range seen {
					seenSet[k] = true
				}
			}
		} else {
			seenSet[k] = true
		}
		if dup {
			return errorf(kindDuplicateKey, "key "+strconv.Quote(k)+" given twice in one object")
		}
		if !s.fields[k] {
			for f := range s.fields {
				if strings.EqualFold(f, k) {
					return errorf(kindFieldCase, "unknown field "+strconv.Quote(k)+"; field names are case-sensitive: "+strconv.Quote(f))
				}
			}
		}
		if !s.next(':') {
			s.bad = true
			return nil
		}
		if e := s.value(depth + 1); e != nil || s.bad {
			return e
		}
		if s.next('}') {
			return nil
		}
		if !s.next(',') {
			s.bad = true
			return nil
		}
	}
}

// str scans a string at s.i and returns it unescaped, as encoding/json
// compares keys.
func (s *keyScanner) str() string {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		s.bad = true
		return ""
	}
	start, escaped := s.i, false
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i++
		case '"':
			s.i++
			raw := s.b[start:s.i]
			if !escaped {
				return string(raw[1 : len(raw)-1])
			}
			var k string
			if json.Unmarshal(raw, &k) != nil {
				s.bad = true
			}
			return k
		}
	}
	s.bad = true
	return ""
}

// jsonFieldNames is every JSON field name in t and the types it holds.
// fieldNames caches jsonFieldNames per type: a body's type is one of a few,
// and walking it by reflection for every request was work on the increment
// path. The maps are only read once made.
var fieldNames sync.Map // reflect.Type → map[string]bool

func fieldNamesOf(t reflect.Type) map[string]bool {
	if m, ok := fieldNames.Load(t); ok {
		return m.(map[string]bool)
	}
	m, _ := fieldNames.LoadOrStore(t, jsonFieldNames(t))
	return m.(map[string]bool)
}

func jsonFieldNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		for depth < 8 && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth >= 8 {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			names[name] = true
			walk(f.Type, depth+1)
		}
	}
	walk(t, 0)
	return names
}
