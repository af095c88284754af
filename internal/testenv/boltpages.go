package testenv

import (
	"encoding/binary"
	"os"
	"testing"
)

// BoltPages returns the byte offsets of a bbolt file's pages by kind:
// "meta", "branch", "leaf", "freelist". Tests that damage data files aim
// their damage with it. It reads the page size from the first meta page.
func BoltPages(t testing.TB, path string) map[string][]int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ps := int64(4096)
	if len(b) >= 32 {
		ps = int64(binary.LittleEndian.Uint32(b[16+8:]))
	}
	out := map[string][]int64{}
	for off := int64(0); off+16 <= int64(len(b)); {
		flags := binary.LittleEndian.Uint16(b[off+8:])
		overflow := int64(binary.LittleEndian.Uint32(b[off+12:]))
		switch flags {
		case 0x01:
			out["branch"] = append(out["branch"], off)
		case 0x02:
			out["leaf"] = append(out["leaf"], off)
		case 0x04:
			out["meta"] = append(out["meta"], off)
		case 0x10:
			out["freelist"] = append(out["freelist"], off)
		default:
			overflow = 0
		}
		off += ps * (1 + overflow)
	}
	return out
}

// BoltValues returns the byte offsets of the values of a bbolt file's leaf
// elements that are not buckets, in file order: where a flipped byte
// changes a stored value and nothing of the page's structure.
func BoltValues(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var out []int64
	for _, off := range BoltPages(t, path)["leaf"] {
		count := int64(binary.LittleEndian.Uint16(b[off+10:]))
		for i := int64(0); i < count; i++ {
			e := off + 16 + i*16
			if e+16 > int64(len(b)) {
				break
			}
			flags := binary.LittleEndian.Uint32(b[e:])
			pos, ks, vs := int64(binary.LittleEndian.Uint32(b[e+4:])), int64(binary.LittleEndian.Uint32(b[e+8:])), int64(binary.LittleEndian.Uint32(b[e+12:]))
			if flags&1 != 0 || vs == 0 || e+pos+ks+vs > int64(len(b)) {
				continue
			}
			out = append(out, e+pos+ks)
		}
	}
	return out
}

// BoltHighWater returns the length a bbolt file must have, by its newest
// meta page: its high-water page id times its page size. bbolt grows a file
// ahead of its pages, so cutting the file's length in half may cut nothing
// in use; cutting below this always does.
func BoltHighWater(t testing.TB, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if len(b) < 32 {
		t.Fatalf("testenv: %s is too short for a bbolt file", path)
	}
	ps := int64(binary.LittleEndian.Uint32(b[16+8:]))
	// A meta page: a 16-byte page header, then magic, version, page size
	// and flags (4 bytes each), the root bucket (16), the freelist's page
	// id (8), the high-water page id (8) and the txid (8).
	var hw int64
	var txid uint64
	for _, off := range []int64{0, ps} {
		if off+72 > int64(len(b)) {
			continue
		}
		if id := binary.LittleEndian.Uint64(b[off+64:]); id >= txid {
			txid, hw = id, int64(binary.LittleEndian.Uint64(b[off+56:]))*ps
		}
	}
	return hw
}
