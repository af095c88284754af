package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// checkKeys walks a JSON body's tokens before it is decoded into v and
// refuses what encoding/json would let through silently: a key given twice
// in one object (encoding/json keeps the last: {"amount":1,"amount":1000000}
// would apply a million), and a key that matches one of v's fields only
// when case is ignored ("Amount"). Malformed JSON is left to the decoder.
func checkKeys(body []byte, v any) *apiError {
	fields := jsonFieldNames(reflect.TypeOf(v))
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the decoder says what is wrong, or the body ended
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, ok := tok.(string); ok && top != nil && top.object && top.key {
			if top.keys[k] {
				return errorf(kindDuplicateKey, "key "+strconv.Quote(k)+" given twice in one object")
			}
			top.keys[k] = true
			if !fields[k] {
				for f := range fields {
					if strings.EqualFold(f, k) {
						return errorf(kindFieldCase, "unknown field "+strconv.Quote(k)+"; field names are case-sensitive: "+strconv.Quote(f))
					}
				}
			}
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true // a value ended: a key comes next
		}
	}
}

// jsonFieldNames is every JSON field name in t and the types it holds.
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
