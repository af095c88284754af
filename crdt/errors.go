package crdt

import "errors"

var (
	// ErrOverflow means an increment would carry a replica's entry past the
	// largest uint64. Nothing was changed.
	ErrOverflow = errors.New("crdt: counter entry would overflow uint64")
	// ErrZeroAmount means an increment of zero was asked for. A G-Counter only
	// grows, and every commit must raise what it names.
	ErrZeroAmount = errors.New("crdt: increment amount must be positive")
	// ErrTruncated means an encoded value ended early.
	ErrTruncated = errors.New("crdt: truncated encoding")
	// ErrMalformed means an encoded value is not valid.
	ErrMalformed = errors.New("crdt: malformed encoding")
)
