package gossip

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/abacus-counter/abacus/crdt"
)

// TestWriteFuzzSeeds regenerates the seed corpora in testdata/fuzz from real
// encodings when ABACUS_WRITE_SEEDS is set; otherwise it checks they exist.
func TestWriteFuzzSeeds(t *testing.T) {
	id := crdt.ReplicaID{0x91, 0x81, 0x39, 0x61, 15: 0xee}
	seeds := map[string]map[string][]byte{
		"FuzzDecode": {
			"deltas": (&deltasMsg{groups: []originGroup{
				{origin: id, entries: []entry{{slot: crdt.TotalSlot("signups"), value: 42, seq: 7}, {slot: crdt.Slot{Name: "signups", Res: 60, Start: 1795428000}, value: 3, seq: 7}}},
				{origin: crdt.ReplicaID{1}, entries: []entry{{slot: crdt.Slot{Name: "logins", Res: 86400, Start: 1795392000}, value: 9, seq: 2}}},
			}}).appendTo(nil),
			"digest": (&digestMsg{name: "ams-1", entries: []digestEntry{{origin: id, seq: 7}, {origin: crdt.ReplicaID{1}, seq: 2}}}).appendTo(nil),
			"pull":   (&pullMsg{from: "hkg-2", origin: id, after: 3, maxBytes: 256 << 10, chain: 12}).appendTo(nil),
			"chunk":  (&chunkMsg{from: "ams-1", origin: id, chain: 12, after: 3, next: 7, top: 7, done: true, node: "ord-1", dc: "ord", entries: []entry{{slot: crdt.TotalSlot("signups"), value: 42, seq: 7}}}).appendTo(nil),
		},
		"FuzzMeta": {
			"meta": meta{replica: id, dc: "ams", cluster: "prod", windows: windowsHash("1m:48h,1h:90d,1d:1825d"), httpAddr: "10.1.2.3:4000", started: 1795428000000000000}.encode(),
		},
		"FuzzNotifyMsg": {
			"digest": (&digestMsg{name: "ams-1", entries: []digestEntry{{origin: id, seq: 7}}}).appendTo(nil),
			"pull":   (&pullMsg{from: "hkg-2", origin: id, after: 3, maxBytes: 256 << 10, chain: 12}).appendTo(nil),
		},
	}
	for fuzz, files := range seeds {
		for name, b := range files {
			p := filepath.Join("testdata", "fuzz", fuzz, name)
			if os.Getenv("ABACUS_WRITE_SEEDS") != "" {
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
					t.Fatal(err)
				}
			} else if _, err := os.Stat(p); err != nil {
				t.Errorf("seed %s missing (run with ABACUS_WRITE_SEEDS=1): %v", p, err)
			}
		}
	}
}
