//go:build linux

package main

import (
	"testing"
	"time"
)

// TestGates: an op holds the wipe gate of every node it reached, once each,
// until it ends; a wipe of one of them waits for it, and a wipe of a node it
// never reached does not.
func TestGates(t *testing.T) {
	n1, n2, n3 := &node{name: "n1"}, &node{name: "n2"}, &node{name: "n3"}
	var g gates
	g.enter(n1)
	g.enter(n2)
	g.enter(n1) // a retry back at n1 takes nothing twice
	if len(g.held) != 2 {
		t.Fatalf("held %d gates, want 2", len(g.held))
	}
	if !n3.gate.TryLock() {
		t.Fatal("a wipe of a node the op never reached waits for it")
	}
	n3.gate.Unlock()
	for _, n := range []*node{n1, n2} {
		if n.gate.TryLock() {
			t.Fatalf("a wipe of %s went ahead while an op that reached it was in hand", n.name)
		}
	}
	wiped := make(chan struct{})
	go func() {
		n2.gate.Lock()
		close(wiped)
		n2.gate.Unlock()
	}()
	g.release()
	select {
	case <-wiped:
	case <-time.After(10 * time.Second):
		t.Fatal("the wipe of n2 still waits after the op ended")
	}
	if !n1.gate.TryLock() {
		t.Fatal("n1's gate is still held after the op ended")
	}
	n1.gate.Unlock()
}

func TestRoams(t *testing.T) {
	w := &workload{clients: 6, roaming: 3}
	var got []bool
	for c := range 6 {
		got = append(got, w.roams(c))
	}
	want := []bool{false, false, false, true, true, true}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("roams = %v, want %v", got, want)
		}
	}
}
