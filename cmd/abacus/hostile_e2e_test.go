package main_test

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/internal/testenv"
)

// Forged gossip, byte for byte as an outsider would write it: the message
// formats are gossip's (type, version, uvarints), framed as memberlist
// user messages (type 8), with or without memberlist's label header
// (244, length, label).
func userPacket(label string, msg []byte) []byte {
	var b []byte
	if label != "" {
		b = append(b, 244, byte(len(label)))
		b = append(b, label...)
	}
	b = append(b, 8) // memberlist userMsg
	return append(b, msg...)
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func forgedDeltas(origin crdt.ReplicaID, name string, value, seq uint64) []byte {
	b := []byte{1, 1} // deltas, version 1
	b = binary.AppendUvarint(b, 1)
	b = append(b, origin[:]...)
	b = binary.AppendUvarint(b, 1)
	b = crdt.AppendSlot(b, crdt.TotalSlot(name))
	b = binary.AppendUvarint(b, value)
	return binary.AppendUvarint(b, seq)
}

func forgedDigest(name, addr string, origin crdt.ReplicaID, seq uint64) []byte {
	b := appendStr(appendStr([]byte{2, 1}, name), addr)
	b = binary.AppendUvarint(b, 1)
	b = append(b, origin[:]...)
	return binary.AppendUvarint(b, seq)
}

func forgedPull(from, addr string, origin crdt.ReplicaID) []byte {
	b := appendStr(appendStr([]byte{3, 1}, from), addr)
	b = append(b, origin[:]...)
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, 1<<20)
	return binary.AppendUvarint(b, 1)
}

func replicaOf(t *testing.T, hexID string) crdt.ReplicaID {
	t.Helper()
	var id crdt.ReplicaID
	b, err := hex.DecodeString(hexID)
	if err != nil || len(b) != len(id) {
		t.Fatalf("replica %q", hexID)
	}
	copy(id[:], b)
	return id
}

// TestE2E_ForgedGossip sends forged gossip datagrams (deltas, digests and
// pulls; with and without the cluster label; with a random origin, with the
// node's own replica ID, with a member's) at a node started with the
// quick-start flags, at a node of a keyed cluster, and at a node run with
// --gossip-insecure (alone: a forged member's entries there are what only a
// key can stop): no count changes, every node keeps serving, the drop
// metric rises by what was sent, and the log stays short.
func TestE2E_ForgedGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	key := gossipKey(t)
	quick := startNode(t, t.TempDir())
	k1 := startNode(t, t.TempDir(), "--node-name", "k1", "--gossip-key-file", key, "--gossip-profile", "local")
	k2 := startNode(t, t.TempDir(), "--node-name", "k2", "--gossip-key-file", key, "--gossip-profile", "local", "--join", k1.gossip)
	insecure := startNode(t, t.TempDir(), "--node-name", "i1", "--gossip-insecure")
	if !strings.Contains(insecure.logs.String(), "GOSSIP IS NOT ENCRYPTED") {
		t.Fatalf("--gossip-insecure did not warn:\n%s", insecure.logs)
	}
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		var c struct{ Members []struct{ State string } }
		getJSON(t, k1.url+"/v1/cluster", &c)
		return len(c.Members) == 2, fmt.Sprintf("k1 sees %d members", len(c.Members))
	})

	// A listener for answers that must never come (a pull's reply).
	trap, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer trap.Close()

	var random crdt.ReplicaID
	rand.Read(random[:])
	for _, target := range []struct {
		name   string
		n      *node
		member *node // another member, whose name and replica a forger can read on /v1/cluster
	}{
		{"quick start", quick, nil},
		{"keyed cluster", k1, k2},
		{"insecure", insecure, nil},
	} {
		t.Run(target.name, func(t *testing.T) {
			n := target.n
			var self struct {
				Self struct{ Name, Replica string }
			}
			getJSON(t, n.url+"/v1/cluster", &self)
			own := replicaOf(t, self.Self.Replica)
			postBatch(t, n.url, map[string]uint64{"f.a": 5, "f.b": 7})
			before, _, _ := listTotals(t, n.url, "f.")
			dropped0 := metricValue(t, n.url, `abacus_gossip_dropped_total`)
			logs0 := strings.Count(n.logs.String(), "\n")

			memberName, memberReplica := self.Self.Name, random
			if target.member != nil {
				var m struct {
					Self struct{ Name, Replica string }
				}
				getJSON(t, target.member.url+"/v1/cluster", &m)
				memberName, memberReplica = m.Self.Name, replicaOf(t, m.Self.Replica)
			}
			msgs := map[string][]byte{
				"deltas, random origin":        forgedDeltas(random, "f.a", 1_000_000, 1),
				"deltas, own replica, max":     forgedDeltas(own, "f.a", 1<<64-1, 1),
				"deltas, own replica, seq max": forgedDeltas(own, "f.b", 1_000_000, 1<<62),
				"deltas, new counter":          forgedDeltas(random, "f.c", 42, 1),
				"digest, member name":          forgedDigest(memberName, trap.LocalAddr().String(), own, 1<<40),
				"digest, stranger":             forgedDigest("mallory", trap.LocalAddr().String(), random, 5),
				"pull, member name":            forgedPull(memberName, trap.LocalAddr().String(), own),
				"pull, stranger":               forgedPull("mallory", trap.LocalAddr().String(), own),
				"garbage":                      []byte("\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
			}
			if target.member != nil {
				msgs["deltas, member's replica"] = forgedDeltas(memberReplica, "f.a", 1_000_000, 1<<40)
			}
			conn, err := net.Dial("udp", n.gossip)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const rounds = 40
			sent := 0
			for r := 0; r < rounds; r++ {
				for _, m := range msgs {
					for _, label := range []string{"", "abacus"} {
						if _, err := conn.Write(userPacket(label, m)); err == nil {
							sent++
						}
					}
				}
				// A little pacing keeps loopback from dropping datagrams
				// before the node reads them.
				if r%5 == 4 {
					testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
						got := metricValue(t, n.url, `abacus_gossip_dropped_total`) - dropped0
						return got >= float64(sent)*0.9, fmt.Sprintf("%v of %d dropped", got, sent)
					})
				}
			}
			testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
				got := metricValue(t, n.url, `abacus_gossip_dropped_total`) - dropped0
				return got >= float64(sent)*0.9, fmt.Sprintf("%v of %d dropped", got, sent)
			})
			after, status, body := listTotals(t, n.url, "f.")
			if status != 200 {
				t.Fatalf("list after the forgeries: %d %s", status, body)
			}
			for name, v := range before {
				if after[name] != v {
					t.Errorf("%s: %d before the forgeries, %d after", name, v, after[name])
				}
			}
			if len(after) != len(before) {
				t.Errorf("counters before %v, after %v", before, after)
			}
			// Still takes writes, and counts them.
			postBatch(t, n.url, map[string]uint64{"f.a": 1})
			if got, _, _ := listTotals(t, n.url, "f."); got["f.a"] != before["f.a"]+1 {
				t.Errorf("f.a = %d after one more increment, want %d", got["f.a"], before["f.a"]+1)
			}
			trap.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if k, _, err := trap.ReadFrom(make([]byte, 64<<10)); err == nil {
				t.Errorf("a forged pull or digest got an answer of %d bytes", k)
			}
			lines := strings.Count(n.logs.String(), "\n") - logs0
			dropped := metricValue(t, n.url, `abacus_gossip_dropped_total`) - dropped0
			t.Logf("%d datagrams sent, %v counted as dropped, %d log lines", sent, dropped, lines)
			if lines > 40 {
				t.Errorf("%d datagrams wrote %d log lines, want a bounded few:\n%s", sent, lines, n.logs)
			}
		})
	}
}
