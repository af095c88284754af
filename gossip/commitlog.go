package gossip

import (
	"sort"
	"time"
)

// commitLog remembers when this replica's recent seqs committed, to say how
// old the oldest commit a peer lacks is.
type commitLog struct {
	seqs  []uint64
	times []time.Time
	start int // index of the oldest
	n     int
}

func (c *commitLog) init(size int) {
	c.seqs = make([]uint64, size)
	c.times = make([]time.Time, size)
}

func (c *commitLog) at(i int) int { return (c.start + i) % len(c.seqs) }

// add records that seq committed at t; seqs must grow.
func (c *commitLog) add(seq uint64, t time.Time) {
	if c.n > 0 && seq <= c.seqs[c.at(c.n-1)] {
		return
	}
	if c.n == len(c.seqs) {
		c.start = (c.start + 1) % len(c.seqs)
		c.n--
	}
	i := c.at(c.n)
	c.seqs[i], c.times[i] = seq, t
	c.n++
}

// since returns when the first commit with a seq of at least seq happened,
// and false if it is older than the log or unknown.
func (c *commitLog) since(seq uint64) (time.Time, bool) {
	k := sort.Search(c.n, func(i int) bool { return c.seqs[c.at(i)] >= seq })
	if k == c.n {
		return time.Time{}, false
	}
	if k == 0 && c.seqs[c.at(0)] > seq {
		return c.times[c.at(0)], false // older than the log: at least this old
	}
	return c.times[c.at(k)], true
}
